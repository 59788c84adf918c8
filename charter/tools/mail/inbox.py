"""Reading an agent's mail (IMAP, or the local mailbox), returned as untrusted input.

Whatever a message says was written by whoever sent it, so every sender-controlled field
(subject, text, display name, attachment names) is returned under ``untrusted_content``
next to a ``notice`` telling the model to treat it as data, never as instructions. The
sender address and the ``Authentication-Results`` headers are reported as they are; only
the receiving server's own result (normally the first) means anything.

Which messages an agent sees:

* local transport: its own mailbox;
* IMAP: the configured account's folder, narrowed to messages addressed to the agent's
  address (``To``, ``Cc``, ``Delivered-To``, ``X-Original-To``, ``Envelope-To``) unless that
  address is the account's own username;
* and, in both, only senders matching the charter's ``allow_senders`` patterns when set.
  A hidden message is reported exactly like a missing one.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable
from email.message import EmailMessage, Message
from typing import TYPE_CHECKING, Literal

from charter.clock import parse_rfc3339, rfc3339
from charter.errors import InvalidInput, NotFound
from charter.tools.mail import imap as mail_imap
from charter.tools.mail import message as mm
from charter.tools.mail.models import (
    MAX_LIST_LIMIT,
    AttachmentInfo,
    MessageList,
    MessageOut,
    MessageSummary,
    UntrustedContent,
)
from charter.tools.mail.policy import EmailPolicy, require_policy
from charter.tools.mail.settings import imap_config, load_settings
from charter.tools.mail.transport import MailDenied

if TYPE_CHECKING:
    from charter.home import Home
    from charter.storage.ports import Tx
    from charter.tools.identity import AgentContext

MAX_TEXT_CHARS = 100_000
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


# -- entry points -----------------------------------------------------------------------------


async def list_messages(
    home: Home,
    agent: AgentContext,
    *,
    folder: str = "INBOX",
    unread_only: bool = False,
    since: str | None = None,
    limit: int = 20,
) -> MessageList:
    """The agent's newest messages, filtered by its policy.

    Raises:
        InvalidInput: bad folder, date or limit.  NotFound: no such folder.
        MailDenied: the agent has no address.  ServiceError: the IMAP server failed.
    """
    import anyio.to_thread

    policy = require_policy(agent)
    if not 0 < limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIST_LIMIT}")
    mail_imap.check_folder(folder)
    since_at = _parse_since(since)
    cfg = await _imap_config(home)
    if cfg is None:
        name = agent.name
        rows = await home.read(lambda tx: _local_rows(tx, name, folder, unread_only=unread_only))
        parsed = [(mm.parse(raw), i, raw, seen, who) for i, raw, seen, who in rows]
        items = [
            _summary(msg, f"local:{i}", folder, seen, len(raw), who)
            for msg, i, raw, seen, who in parsed
            if policy.allows_sender(_sender(msg)[1])
        ]
        transport: Literal["imap", "local"] = "local"
    else:
        visible = _visibility(policy, cfg.username)
        fetched = await anyio.to_thread.run_sync(
            lambda: mail_imap.list_headers(
                cfg, folder, unseen_only=unread_only, since=since_at and since_at.date()
            )
        )
        items = []
        for f in fetched:
            msg = mm.parse(f.data)
            if visible(msg):
                items.append(_summary(msg, f"uid:{f.uid}", folder, "\\Seen" in f.flags, f.size))
        transport = "imap"
    if since_at is not None:
        cutoff = rfc3339(since_at)
        items = [m for m in items if m.date is None or m.date >= cutoff]
    return MessageList(transport=transport, folder=folder, messages=items[:limit])


async def read_message(
    home: Home, agent: AgentContext, message_id: str, *, folder: str = "INBOX"
) -> MessageOut:
    """One message by the ``id`` from a listing (or its Message-ID); marks it read.

    Raises:
        NotFound: no such message visible to this agent.  InvalidInput: malformed id.
    """
    import anyio.to_thread

    policy = require_policy(agent)
    mail_imap.check_folder(folder)
    ident = message_id.strip()
    mm.check_header_text(ident, "message_id")
    cfg = await _imap_config(home)
    missing = NotFound(f"no message {ident[:100]!r} in {folder} (see email_list)")
    if cfg is None:
        name = agent.name
        row = await home.write(lambda tx: _local_read(tx, name, folder, ident, policy))
        if row is None:
            raise missing
        raw, seen, sender_agent = row
        return _full(mm.parse(raw), ident, folder, seen, len(raw), "local", sender_agent)
    uid: int | None = None
    lookup: str | None = None
    if ident.startswith("uid:") and ident[4:].isdigit():
        uid = int(ident[4:])
    else:
        lookup = mm.parse_message_id(ident, "message_id")
    visible = _visibility(policy, cfg.username)
    found = await anyio.to_thread.run_sync(
        lambda: mail_imap.read_message(
            cfg, folder, message_id=lookup, uid=uid, accept=lambda raw: visible(mm.parse(raw))
        )
    )
    if found is None:
        raise missing
    seen = "\\Seen" in found.flags
    return _full(mm.parse(found.data), f"uid:{found.uid}", folder, seen, found.size, "imap", None)


# -- helpers ----------------------------------------------------------------------------------


async def _imap_config(home: Home) -> mail_imap.ImapConfig | None:
    """IMAP settings, None for the local transport.

    Raises:
        MailDenied: SMTP is configured but IMAP is not.
    """
    if await load_settings(home) is None:
        return None
    cfg = await imap_config(home)
    if cfg is None:
        raise MailDenied(
            "no IMAP server is configured, so mail cannot be read; the owner can add one with "
            "`charter mail setup ... --imap-host HOST`"
        )
    return cfg


def _visibility(policy: EmailPolicy, username: str) -> Callable[[Message], bool]:
    own = policy.address.lower()
    whole_account = own == username.lower()

    def visible(msg: Message) -> bool:
        if not policy.allows_sender(_sender(msg)[1]):
            return False
        if whole_account:
            return True
        values = [str(v) for h in _RECIPIENT_HEADERS for v in msg.get_all(h) or []]
        return any(addr.lower() == own for _, addr in email.utils.getaddresses(values))

    return visible


def _parse_since(since: str | None) -> dt.datetime | None:
    if since is None:
        return None
    text = since.strip()
    try:
        if len(text) == 10:
            return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        return parse_rfc3339(text)
    except ValueError:
        raise InvalidInput("since must be a date (2026-01-31) or an RFC 3339 time") from None


def _sender(msg: Message) -> tuple[str, str]:
    pairs = email.utils.getaddresses([str(v) for v in msg.get_all("From") or []])
    name, addr = pairs[0] if pairs else ("", "")
    return name, addr.lower()


def _addresses(msg: Message, header: str) -> list[str]:
    values = [str(v) for v in msg.get_all(header) or []]
    return [addr.lower() for _, addr in email.utils.getaddresses(values) if addr]


def _date(msg: Message) -> str | None:
    try:
        value = email.utils.parsedate_to_datetime(str(msg.get("Date", "")))
    except (TypeError, ValueError):
        return None
    return rfc3339(value) if value.tzinfo else None


def _summary(
    msg: Message,
    ident: str,
    folder: str,
    seen: bool,
    size: int,
    sender_agent: str | None = None,
) -> MessageSummary:
    name, addr = _sender(msg)
    message_id = str(msg.get("Message-ID", "")).strip()
    return MessageSummary(
        id=message_id if mm.is_message_id(message_id) else ident,
        folder=folder,
        sender=addr,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        date=_date(msg),
        seen=seen,
        size=size,
        authentication_results=[str(v) for v in msg.get_all("Authentication-Results") or []],
        verified_sender=sender_agent,
        untrusted_content=UntrustedContent(
            sender_name=mm.printable(name),
            subject=mm.printable(str(msg.get("Subject", ""))),
            attachments=_attachments(msg) if msg.is_multipart() else [],
        ),
    )


def _full(
    msg: EmailMessage,
    ident: str,
    folder: str,
    seen: bool,
    size: int,
    transport: Literal["imap", "local"],
    sender_agent: str | None,
) -> MessageOut:
    base = _summary(msg, ident, folder, seen, size, sender_agent)
    text = _text(msg)
    content = base.untrusted_content.model_copy(
        update={
            "text": text[:MAX_TEXT_CHARS],
            "text_truncated": len(text) > MAX_TEXT_CHARS,
            "attachments": _attachments(msg),
        }
    )
    in_reply_to = str(msg.get("In-Reply-To", "")).strip() or None
    return MessageOut(
        **base.model_dump(exclude={"untrusted_content"}),
        untrusted_content=content,
        transport=transport,
        in_reply_to=in_reply_to,
    )


def _attachments(msg: Message) -> list[AttachmentInfo]:
    out = []
    for part in msg.walk():
        if part.is_multipart() or not (part.get_filename() or _is_attachment(part)):
            continue
        payload = part.get_payload(decode=True)
        out.append(
            AttachmentInfo(
                filename=mm.printable(part.get_filename() or ""),
                content_type=part.get_content_type(),
                size=len(payload) if isinstance(payload, bytes) else 0,
            )
        )
    return out


def _is_attachment(part: Message) -> bool:
    return str(part.get("Content-Disposition", "")).lower().startswith("attachment")


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    payload = body.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        text = payload.decode(body.get_content_charset() or "utf-8", "replace")
    except LookupError:
        text = payload.decode("utf-8", "replace")
    if body.get_content_type() == "text/html":
        text = _strip_html(text).lstrip("\n")
    return mm.canonical_text(text)


def _strip_html(text: str) -> str:
    import html.parser  # here: `charter serve` imports this module at start

    class _TextOnly(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self._skip = 0

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag in ("script", "style"):
                self._skip += 1
            elif tag in ("br", "p", "div", "li", "tr"):
                self.parts.append("\n")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style") and self._skip:
                self._skip -= 1

        def handle_data(self, data: str) -> None:
            if not self._skip:
                self.parts.append(data)

    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


# -- the local mailbox ------------------------------------------------------------------------


def _local_rows(
    tx: Tx, agent: str, folder: str, *, unread_only: bool
) -> list[tuple[int, bytes, bool, str]]:
    if folder.upper() != "INBOX":
        raise NotFound(f"no folder {folder!r}: the local mailbox has only INBOX")
    found = tx.mail.list_local(agent, unread_only=unread_only, limit=mail_imap.MAX_SCAN)
    return [(m.id, m.raw, m.seen, m.sender_agent) for m in found]


def _local_read(
    tx: Tx, agent: str, folder: str, ident: str, policy: EmailPolicy
) -> tuple[bytes, bool, str] | None:
    if folder.upper() != "INBOX":
        raise NotFound(f"no folder {folder!r}: the local mailbox has only INBOX")
    repo = tx.mail
    if ident.startswith("local:") and ident[6:].isdigit():
        found = repo.find_local(agent, local_id=int(ident[6:]))
    else:
        found = repo.find_local(agent, message_id=ident)
    if found is None or not policy.allows_sender(_sender(mm.parse(found.raw))[1]):
        return None
    repo.mark_seen(found.id)
    return found.raw, found.seen, found.sender_agent
