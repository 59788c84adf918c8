"""The vault's services: the owner's set/list/rm/rotate, and the agent's list/get/use.

An agent uses a secret without seeing it: it writes ``{{secret:NAME}}`` in the URL path or
query, a header value or the body of :func:`http_request`, which checks the scopes and the
secret's allowed hosts, commits the intent, sends the request from here, and hands back the
response with every occurrence of the value (raw and in its common encodings) replaced by
``[REDACTED:NAME]``. Reading a value (:func:`read_secret`) is a separate, narrower grant.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from charter.errors import InvalidInput, NotFound, ScopeDenied, ServiceError
from charter.home import Home
from charter.scopes import require
from charter.storage.db import transaction
from charter.storage.vault import NAME_RE, SecretInfo, SecretValue, Vault, normalize_host

if TYPE_CHECKING:
    import httpx2

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
#: somewhere other than the checked host, or desynchronize the message framing.
_FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "trailer"}
)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
#: Shifted base64 fragments shorter than this are not redacted (they would hit noise).
_MIN_FRAGMENT = 8


# -- owner services ------------------------------------------------------------------------


def set_secret(
    home: Home,
    name: str,
    value: bytes,
    *,
    description: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    passphrase: bytes | None = None,
    vault_passphrase: bytes | None = None,
) -> SecretInfo:
    """Store a new version of ``name`` and record ``secret.set`` (owner-signed, no value).

    ``description`` and ``allowed_hosts`` left as None keep their current values.

    Raises:
        InvalidInput: bad name, value, description or host.
        ConfigError: wrong master key or owner passphrase.
    """
    vault = Vault(home, passphrase=vault_passphrase)
    home.owner_key(passphrase)  # fail before writing anything if the passphrase is wrong
    try:
        current: SecretInfo | None = vault.info(name)
    except NotFound:
        current = None
    if description is None:
        description = current.description if current else ""
    hosts = (
        list(current.allowed_hosts if current else ()) if allowed_hosts is None else allowed_hosts
    )
    with transaction(home.conn):
        version = vault.put(name, value, description=description, allowed_hosts=hosts)
        info = vault.info(name)
        home.record_owner_event(
            "secret.set",
            {
                "name": name,
                "version": version,
                "description": info.description,
                "allowed_hosts": list(info.allowed_hosts),
            },
            passphrase=passphrase,
        )
    return info


def remove_secret(home: Home, name: str, *, passphrase: bytes | None = None) -> SecretInfo:
    """Delete ``name`` and all its versions; record ``secret.remove``.

    Raises:
        NotFound: unknown secret.  InvalidInput: a system secret (managed by Charter).
    """
    vault = Vault(home)
    info = vault.info(name)
    if info.system:
        raise InvalidInput(f"{name!r} is managed by Charter itself and cannot be removed here")
    home.owner_key(passphrase)
    with transaction(home.conn):
        vault.delete(name)
        home.record_owner_event(
            "secret.remove", {"name": name, "versions": list(info.versions)}, passphrase=passphrase
        )
    return info


def list_secrets(home: Home) -> list[SecretInfo]:
    """Every secret's metadata for the owner, system secrets included (flagged)."""
    return Vault(home).list(include_system=True)


def rotate_master_key(
    home: Home,
    *,
    passphrase: bytes | None = None,
    vault_passphrase: bytes | None = None,
    new_vault_passphrase: bytes | None = None,
) -> tuple[int, int]:
    """Re-encrypt every secret under a new master key; record ``vault.rotate``.

    Returns ``(new key version, rows re-encrypted)``.

    Raises:
        ConfigError: wrong current key or a tampered row (nothing changes).
    """
    home.owner_key(passphrase)

    def record(key_version: int, rows: int) -> None:
        home.record_owner_event(
            "vault.rotate",
            {
                "key_version": key_version,
                "rows": rows,
                "passphrase_derived": bool(new_vault_passphrase),
            },
            passphrase=passphrase,
        )

    vault = Vault(home, passphrase=vault_passphrase)
    return vault.rotate_master_key(new_passphrase=new_vault_passphrase, on_commit=record)


# -- what an agent may see -----------------------------------------------------------------


class SecretListItem(BaseModel):
    """A secret this agent may read or use (never its value)."""

    name: str
    description: str
    version: int = Field(description="The current version, used by placeholders.")
    can_read: bool = Field(description="secret_get may return its value.")
    can_use: bool = Field(description="secret_http_request may inject it.")
    allowed_hosts: list[str] = Field(
        description="Hosts it may be sent to (shown when can_use is true)."
    )


class SecretListOut(BaseModel):
    """The secrets this agent may read or use."""

    secrets: list[SecretListItem]


