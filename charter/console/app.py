"""The console's Starlette app: pages, the owner's actions, and the guard in front of them.

Every response carries the security headers of :mod:`charter.console.auth` (CSP
``default-src 'self'``, no framing, no referrer, no caching). Every request must name the
loopback address the console listens on as its ``Host`` (421 otherwise); every request but
``/login`` needs the session cookie (401 otherwise); every POST needs the session's CSRF
token (403 otherwise). The owner's actions go through :mod:`charter.tools` with the owner
passphrase unlocked when the console started; their errors show as one line.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charter.console import chart, data
from charter.console.auth import COOKIE, SECURITY_HEADERS, ConsoleAuth, allowed_hosts
from charter.errors import CharterError, InvalidInput
from charter.home import Home
from charter.tools import approvals, audit, lockdown
from charter.tools.identity import parse_duration

HERE = Path(__file__).parent
#: The largest form a POST may carry (the console's forms are a few fields).
MAX_FORM_BYTES = 16 * 1024
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Console:
    """What the pages need: the open home, the unlocked owner passphrase, the sessions."""

    home: Home
    passphrase: bytes | None
    auth: ConsoleAuth
    port: int


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )
    env.globals["render"] = approvals.render
    return env


class Guard:
    """ASGI middleware: Host check, session check, CSRF check, security headers."""

    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console
        self.hosts = allowed_hosts(console.port)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope, receive)
        host = request.headers.get("host", "")
        if host not in self.hosts:
            await _plain(421, "this console answers only on its loopback address")(
                scope, receive, send_secure
            )
            return
        if scope["path"] == "/login":
            await self.app(scope, receive, send_secure)
            return
        sid = request.cookies.get(COOKIE)
        if self.console.auth.csrf_of(sid) is None:
            await _plain(
                401,
                "not signed in: open the login URL `charter console` printed (it works once; "
                "restart the console for a new one)",
            )(scope, receive, send_secure)
            return
        if scope["method"] not in ("GET", "HEAD"):
            declared = request.headers.get("content-length") or "0"
            if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
                await _plain(413, "form too large")(scope, receive, send_secure)
                return
            body = await request.body()
            if len(body) > MAX_FORM_BYTES:
                await _plain(413, "form too large")(scope, receive, send_secure)
                return
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            sent = next(iter(form.get("csrf") or []), None)
            if not self.console.auth.check_csrf(sid, sent):
                await _plain(403, "missing or wrong CSRF token: reload the page and try again")(
                    scope, receive, send_secure
                )
                return
            scope["state"] = {**scope.get("state", {}), "form": form}
        await self.app(scope, receive, send_secure)


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain; charset=utf-8")


def build_app(console: Console) -> ASGIApp:
    """The console as an ASGI app (routes behind :class:`Guard`)."""
    env = _env()
    home = console.home

    async def page(request: Request, template: str, **ctx: Any) -> HTMLResponse:
        state = await lockdown.get_state(home)
        sid = request.cookies.get(COOKIE)
        html = env.get_template(template).render(
            csrf=console.auth.csrf_of(sid),
            locked=state.active,
            flash=request.query_params.get("done", "")[:200],
            **ctx,
        )
        return HTMLResponse(html)

    def form(request: Request, name: str) -> str:
        values = request.scope.get("state", {}).get("form", {}).get(name) or [""]
        return str(values[0])

    async def login(request: Request) -> Response:
        sid = console.auth.login(request.query_params.get("token", ""))
        if sid is None:
            return _plain(401, "this login link is wrong or was already used")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        return response

    async def overview(request: Request) -> Response:
        o = await data.overview(home)
        svg = chart.calls_chart(o.series, o.buckets)
        return await page(request, "overview.html", title="Overview", page="overview", o=o,
                          chart=svg)  # fmt: skip

    async def verify(request: Request) -> Response:
        result = await audit.verify_out(home)
        return await page(request, "verify.html", title="Verification", page="overview",
                          result=result)  # fmt: skip

    async def ledger(request: Request) -> Response:
        q = request.query_params
        f = data.Filters(**{k: q.get(k, "")[:100] for k in data.Filters.__slots__})
        before_text = q.get("before", "")
        try:
            before = int(before_text) if before_text else None
            view = await data.ledger_page(home, f, before)
        except (ValueError, CharterError) as exc:
            message = str(exc) if isinstance(exc, CharterError) else "bad page cursor"
            empty = data.LedgerView([], None, [], 0, None)
            return await page(request, "ledger.html", title="Ledger", page="ledger", view=empty,
                              f=f, error=message, next_query="")  # fmt: skip
        next_query = urllib.parse.urlencode(f.query() | {"before": str(view.next_before)})
        return await page(request, "ledger.html", title="Ledger", page="ledger", view=view, f=f,
                          next_query=next_query)  # fmt: skip

    async def pending(request: Request) -> Response:
        items = await approvals.list_pending(home)
        return await page(request, "approvals.html", title="Approvals", page="approvals",
                          pending=items)  # fmt: skip

    async def one(request: Request) -> Response:
        try:
            a = await approvals.find(home, request.path_params["id"])
        except CharterError as exc:
            return _plain(404, str(exc))
        return await page(request, "approval.html", title=f"Approval {a.id}", page="approvals",
                          a=a)  # fmt: skip

    async def decide(request: Request) -> Response:
        approval_id, verb = request.path_params["id"], request.path_params["verb"]
        try:
            if verb == "approve":
                done = await approvals.approve(
                    home,
                    approval_id,
                    valid_for=parse_duration(form(request, "valid_for") or "1h"),
                    passphrase=console.passphrase,
                )
                message = f"Approved {done.id}: {done.agent} may run {done.tool} once."
            elif verb == "deny":
                done = await approvals.deny(
                    home, approval_id, reason=form(request, "reason"), passphrase=console.passphrase
                )
                message = f"Denied {done.id}."
            else:
                return _plain(404, "no such action")
        except CharterError as exc:
            return _plain(400, str(exc))
        target = f"/approvals/{urllib.parse.quote(approval_id)}?"
        return RedirectResponse(target + urllib.parse.urlencode({"done": message}), 303)

    async def lockdown_page(request: Request) -> Response:
        state = await lockdown.get_state(home)
        return await page(request, "lockdown.html", title="Lockdown", page="lockdown",
                          state=state)  # fmt: skip

    async def lockdown_act(request: Request) -> Response:
        lift = request.url.path.endswith("/lift")
        try:
            if form(request, "confirm") != "yes":
                raise InvalidInput("confirm it: tick the box (nothing was changed)")
            if lift:
                await lockdown.lift(home, passphrase=console.passphrase)
                message = "Lifted the lockdown; agents stay revoked until reinstated."
            elif (await lockdown.get_state(home)).active:
                message = "Already locked down; nothing changed."
            else:
                await lockdown.lockdown(
                    home, reason=form(request, "reason"), passphrase=console.passphrase
                )
                message = "Locked down: every agent is revoked."
        except CharterError as exc:
            return _plain(400, str(exc))
        return RedirectResponse("/lockdown?" + urllib.parse.urlencode({"done": message}), 303)

    async def css(request: Request) -> Response:
        return FileResponse(HERE / "static" / "console.css", media_type="text/css")

    routes = [
        Route("/login", login),
        Route("/", overview),
        Route("/verify", verify),
        Route("/ledger", ledger),
        Route("/approvals", pending),
        Route("/approvals/{id}", one),
        Route("/approvals/{id}/{verb}", decide, methods=["POST"]),
        Route("/lockdown", lockdown_page),
        Route("/lockdown", lockdown_act, methods=["POST"]),
        Route("/lockdown/lift", lockdown_act, methods=["POST"]),
        Route("/static/console.css", css),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    return Guard(Starlette(routes=routes), console)


__all__ = ["Console", "Guard", "build_app"]
