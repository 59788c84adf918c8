"""``secret_http_request``: send an HTTP request with secrets injected, return it redacted.

The agent writes ``{{secret:NAME}}`` in the URL path or query, a header value or the body.
Before anything is sent: the scopes, the secret's allowed hosts (scheme, host and port), any
block, the rate, and that the agent did not write a value itself (a guess) are checked; the
result is a plan the gate runs (:mod:`charter.tools.plan`): the intent is committed, then the
request is sent. The response comes back decoded (or refused) and redacted.

Nothing the agent observes may depend on a secret in a way cheaper than guessing the whole
value online (SECURITY.md G-AGENT-4); each decision below that touches this says so.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from charter.errors import InvalidInput, ScopeDenied, ServiceError
from charter.scopes import grants, require
from charter.storage.ports import Tx
from charter.storage.vault import NAME_RE, SecretInfo, Vault
from charter.storage.vault_hosts import DEFAULT_PORTS, allows, is_loopback, normalize_host
from charter.tools.plan import Plan
from charter.tools.vault import replies
from charter.tools.vault.limits import RateLimit, VaultDenied, block, check_blocked
from charter.tools.vault.redact import Redactor

if TYPE_CHECKING:
    import httpx2

    from charter.evidence.entries import Entry
    from charter.home import Home

#: Methods an agent may use.
Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
#: Seconds for the whole exchange (connect, every redirect, reading the body).
TOTAL_TIMEOUT = 30.0
#: Seconds for any single connect, read or write.
IO_TIMEOUT = 10.0

PLACEHOLDER = re.compile(r"\{\{secret:([^{}]*)\}\}")
_PLACEHOLDER_START = "{{secret:"
#: Request headers an agent may not set: they would route the request (and its secrets)
#: somewhere other than the checked host, desynchronize the message framing, or (Accept-
#: Encoding) ask for a response Charter cannot decode, and so cannot redact.
_FORBIDDEN_HEADERS = frozenset(
    {
        *("host", "content-length", "transfer-encoding", "connection", "te", "upgrade"),
        *("trailer", "accept-encoding"),
    }
)
#: What Charter asks for: no compression. NOTE: the length of a compressed reflection that
#: holds both the injected value and an agent-written prefix guess is shorter when the guess
#: is right (BREACH), and Content-Length would show it. A server that compresses anyway
#: with an encoding the client decodes is decoded, and its Content-Length is not returned.
ACCEPT_ENCODING = b"identity"
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")


# -- placeholders --------------------------------------------------------------------------


def placeholder_names(*texts: str) -> list[str]:
    """Names referenced as ``{{secret:NAME}}`` in ``texts``, in order of first use.

    Raises:
        InvalidInput: a malformed placeholder (it would otherwise go out verbatim).
    """
    names: list[str] = []
    for text in texts:
        for match in PLACEHOLDER.finditer(text):
            name = match[1]
            if not NAME_RE.match(name):
                raise InvalidInput(f"invalid secret name in placeholder {match[0][:120]!r}")
            if name not in names:
                names.append(name)
        if _PLACEHOLDER_START in PLACEHOLDER.sub("", text):
            raise InvalidInput("malformed placeholder: write {{secret:NAME}} exactly")
    return names


def _inject(
    template: str, values: dict[str, bytes], encode: Callable[[bytes], bytes]
) -> tuple[bytes, list[tuple[int, int]]]:
    """``template`` as UTF-8 with each placeholder replaced by ``encode(value)``, and the
    ``(start, end)`` span of each injected value."""
    out, spans, last, size = [], [], 0, 0
    for match in PLACEHOLDER.finditer(template):
        before, value = template[last : match.start()].encode("utf-8"), encode(values[match[1]])
        out += [before, value]
        spans.append((size + len(before), size + len(before) + len(value)))
        size += len(before) + len(value)
        last = match.end()
    out.append(template[last:].encode("utf-8"))
    return b"".join(out), spans


def granted_info(vault: Vault, tx: Tx, scopes: Iterable[str], name: str, verb: str) -> SecretInfo:
    """Check an agent-supplied name, then the scope, then existence (in that order).

    The scope comes before existence so an agent cannot probe names it was not granted.
    """
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"invalid secret name {name[:100]!r}: names use letters, digits, '_', '.' and '-'"
        )
    require(scopes, f"secret:{verb}:{name}")
    info = vault.info(tx, name)
    if info.system:  # unreachable with NAME_RE, kept as a second lock
        raise ScopeDenied(f"secret {name!r} is not available to agents")
    return info


# -- the response --------------------------------------------------------------------------


class Header(BaseModel):
    """One response header (redacted)."""

    name: str
    value: str


class HttpResponseOut(BaseModel):
    """The response, with every secret value replaced by ``[REDACTED:NAME]``."""

    status: int
    reason: str
    url: str = Field(description="The URL that answered (after followed redirects), redacted.")
    headers: list[Header]
    body: str
    body_encoding: Literal["utf-8", "base64"] = Field(
        description="'base64' when the body is not UTF-8 text."
    )
    truncated: bool = Field(description=f"True when the body was cut at {MAX_RESPONSE_BYTES} B.")
    redirects: int = Field(description="Redirects followed.")
    redirect_refused: str | None = Field(
        default=None,
        description="Why a redirect was not followed (the 3xx response is returned instead).",
    )
    secrets_used: list[str] = Field(description="NAME@version of each injected secret.")


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class HttpExchange:
    """What a sent request gave: the redacted response, and the facts for the outcome entry."""

    response: HttpResponseOut
    facts: dict[str, Any]


async def http_request_plan(
    home: Home,
    vault: Vault,
    scopes: Iterable[str],
    *,
    agent: str,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    body: str | None,
) -> Plan[HttpExchange]:
    """Check a request with secrets to inject; return the plan that sends it.

    Everything below is checked here, before the plan exists (so before any intent). The
    plan's intent names the secrets (name and version), method, scheme, host and port, and
    records the use against the rate in its transaction; its act sends the request (the
    exchange is bounded to :data:`TOTAL_TIMEOUT`) and returns the redacted response.

    Raises:
        InvalidInput: no or malformed placeholder, placeholder outside the path, query,
            header values or body, bad URL or header.
        ScopeDenied: a missing ``secret:use:<name>`` grant, or a target (scheme, host, port)
            the secret may not go to.
        VaultDenied: the rate is used up, the agent is blocked from a secret, or it wrote
            the value of a secret it may only use (it is then blocked). The rate is checked
            again, under the write lock, by the intent's effect.
        NotFound: an unknown secret.  ConfigError: wrong master key or tampered row.
    The act raises ServiceError: connection failure, timeout, protocol error, an
    undecodable response (after the intent).
    """
    import anyio
    import httpx2

    _quiet_http_logs()
    headers = headers or {}
    scopes = list(scopes)
    names = placeholder_names(url, *headers.keys(), *headers.values(), body or "")
    if not names:
        raise InvalidInput(
            "no {{secret:NAME}} placeholder: secret_http_request is for requests that use a secret"
        )
    for key, template in headers.items():
        if PLACEHOLDER.search(key):
            raise InvalidInput("placeholders may go in header values, not header names")
        lower = key.lower()
        if not _HEADER_NAME.match(key) or lower in _FORBIDDEN_HEADERS or lower.startswith("proxy-"):
            raise InvalidInput(f"header {key[:100]!r} may not be set by an agent")
        if _CONTROL.search(template.encode("utf-8", "surrogateescape")):
            raise InvalidInput(f"header {key!r} holds control characters")

    def look(tx: Tx) -> dict[str, SecretInfo]:
        infos = {name: granted_info(vault, tx, scopes, name, "use") for name in names}
        check_blocked(tx, agent, names)
        return infos

    infos = await home.read(look)
    start_url, tokens, target = _build_url(httpx2, url)
    _check_target(target, infos)

    secrets = await home.read(lambda tx: [vault.get(tx, name) for name in names])
    values = {s.name: s.reveal() for s in secrets}
    for template in headers.values():
        for name in placeholder_names(template):
            if _CONTROL.search(values[name]):
                raise InvalidInput(f"secret {name!r} holds control characters: not a header value")
    redactor = Redactor(secrets)
    guessed = _written_value(scopes, redactor, values, url, headers, body)
    if guessed is not None:
        now = home.clock.now()
        await home.write(lambda tx: block(tx, agent, guessed, now))
        raise VaultDenied(
            f"refused: the request holds the value of secret {guessed!r} (or an encoding of "
            f"it) written by the agent, not through {{{{secret:{guessed}}}}}; an agent that "
            "may only use a secret has never seen it, so this is treated as a guess. This "
            f"agent is now blocked from {guessed!r} until the owner runs "
            f"`charter secret unblock {guessed} --agent {agent}`"
        )
    request_url = _inject_url(start_url, tokens, values)
    request_headers = [
        (key.encode("ascii"), _inject(template, values, lambda v: v)[0])
        for key, template in headers.items()
    ]
    request_headers.append((b"Accept-Encoding", ACCEPT_ENCODING))
    content = None if body is None else _inject(body, values, lambda v: v)[0]
    used = [f"{s.name}@{s.version}" for s in secrets]
    rate = RateLimit(agent, tuple(infos.values()), home.clock.now())
    await home.read(rate.check)  # refuse early; checked again (and recorded) with the intent

    details = {
        "secrets": [{"name": s.name, "version": s.version} for s in secrets],
        "method": method,
        "scheme": target.scheme,
        "host": target.host,
        "port": target.port,
    }

    async def act(_intent: Entry) -> HttpExchange:
        timeout, total_timeout = httpx2.Timeout(IO_TIMEOUT), TOTAL_TIMEOUT
        try:
            with anyio.fail_after(total_timeout):
                async with httpx2.AsyncClient(
                    follow_redirects=False, trust_env=False, timeout=timeout
                ) as client:
                    out, facts = await _exchange(
                        httpx2,
                        client,
                        (method, request_url, request_headers, content),
                        (url, start_url, tokens),
                        infos,
                        redactor,
                    )
        except TimeoutError:
            raise ServiceError(
                f"request to {target.host} timed out after {total_timeout:g}s"
            ) from None
        except httpx2.TimeoutException:
            raise ServiceError(f"request to {target.host} timed out") from None
        except httpx2.ConnectError:
            raise ServiceError(f"could not connect to {target.host}") from None
        except httpx2.HTTPError as exc:
            # NOTE: never the exception text: it may quote the URL, and so a secret.
            raise ServiceError(f"request to {target.host} failed ({type(exc).__name__})") from None
        out.secrets_used = used
        return HttpExchange(out, facts)

    return Plan(
        details=details,
        act=act,
        intent_effects=(rate.record,),
        outcome=lambda exchange: exchange.facts,
    )


def _written_value(
    scopes: list[str],
    redactor: Redactor,
    values: dict[str, bytes],
    url: str,
    headers: dict[str, str],
    body: str | None,
) -> str | None:
    """The secret whose value the agent wrote into the request though it may only use it (the
    caller blocks the agent from it and refuses), or None.

    NOTE: the agent was never shown such a value, so writing it (raw or in a covered
    encoding) is a guess; sending it would let the echo's redaction confirm the guess.
    The refusal confirms it too, so the agent is blocked from that secret from now on.
    Only what Charter injected, exactly where it injected it, may hold the value.

    Raises:
        InvalidInput: the URL holds the value of a secret the agent may read.
    """
    quoted: Callable[[bytes], bytes] = lambda v: urllib.parse.quote(v, safe="").encode()  # noqa: E731
    parts = [_inject(url, values, quoted), *((k.encode("utf-8", "replace"), []) for k in headers)]
    parts += [_inject(v, values, lambda v: v) for v in headers.values()]
    if body is not None:
        parts.append(_inject(body, values, lambda v: v))
    for index, (data, spans) in enumerate(parts):
        name = redactor.foreign(data, spans)
        if name is not None and index == 0 and grants(scopes, f"secret:read:{name}"):
            # NOTE: a value the agent may read is no guess, but the URL is kept as written
            # (an approval request shows it, the owner reads it); a value must never get there.
            raise InvalidInput(
                f"the URL holds the value of secret {name!r}; write {{{{secret:{name}}}}} "
                "instead: the URL is shown to approvers as written, and secret values never are"
            )
        if name is not None and not grants(scopes, f"secret:read:{name}"):
            return name
    return None


def _quiet_http_logs() -> None:
    """Keep the HTTP client's own logs at WARNING and above.

    NOTE: httpx2 logs every request URL at INFO and httpcore2 logs response headers at
    DEBUG; both may hold an injected or echoed secret, so they never go below WARNING.
    """
    import logging

    for name in ("httpx2", "httpcore2"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(("httpx2.", "httpcore2.")):
            logging.getLogger(name).setLevel(logging.NOTSET)


def _target_of(url: httpx2.URL) -> _Target:
    scheme = url.scheme
    host = normalize_host(url.raw_host.decode("ascii"))
    return _Target(scheme, host, url.port or DEFAULT_PORTS.get(scheme, 0))


def _build_url(httpx2: Any, template: str) -> tuple[httpx2.URL, dict[str, str], _Target]:
    """Parse ``template`` with each placeholder standing in as a random plain token.

    The check and the request use the same parser, and the tokens may only land in the path
    or query: in the userinfo, host, port or fragment they would send the secret elsewhere.
    Returns the URL (tokens in place, fragment dropped), token -> secret name, and target.
    """
    import secrets

    prefix = f"charterph{secrets.token_hex(6)}"
    tokens: dict[str, str] = {}

    def stand_in(match: re.Match[str]) -> str:
        token = f"{prefix}n{len(tokens)}x"
        tokens[token] = match[1]
        return token

    tokenized = PLACEHOLDER.sub(stand_in, template)
    try:
        url = httpx2.URL(tokenized)
    except (httpx2.InvalidURL, ValueError, TypeError):
        raise InvalidInput("the URL cannot be parsed") from None
    if url.scheme not in ("http", "https"):
        raise InvalidInput("the URL must start with https:// (or http:// for a loopback host)")
    if not url.raw_host:
        raise InvalidInput("the URL has no host")
    raw_path: bytes = url.raw_path
    if any(raw_path.count(token.encode()) != 1 for token in tokens):
        raise InvalidInput(
            "a secret placeholder may only appear in the URL's path or query, never in its "
            "user info, host, port or fragment"
        )
    try:
        target = _target_of(url)
    except (InvalidInput, UnicodeDecodeError):
        raise InvalidInput("the URL's host is not a valid host name") from None
    return url.copy_with(fragment=None), tokens, target


def _inject_url(url: httpx2.URL, tokens: dict[str, str], values: dict[str, bytes]) -> httpx2.URL:
    """Replace each token in the path and query by its secret, percent-encoded."""
    raw: bytes = url.raw_path
    for token, name in tokens.items():
        raw = raw.replace(token.encode(), urllib.parse.quote(values[name], safe="").encode())
    out = url.copy_with(raw_path=raw)
    if (out.raw_host, out.port, out.userinfo) != (url.raw_host, url.port, url.userinfo):
        raise InvalidInput("the URL changed its host when the secrets were injected")
    return out


def _check_target(target: _Target, infos: dict[str, SecretInfo]) -> None:
    """Every injected secret must allow ``target`` (scheme, host and port); plain http only
    on loopback."""
    if target.scheme == "http" and not is_loopback(target.host):
        raise InvalidInput(
            f"secrets are only sent over https (plain http is allowed for loopback hosts), "
            f"not to http://{target.host}"
        )
    for name, info in infos.items():
        if not any(allows(e, target.scheme, target.host, target.port) for e in info.allowed_hosts):
            allowed = ", ".join(info.allowed_hosts) or "none: ask the owner to add one"
            raise ScopeDenied(
                f"secret {name!r} may not be sent to {target.host!r} ({target}; "
                f"allowed hosts: {allowed})"
            )


async def _exchange(
    httpx2: Any,
    client: httpx2.AsyncClient,
    first: tuple[str, httpx2.URL, list[tuple[bytes, bytes]], bytes | None],
    written: tuple[str, httpx2.URL, dict[str, str]],
    infos: dict[str, SecretInfo],
    redactor: Redactor,
) -> tuple[HttpResponseOut, dict[str, Any]]:
    """Send, following redirects only while they stay on targets every secret allows.

    ``written`` is the URL as the agent wrote it, parsed with tokens for placeholders: the
    URL shown back is built from it (placeholders as written), never from the injected one.
    """
    method, url, headers, content = first
    shown_text, shown, tokens = written
    refused: str | None = None
    for hop in range(MAX_REDIRECTS + 1):
        request = client.build_request(method, url, headers=headers, content=content)
        response = await client.send(request, stream=True)
        try:
            location = response.headers.get("location") if response.is_redirect else None
            if location is not None:
                if hop == MAX_REDIRECTS:
                    refused = f"more than {MAX_REDIRECTS} redirects"
                else:
                    refused = _redirect_refusal(httpx2, url, location, infos)
                if refused is None:
                    url, shown = url.join(location), shown.join(location)
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method = "GET" if method != "HEAD" else "HEAD"
                        content = None
                        headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
                    continue
            host = url.raw_host.decode("ascii", "replace")
            compressed = replies.refuse_undecodable(response, host, "secrets")
            data, truncated = await replies.read_capped(
                response, MAX_RESPONSE_BYTES, redactor.max_length
            )
        finally:
            await response.aclose()
        text, encoding = replies.redacted_body(redactor, data, truncated, MAX_RESPONSE_BYTES)
        if hop:
            shown_text = str(shown)
            for token, name in tokens.items():
                shown_text = shown_text.replace(token, f"{{{{secret:{name}}}}}")
            shown_text = redactor.redact_text(shown_text)  # the server's Location may echo it
        out = HttpResponseOut(
            status=response.status_code,
            reason=replies.redacted_reason(response, redactor),
            url=shown_text,
            headers=[
                Header(name=k, value=v)
                for k, v in replies.redacted_headers(response, redactor, compressed)
            ],
            body=text,
            body_encoding=encoding,
            truncated=truncated,
            redirects=hop,
            redirect_refused=refused,
            secrets_used=[],
        )
        facts = {
            "status": response.status_code,
            "host": url.raw_host.decode("ascii", "replace"),
            "redirects": hop,
            "bytes": min(len(data), MAX_RESPONSE_BYTES),
            "truncated": truncated,
        }
        if refused:
            facts["redirect_refused"] = True
        return out, facts
    raise AssertionError("unreachable")  # pragma: no cover


def _redirect_refusal(
    httpx2: Any, url: httpx2.URL, location: str, infos: dict[str, SecretInfo]
) -> str | None:
    """Why the redirect to ``location`` must not be followed, or None to follow it."""
    try:
        _check_target(_target_of(url.join(location)), infos)
    except (InvalidInput, ScopeDenied, UnicodeDecodeError, ValueError, httpx2.InvalidURL):
        return "the redirect leaves the hosts the injected secrets are allowed on"
    return None