def visible_secrets(vault: Vault, allows: Callable[[str], bool]) -> SecretListOut:
    """The secrets a caller may read or use, ``allows(scope)`` saying what it is granted (the
    gate's ``Call.allows``: the charter narrowed by any bearer token). System secrets never
    appear."""
    items = []
    for info in vault.list():
        can_read = allows(f"secret:read:{info.name}")
        can_use = allows(f"secret:use:{info.name}")
        if can_read or can_use:
            items.append(
                SecretListItem(
                    name=info.name,
                    description=info.description,
                    version=info.version,
                    can_read=can_read,
                    can_use=can_use,
                    allowed_hosts=list(info.allowed_hosts) if can_use else [],
                )
            )
    return SecretListOut(secrets=items)


def _granted_info(vault: Vault, scopes: Iterable[str], name: str, verb: str) -> SecretInfo:
    """Check an agent-supplied name, then the scope, then existence (in that order).

    The scope comes before existence so an agent cannot probe names it was not granted.
    """
    if not NAME_RE.match(name):
        raise InvalidInput(
            f"invalid secret name {name[:100]!r}: names use letters, digits, '_', '.' and '-'"
        )
    require(scopes, f"secret:{verb}:{name}")
    info = vault.info(name)
    if info.system:  # unreachable with NAME_RE, kept as a second lock
        raise ScopeDenied(f"secret {name!r} is not available to agents")
    return info


def read_secret(vault: Vault, scopes: Iterable[str], name: str) -> SecretValue:
    """Decrypt ``name`` for an agent holding ``secret:read:<name>``.

    Raises:
        InvalidInput / ScopeDenied / NotFound / ConfigError (tampered row, wrong key).
    """
    _granted_info(vault, scopes, name, "read")
    return vault.get(name)


# -- redaction -----------------------------------------------------------------------------


class Redactor:
    """Replaces every occurrence of some secret values, raw or encoded, by a marker.

    Covered forms: raw bytes; base64 and base64url (padded, unpadded and at each of the three
    byte alignments, so a value inside a longer encoded string such as a Basic credential is
    caught); percent-encoding; JSON string escapes; hex.
    """

    def __init__(self, secrets: Iterable[SecretValue]) -> None:
        owners: dict[bytes, str] = {}
        for secret in secrets:
            for form in _encoded_forms(secret.reveal()):
                owners.setdefault(form, secret.name)
        # Longest first, so a full encoding wins over a fragment of it.
        ordered = sorted(owners, key=len, reverse=True)
        self._owners = owners
        self._max = max((len(f) for f in ordered), default=0)
        self._pattern = re.compile(b"|".join(re.escape(f) for f in ordered)) if ordered else None

    def redact(self, data: bytes) -> bytes:
        """``data`` with every secret form replaced by ``[REDACTED:NAME]``."""
        if self._pattern is None:
            return data
        return self._pattern.sub(lambda m: f"[REDACTED:{self._owners[m[0]]}]".encode(), data)

    def redact_text(self, data: str) -> str:
        """Same as :meth:`redact`, for text."""
        return self.redact(data.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape"
        )

    def cut_partial_tail(self, data: bytes) -> bytes:
        """Drop a tail that could be the beginning of a secret (for a truncated body)."""
        for size in range(min(self._max - 1, len(data)), 0, -1):
            tail = data[-size:]
            if any(form.startswith(tail) for form in self._owners):
                return data[:-size]
        return data


