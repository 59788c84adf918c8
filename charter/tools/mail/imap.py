"""Reading a mailbox over IMAP with the standard library's ``imaplib``.

Every function here is synchronous and opens its own connection: callers run it in a worker
thread (``anyio.to_thread``). Listing uses ``EXAMINE`` and ``BODY.PEEK`` so it changes
nothing; reading one message marks it ``\\Seen``. Failures become :class:`ServiceError`
(server down, TLS, credentials) or :class:`NotFound` (no such folder), with the server's
words cleaned and bounded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from charter.errors import InvalidInput, NotFound, ServiceError
from charter.tools.mail.transport import ServerLogin, clean_reply, tls_context, tls_failure

if TYPE_CHECKING:
    import imaplib

#: How many of the newest matching messages a listing looks at (before filtering).
MAX_SCAN = 200
_FOLDER = re.compile(r"^[\x20-\x7e]{1,200}$")
_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass(frozen=True, slots=True)
class ImapConfig(ServerLogin):
    """Where the IMAP server is and how to log in."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """One message (or its header) as fetched."""

    uid: int
    flags: tuple[str, ...]
    size: int
    data: bytes


def quote(text: str) -> str:
    """An IMAP quoted string (imaplib sends arguments verbatim)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_folder(folder: str) -> str:
    """Return ``folder`` if it is a printable ASCII mailbox name.

    Raises:
        InvalidInput: otherwise.
    """
    if not _FOLDER.match(folder):
        raise InvalidInput("folder must be 1-200 printable ASCII characters, e.g. INBOX")
    return folder


@contextlib.contextmanager
def connect(cfg: ImapConfig) -> Iterator[imaplib.IMAP4]:
    """A logged-in connection, logged out afterwards.

    Raises:
        ServiceError: cannot connect, TLS failure, STARTTLS missing, credentials refused.
    """
    import imaplib  # here: `charter serve` imports this module at start, and rarely reads

    try:
        if cfg.security == "tls":
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                cfg.host, cfg.port, ssl_context=tls_context(cfg.ca_pem), timeout=cfg.timeout
            )
        else:
            imap = imaplib.IMAP4(cfg.host, cfg.port, timeout=cfg.timeout)
    except ssl.SSLError as exc:
        raise _tls_error(cfg, exc) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ServiceError(
            f"cannot connect to the IMAP server {cfg.where}: {_reason(exc)}"
        ) from None
    try:
        try:
            if cfg.security == "starttls":
                imap.starttls(tls_context(cfg.ca_pem))
        except ssl.SSLError as exc:
            raise _tls_error(cfg, exc) from None
        except imaplib.IMAP4.error as exc:
            raise ServiceError(
                f"the IMAP server {cfg.where} does not offer STARTTLS ({_reason(exc)})"
            ) from None
        try:
            imap.login(cfg.username, cfg.password)
        except imaplib.IMAP4.error as exc:
            raise ServiceError(
                f"the IMAP server {cfg.where} rejected the credentials ({_reason(exc)}); the "
                "owner can set them again with `charter mail setup`"
            ) from None
        yield imap
    except (OSError, imaplib.IMAP4.abort) as exc:
        raise ServiceError(
            f"the connection to the IMAP server {cfg.where} failed: {_reason(exc)}"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def list_headers(
    cfg: ImapConfig, folder: str, *, unseen_only: bool, since: dt.date | None
) -> list[Fetched]:
    """Headers of the newest ``MAX_SCAN`` matching messages, newest first (changes nothing)."""
    criteria = ["UNSEEN" if unseen_only else "ALL"]
    if since is not None:
        criteria += ["SINCE", since.strftime("%d-%b-%Y")]
    with connect(cfg) as imap:
        _select(imap, cfg, folder, readonly=True)
        uids = _search(imap, *criteria)[-MAX_SCAN:]
        if not uids:
            return []
        found = _fetch(imap, ",".join(map(str, uids)), "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])")
    return sorted(found, key=lambda f: f.uid, reverse=True)


def read_message(
    cfg: ImapConfig,
    folder: str,
    *,
    message_id: str | None,
    uid: int | None,
    accept: Callable[[bytes], bool],
) -> Fetched | None:
    """The first message with this Message-ID (or UID) that ``accept`` takes; mark it seen."""
    with connect(cfg) as imap:
        _select(imap, cfg, folder, readonly=False)
        if uid is not None:
            uids = [uid]
        else:
            assert message_id is not None
            uids = _search(imap, "HEADER", "Message-ID", quote(message_id))
        for candidate in uids[:20]:
            for msg in _fetch(imap, str(candidate), "(UID FLAGS RFC822.SIZE BODY.PEEK[])"):
                if accept(msg.data):
                    imap.uid("STORE", str(msg.uid), "+FLAGS", "(\\Seen)")
                    return msg
    return None


def check_login(cfg: ImapConfig) -> int:
    """Log in and examine INBOX; return its message count (for ``charter mail test``)."""
    with connect(cfg) as imap:
        return _select(imap, cfg, "INBOX", readonly=True)


def _select(imap: imaplib.IMAP4, cfg: ImapConfig, folder: str, *, readonly: bool) -> int:
    typ, data = imap.select(quote(check_folder(folder)), readonly=readonly)
    if typ != "OK":
        raise NotFound(f"no folder {folder!r} in the mailbox (try INBOX)")
    first = data[0] if data else None
    return int(first) if isinstance(first, bytes) and first.isdigit() else 0


def _search(imap: imaplib.IMAP4, *criteria: str) -> list[int]:
    typ, data = imap.uid("SEARCH", *criteria)
    if typ != "OK":
        raise ServiceError(f"the IMAP server refused a search ({clean_reply(repr(data), 120)})")
    first = data[0] if data else b""
    return sorted(int(u) for u in (first or b"").split()) if isinstance(first, bytes) else []


def _fetch(imap: imaplib.IMAP4, uids: str, items: str) -> list[Fetched]:
    typ, data = imap.uid("FETCH", uids, items)
    if typ != "OK":
        raise ServiceError(f"the IMAP server refused a fetch ({clean_reply(repr(data), 120)})")
    out: list[Fetched] = []
    meta, literal = b"", b""
    for item in [*data, None]:
        # A message is a (meta, literal) tuple, possibly followed by bytes with more items.
        if isinstance(item, tuple) or item is None:
            if meta:
                uid, size, flags = _UID.search(meta), _SIZE.search(meta), _FLAGS.search(meta)
                if uid is not None:
                    out.append(
                        Fetched(
                            uid=int(uid.group(1)),
                            flags=tuple(flags.group(1).decode().split()) if flags else (),
                            size=int(size.group(1)) if size else len(literal),
                            data=literal,
                        )
                    )
            meta, literal = (item[0], item[1]) if isinstance(item, tuple) else (b"", b"")
        elif isinstance(item, bytes):
            meta += b" " + item
    return out


def _tls_error(cfg: ImapConfig, exc: ssl.SSLError) -> ServiceError:
    return tls_failure("IMAP", cfg.where, exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = exc.args[0] if exc.args else type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return clean_reply(str(text), 160)
