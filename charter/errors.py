"""One error hierarchy for Charter.

Every error carries a ``public_message`` that is safe to show an agent or print in the CLI
(never a secret, a key or a traceback) and an ``exit_code`` for the CLI.

    CharterError
    ├── ConfigError            home missing, corrupt key file, bad settings
    ├── InvalidInput           an argument the caller can correct
    ├── NotFound               unknown agent, entry, secret, message
    ├── ScopeDenied            the charter does not grant the scope
    ├── AgentRevoked           the agent (or its charter) is revoked or expired
    ├── TokenInvalid           ``reason`` for the owner; typed reasons in tools.tokens.errors
    ├── LedgerUnavailable      the intent could not be committed: nothing happened
    ├── LedgerIntegrityError   verification failed at ``seq``
    └── ServiceError           an outside service (SMTP, IMAP, HTTP) failed

A few subclasses live next to the code that raises them: ``ApprovalPending`` and
``ApprovalRefused`` (``charter.tools.approvals``), ``MailDenied``
(``charter.tools.mail_transport``).
Pure format modules raise ``ValueError`` subclasses (``merkle.ProofError``,
``signed_note.NoteError``) that callers translate at their boundary.
"""

from __future__ import annotations


class CharterError(Exception):
    """Base of every error Charter raises on purpose."""

    exit_code = 1
    #: The ledger outcome a tool call that raised this records.
    outcome = "error"

    def __init__(self, public_message: str) -> None:
        super().__init__(public_message)
        self.public_message = public_message


class ConfigError(CharterError):
    """The home, a key file or a setting is missing, corrupt or unsafe."""

    exit_code = 2


class InvalidInput(CharterError):
    """An argument is malformed or out of range; the caller can correct it."""

    exit_code = 2
    outcome = "denied"


class NotFound(CharterError):
    """The named object does not exist (or is not visible to the caller)."""

    exit_code = 3
    outcome = "denied"


class ScopeDenied(CharterError):
    """The caller's charter does not grant what the call needs."""

    exit_code = 4
    outcome = "denied"


class AgentRevoked(CharterError):
    """The agent is revoked, or its charter is expired or not yet valid."""

    exit_code = 4
    outcome = "denied"


class TokenInvalid(CharterError):
    """A token failed verification.

    ``public_message`` is opaque (remote callers learn nothing); ``reason`` says exactly why,
    for the owner's CLI and the logs.
    """

    exit_code = 5
    outcome = "denied"
    #: Typed reasons (``charter.tools.tokens.errors``) say which check failed: a stable
    #: ``code`` and a ``description`` safe for any caller (never the token or a claim value).
    code = "invalid"
    description = "invalid token"

    def __init__(self, reason: str, *, jti: str | None = None) -> None:
        super().__init__("invalid or expired token")
        self.reason = reason
        #: The token's id when it was known (for the logs).
        self.jti = jti


class LedgerUnavailable(CharterError):
    """The ledger could not record an entry, so the action was not performed (fail closed)."""

    exit_code = 6


class WriteLockBusy(LedgerUnavailable):
    """Another connection held the database's write lock for longer than the caller waits."""


class LedgerIntegrityError(CharterError):
    """Verification failed; ``seq`` is the first bad entry (or None for the ledger as a whole)."""

    exit_code = 7

    def __init__(self, seq: int | None, reason: str) -> None:
        where = f"entry {seq}" if seq is not None else "ledger"
        super().__init__(f"ledger verification failed at {where}: {reason}")
        self.seq = seq
        self.reason = reason


class ServiceError(CharterError):
    """An outside service failed (mail server, HTTP endpoint); the message says which and how."""

    exit_code = 8
