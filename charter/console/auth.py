"""Who may use the console: the owner's browser, holding the session the login token opened.

- ``charter console`` prints ``http://127.0.0.1:PORT/login?token=T``: ``T`` (256 bits) opens
  one session, once; then it is spent.
- The session is a random id in an ``HttpOnly; SameSite=Strict`` cookie; every other request
  without a live one gets 401.
- Every state-changing request (POST) carries the session's CSRF token in a form field,
  compared in constant time; without it: 403.
- Requests whose ``Host`` is not the loopback address the console listens on get 421 (a DNS
  rebinding page cannot borrow the cookie's origin).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

COOKIE = "charter_console"
#: The console's Content-Security-Policy: nothing but its own files, no inline script or
#: style, not framable, forms post only to itself.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class ConsoleAuth:
    """The console's login token and its live sessions (in memory: a restart logs out)."""

    login_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: session id -> that session's CSRF token.
    sessions: dict[str, str] = field(default_factory=dict)
    spent: bool = False

    def login(self, token: str) -> str | None:
        """Spend the login token: a new session id, or None (wrong or already used)."""
        if self.spent or not hmac.compare_digest(token.encode(), self.login_token.encode()):
            return None
        self.spent = True
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = secrets.token_urlsafe(32)
        return sid

    def csrf_of(self, sid: str | None) -> str | None:
        """The CSRF token of a live session, or None when ``sid`` opens none."""
        if not sid:
            return None
        for known, csrf in self.sessions.items():
            if hmac.compare_digest(known.encode(), sid.encode()):
                return csrf
        return None

    def check_csrf(self, sid: str | None, sent: str | None) -> bool:
        """Whether ``sent`` is the CSRF token of the live session ``sid``."""
        csrf = self.csrf_of(sid)
        return (
            csrf is not None
            and sent is not None
            and hmac.compare_digest(csrf.encode(), sent.encode())
        )


def allowed_hosts(port: int) -> frozenset[str]:
    """The ``Host`` header values a loopback console on ``port`` answers."""
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})