def _encoded_forms(value: bytes) -> set[bytes]:
    forms = {value, value.hex().encode(), value.hex().upper().encode()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        full = encode(value)
        forms |= {full, full.rstrip(b"=")}
        for shift in range(3):
            # The characters of encode(prefix + value + suffix) that depend on value alone.
            n = shift + len(value)
            fragment = encode(b"\0" * shift + value)[(4 if shift else 0) : (n // 3) * 4]
            if len(fragment) >= _MIN_FRAGMENT:
                forms.add(fragment)
    forms |= {
        urllib.parse.quote(value, safe="").encode(),
        urllib.parse.quote(value).encode(),
        urllib.parse.quote_plus(value).encode(),
    }
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        for ascii_only in (True, False):
            escaped = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
            forms |= {escaped.encode(), escaped.replace("/", "\\/").encode()}
    forms.discard(b"")
    return forms


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


def _inject(template: str, values: dict[str, bytes], encode: Callable[[bytes], bytes]) -> bytes:
    """``template`` as UTF-8 with each placeholder replaced by ``encode(value)``."""
    out, last = [], 0
    for match in PLACEHOLDER.finditer(template):
        out += [template[last : match.start()].encode("utf-8"), encode(values[match[1]])]
        last = match.end()
    out.append(template[last:].encode("utf-8"))
    return b"".join(out)


# -- the HTTP request ----------------------------------------------------------------------


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


#: Commits the intent entry (the call's ``intent``); the request is sent only after it.
IntentFn = Callable[[dict[str, Any]], Awaitable[Any]]


async def http_request(
    vault: Vault,
    scopes: Iterable[str],
    *,
    method: str,
    url: str,
    headers: dict[str, str] | None,
    body: str | None,
    commit_intent: IntentFn,
) -> tuple[HttpResponseOut, dict[str, Any]]:
    """Send a request with secrets injected; return the redacted response and outcome facts.

    Raises:
        InvalidInput: no or malformed placeholder, placeholder outside the path, query,
            header values or body, bad URL or header.
        ScopeDenied: a missing ``secret:use:<name>`` grant, or a host the secret may not go to.
        NotFound: an unknown secret.  ConfigError: wrong master key or tampered row.
        ServiceError: connection failure, timeout, protocol error (after the intent).
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
    infos = {name: _granted_info(vault, scopes, name, "use") for name in names}
    start_url, tokens, target = _build_url(httpx2, url)
    _check_target(target, infos)

    secrets = [vault.get(name) for name in names]
    values = {s.name: s.reveal() for s in secrets}
    for template in headers.values():
        for name in placeholder_names(template):
            if _CONTROL.search(values[name]):
                raise InvalidInput(f"secret {name!r} holds control characters: not a header value")
    request_url = _inject_url(start_url, tokens, values)
    request_headers = [
        (key.encode("ascii"), _inject(template, values, lambda v: v))
        for key, template in headers.items()
    ]
    content = None if body is None else _inject(body, values, lambda v: v)
    redactor = Redactor(secrets)
    used = [f"{s.name}@{s.version}" for s in secrets]

    await commit_intent(
        {
            "secrets": [{"name": s.name, "version": s.version} for s in secrets],
            "method": method,
            "scheme": target.scheme,
            "host": target.host,
        }
    )
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
                    infos,
                    redactor,
                    MAX_RESPONSE_BYTES,
                )
    except TimeoutError:
        raise ServiceError(f"request to {target.host} timed out after {total_timeout:g}s") from None
    except httpx2.TimeoutException:
        raise ServiceError(f"request to {target.host} timed out") from None
    except httpx2.ConnectError:
        raise ServiceError(f"could not connect to {target.host}") from None
    except httpx2.HTTPError as exc:
        # NOTE: never the exception text: it may quote the URL, and so a secret.
        raise ServiceError(f"request to {target.host} failed ({type(exc).__name__})") from None
    out.secrets_used = used
    return out, facts


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
        host = normalize_host(url.raw_host.decode("ascii"))
    except (InvalidInput, UnicodeDecodeError):
        raise InvalidInput("the URL's host is not a valid host name") from None
    return url.copy_with(fragment=None), tokens, _Target(url.scheme, host)


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
    """Every injected secret must allow ``target``'s host; plain http only on loopback."""
    if target.scheme == "http" and not _is_loopback(target.host):
        raise InvalidInput(
            f"secrets are only sent over https (plain http is allowed for loopback hosts), "
            f"not to http://{target.host}"
        )
    for name, info in infos.items():
        if target.host not in info.allowed_hosts:
            allowed = ", ".join(info.allowed_hosts) or "none: ask the owner to add one"
            raise ScopeDenied(
                f"secret {name!r} may not be sent to {target.host!r} (allowed hosts: {allowed})"
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _exchange(
    httpx2: Any,
    client: httpx2.AsyncClient,
    first: tuple[str, httpx2.URL, list[tuple[bytes, bytes]], bytes | None],
    infos: dict[str, SecretInfo],
    redactor: Redactor,
    max_bytes: int,
) -> tuple[HttpResponseOut, dict[str, Any]]:
    """Send, following redirects only while they stay on hosts every secret allows."""
    method, url, headers, content = first
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
                    url = url.join(location)
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method = "GET" if method != "HEAD" else "HEAD"
                        content = None
                        headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
                    continue
            data, truncated = await _read_capped(response, max_bytes)
        finally:
            await response.aclose()
        if truncated:
            data = redactor.cut_partial_tail(data)
        body = redactor.redact(data)
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode("ascii"), "base64"
        out = HttpResponseOut(
            status=response.status_code,
            reason=redactor.redact(response.reason_phrase.encode("latin-1", "replace")).decode(
                "latin-1"
            ),
            url=redactor.redact_text(str(url)),
            headers=[
                Header(
                    name=redactor.redact(k).decode("latin-1"),
                    value=redactor.redact(v).decode("latin-1"),
                )
                for k, v in response.headers.raw
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
            "bytes": len(data),
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
        nxt = url.join(location)
        target = _Target(nxt.scheme, normalize_host(nxt.raw_host.decode("ascii")))
        _check_target(target, infos)
    except (InvalidInput, ScopeDenied, UnicodeDecodeError, ValueError, httpx2.InvalidURL):
        return "the redirect leaves the hosts the injected secrets are allowed on"
    return None


async def _read_capped(response: httpx2.Response, max_bytes: int) -> tuple[bytes, bool]:
    """Read at most ``max_bytes`` of the (decoded) body; True when there was more."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False


def decode_secret(value: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    """A secret's value as text for ``secret_get``: UTF-8, or base64 when it is binary."""
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"
