"""Outgoing mail: validation, rendering, the canonical digest and the ``Charter-Signature``.

Everything an agent gives :func:`validate` is checked before anything else happens: a CR,
LF or other control character in any address, the subject, ``in_reply_to`` or an attachment's
name or type is refused as header injection; addresses must be bare ASCII addr-specs; sizes
are capped. :func:`render` then writes the message itself: Charter writes every top-level
header line (addresses, an RFC 2047 subject that survives folding, ``Date``, ``Message-ID``,
``Charter-Agent``) and lets :mod:`email` write only the MIME body.

The canonical digest (:func:`message_digest`) is computed from what a recipient parses, not
from wire bytes, so it survives re-encoding and re-folding in transit. The
``Charter-Signature`` header is a compact JWS (EdDSA, the agent's key) over that digest and
the ledger seq of the send's intent. AUDIT-FORMAT.md §10 specifies both for recipients; the
tests check them with independent code written from that document.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email
import email.utils
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any

from charter.errors import InvalidInput
from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import Ed25519Signer, b64url_decode
from charter.evidence.jwk import verify_signature as ed25519_verify
from charter.keys import compact_jws
from charter.tools.mail.models import DEFAULT_MAX_BYTES as DEFAULT_MAX_BYTES
from charter.tools.mail.models import MAX_BYTES_CEILING as MAX_BYTES_CEILING
from charter.tools.mail.models import MAX_RECIPIENTS as MAX_RECIPIENTS
from charter.tools.mail.models import AttachmentIn as AttachmentIn

MAX_SUBJECT_CHARS = 500
MAX_ATTACHMENTS = 10

SIGNATURE_HEADER = "Charter-Signature"
AGENT_HEADER = "Charter-Agent"
JWS_TYP = "charter-email+jws"
DIGEST_VERSION = 1

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL}(?:\.{_LABEL})+$")
_MSG_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")
_MIME_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE = re.compile(rf"^{_MIME_NAME}/{_MIME_NAME}$")
_WS_RUN = re.compile(r"[ \t]+")
_ALL_WS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A validated attachment."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A validated message, before it has a Message-ID, a date or a signature."""

    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    reply_to: tuple[str, ...]
    in_reply_to: str | None
    subject: str
    text: str
    attachments: tuple[Attachment, ...]

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every envelope recipient (to, cc, bcc), de-duplicated, in order."""
        return _dedupe((*self.to, *self.cc, *self.bcc))

    @property
    def size(self) -> int:
        """Bytes of text (UTF-8) plus decoded attachments: what ``max_bytes`` caps."""
        return len(self.text.encode("utf-8")) + sum(len(a.data) for a in self.attachments)


# -- validation -------------------------------------------------------------------------------


def check_header_text(value: str, field: str) -> str:
    """Return ``value`` if it holds no line break or control character (header injection).

    Raises:
        InvalidInput: naming the field.
    """
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs"):
            raise InvalidInput(
                f"{field} contains a line break or control character "
                f"(U+{ord(ch):04X}); header injection is refused"
            )
    return value


def parse_address(value: str, field: str) -> str:
    """Validate one bare ASCII address (``name@example.com``) and return it stripped.

    Raises:
        InvalidInput: for control characters, display names or anything not an addr-spec.
    """
    check_header_text(value, field)
    address = value.strip()
    if "<" in address or ">" in address or " " in address:
        raise InvalidInput(
            f"{field}: {address[:100]!r} is not a bare address; use e.g. bob@example.com "
            "(display names are not supported)"
        )
    local, _, domain = address.rpartition("@")
    if not _ADDRESS.match(address) or len(local) > 64 or len(domain) > 253:
        raise InvalidInput(
            f"{field}: {address[:100]!r} is not a valid email address (ASCII name@domain.tld)"
        )
    return address


def parse_address_list(value: str | list[str] | None, field: str) -> tuple[str, ...]:
    """Validate a list of addresses (a string may hold several, separated by commas)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        check_header_text(item, field)
        out.extend(parse_address(part, field) for part in item.split(",") if part.strip())
    return _dedupe(out)


def parse_message_id(value: str, field: str) -> str:
    """Validate a Message-ID like ``<abc@example.com>`` (angle brackets required).

    Raises:
        InvalidInput: for control characters or a malformed id.
    """
    check_header_text(value, field)
    text = value.strip()
    if not _MSG_ID.match(text):
        raise InvalidInput(f"{field}: {text[:100]!r} is not a Message-ID like <id@example.com>")
    return text


def is_message_id(text: str) -> bool:
    """True when ``text`` is a well-formed Message-ID with angle brackets."""
    return bool(_MSG_ID.match(text))


def printable(text: str) -> str:
    """``text`` with control and line-separator characters replaced by spaces."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") else c for c in text)


def _attachment(item: AttachmentIn, index: int) -> Attachment:
    field = f"attachments[{index}]"
    name = check_header_text(item.filename, f"{field}.filename").strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise InvalidInput(f"{field}.filename must be a plain file name (no path)")
    ctype = check_header_text(item.content_type, f"{field}.content_type").strip().lower()
    if not _CONTENT_TYPE.match(ctype) or ctype.split("/")[0] in ("multipart", "message"):
        raise InvalidInput(f"{field}.content_type: {ctype[:100]!r} is not a plain MIME type")
    try:
        data = base64.b64decode(item.content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field}.content_base64 is not valid base64") from None
    return Attachment(name, ctype, data)


def validate(
    *,
    sender: str,
    to: str | list[str] | None,
    subject: str,
    text: str,
    cc: str | list[str] | None = None,
    bcc: str | list[str] | None = None,
    reply_to: str | list[str] | None = None,
    in_reply_to: str | None = None,
    attachments: list[AttachmentIn] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> OutgoingMail:
    """Check everything an agent passed; return the message to send.

    Raises:
        InvalidInput: header injection, a bad address or Message-ID, no recipient, too many
            recipients or attachments, an oversized message, text that is not valid Unicode.
    """
    mail = OutgoingMail(
        sender=parse_address(sender, "from"),
        to=parse_address_list(to, "to"),
        cc=parse_address_list(cc, "cc"),
        bcc=parse_address_list(bcc, "bcc"),
        reply_to=parse_address_list(reply_to, "reply_to"),
        in_reply_to=None if in_reply_to is None else parse_message_id(in_reply_to, "in_reply_to"),
        subject=check_header_text(subject, "subject"),
        text=_normalize_newlines(text),
        attachments=tuple(_attachment(a, i) for i, a in enumerate(attachments or ())),
    )
    if not mail.recipients:
        raise InvalidInput("no recipient: give at least one address in to, cc or bcc")
    if len(mail.recipients) > MAX_RECIPIENTS:
        raise InvalidInput(
            f"too many recipients ({len(mail.recipients)}; {MAX_RECIPIENTS} at most)"
        )
    if len(mail.subject) > MAX_SUBJECT_CHARS:
        raise InvalidInput(f"subject is too long ({MAX_SUBJECT_CHARS} characters at most)")
    if len(mail.attachments) > MAX_ATTACHMENTS:
        raise InvalidInput(f"too many attachments ({MAX_ATTACHMENTS} at most)")
    if "\x00" in mail.text:
        raise InvalidInput("text contains a NUL character")
    try:
        mail.text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("text is not valid Unicode (lone surrogate)") from None
    if mail.size > max_bytes:
        raise InvalidInput(
            f"message too large: {mail.size} bytes of text and attachments, "
            f"this agent may send {max_bytes} at most"
        )
    return mail


# -- rendering --------------------------------------------------------------------------------


def new_message_id(sender: str) -> str:
    """A fresh, unguessable Message-ID in the sender's domain."""
    import secrets

    return f"<{secrets.token_hex(16)}@{sender.rpartition('@')[2].lower()}>"


def format_date(moment: dt.datetime) -> str:
    """RFC 5322 ``Date`` value in UTC, e.g. ``Fri, 02 Jan 2026 03:04:05 +0000``."""
    return email.utils.format_datetime(moment.astimezone(dt.UTC).replace(microsecond=0))


def render(mail: OutgoingMail, *, message_id: str, date: str, agent_id: str | None) -> bytes:
    """The message's bytes (CRLF), without ``Charter-Signature`` (see :func:`add_signature`).

    Bcc recipients are envelope-only: they never appear in the message. ``agent_id`` goes in
    ``Charter-Agent`` (None for the owner's test message).
    """
    lines = [
        _address_field("From", (mail.sender,)),
        *([_address_field("To", mail.to)] if mail.to else []),
        *([_address_field("Cc", mail.cc)] if mail.cc else []),
        *([_address_field("Reply-To", mail.reply_to)] if mail.reply_to else []),
        _unstructured_field("Subject", mail.subject),
        f"Date: {date}",
        f"Message-ID: {message_id}",
        *(
            [f"In-Reply-To: {mail.in_reply_to}", f"References: {mail.in_reply_to}"]
            if mail.in_reply_to
            else []
        ),
        *([f"{AGENT_HEADER}: {agent_id}"] if agent_id else []),
    ]
    return "\r\n".join(lines).encode("ascii") + b"\r\n" + _mime_body(mail)


def add_signature(unsigned: bytes, jws: str) -> bytes:
    """Prepend the ``Charter-Signature`` header, folded into lines of at most 78 characters."""
    first = 78 - len(SIGNATURE_HEADER) - 2
    chunks = [jws[:first], *(jws[i : i + 76] for i in range(first, len(jws), 76))]
    folded = "\r\n ".join(chunks)
    return f"{SIGNATURE_HEADER}: {folded}\r\n".encode("ascii") + unsigned


#: The MIME headers :mod:`email` writes for a text/plain part in quoted-printable UTF-8.
_TEXT_PART_HEADERS = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n"
)


def _text_body(text: str) -> bytes:
    """The bytes :func:`_mime_body` gets from :mod:`email` for a message without attachments,
    written directly: the same quoted-printable encoder (``email.quoprimime``, 78-character
    lines as ``email.policy.SMTP``), without the header registry that parses back every
    header it sets. The tests compare both byte for byte."""
    from email import quoprimime

    lines = text.encode("utf-8").splitlines()
    encoded = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), 78)
    return _TEXT_PART_HEADERS + encoded.replace("\n", "\r\n").encode("ascii")


def _mime_body(mail: OutgoingMail) -> bytes:
    if not mail.attachments:
        return _text_body(mail.text)
    return _email_mime_body(mail)


def _email_mime_body(mail: OutgoingMail) -> bytes:
    import email.policy  # here: its header machinery is not needed to start `charter serve`

    body = EmailMessage(policy=email.policy.SMTP)
    # NOTE: quoted-printable keeps trailing spaces and long lines intact through any MTA.
    body.set_content(mail.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    for att in mail.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        body.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)
    return body.as_bytes(policy=email.policy.SMTP)


def _address_field(name: str, addresses: tuple[str, ...]) -> str:
    line, out = f"{name}: ", []
    for i, address in enumerate(addresses):
        piece = address + ("," if i < len(addresses) - 1 else "")
        if len(line) + len(piece) + 1 > 78 and line.strip() != f"{name}:":
            out.append(line.rstrip())
            line = " "
        line += piece + " "
    out.append(line.rstrip())
    return "\r\n".join(out)


def _unstructured_field(name: str, value: str) -> str:
    words = value.split(" ")
    simple = (
        all(0x20 <= ord(c) < 0x7F for c in value)
        and "=?" not in value
        and "" not in words[1:-1]
        and (value == "" or (value[0] != " " and value[-1] != " "))
        and all(len(w) <= 70 for w in words)
    )
    if simple:
        lines, line = [], f"{name}:"
        for word in words:
            if len(line) + 1 + len(word) > 78 and line != f"{name}:":
                lines.append(line)
                line = ""
            line += " " + word
        lines.append(line)
        return "\r\n".join(lines)
    # RFC 2047 encoded-words, each holding whole characters, spaces included: decoders drop
    # only the folding whitespace *between* adjacent encoded-words, so the text is exact.
    words_out, chunk = [], b""
    for ch in value:
        data = ch.encode("utf-8")
        if len(chunk) + len(data) > 42:  # 56 base64 chars: lines stay within 78
            words_out.append(chunk)
            chunk = b""
        chunk += data
    words_out.append(chunk)
    encoded = [f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words_out]
    return f"{name}: " + "\r\n ".join(encoded)


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _dedupe(addresses: Any) -> tuple[str, ...]:
    seen: set[str] = set()
    out = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return tuple(out)


# -- the canonical digest ---------------------------------------------------------------------


class UnverifiableMessage(ValueError):
    """The message does not have the shape the canonical digest is defined on."""


def parse(raw: bytes) -> EmailMessage:
    """Parse RFC 5322 bytes the way the digest definition reads them."""
    import email.policy

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def canonical_text(text: str) -> str:
    """Line endings to LF, trailing spaces and tabs cut from each line, trailing newlines cut."""
    lines = _normalize_newlines(text).split("\n")
    return "\n".join(line.rstrip(" \t") for line in lines).rstrip("\n")


def digest_document(msg: Message) -> dict[str, Any]:
    """The canonical JSON object the digest hashes (AUDIT-FORMAT.md §10).

    Raises:
        UnverifiableMessage: a signed header is repeated or missing, or the body is not a
            text/plain part optionally followed by attachments in a multipart/mixed.
    """
    text_part, attachment_parts = _body_parts(msg)
    date_value = _single(msg, "Date")
    message_id = _single(msg, "Message-ID")
    if date_value is None or message_id is None:
        raise UnverifiableMessage("Date and Message-ID are required")
    try:
        date = email.utils.parsedate_to_datetime(date_value)
    except (TypeError, ValueError) as exc:
        raise UnverifiableMessage("the Date header cannot be parsed") from exc
    if date.tzinfo is None:
        raise UnverifiableMessage("the Date header has no time zone")
    in_reply_to = _single(msg, "In-Reply-To")
    from_list = _addresses(msg, "From")
    if len(from_list) != 1:
        raise UnverifiableMessage("From must hold exactly one address")
    return {
        "attachments": [
            {
                "content_type": part.get_content_type(),
                "filename": part.get_filename() or "",
                "sha256": hashlib.sha256(_payload(part)).hexdigest(),
            }
            for part in attachment_parts
        ],
        "cc": sorted(_addresses(msg, "Cc")),
        "date": int(date.timestamp()),
        "from": from_list[0],
        "in_reply_to": None if in_reply_to is None else _ALL_WS.sub("", in_reply_to),
        "message_id": _ALL_WS.sub("", message_id),
        "reply_to": sorted(_addresses(msg, "Reply-To")),
        "subject": _WS_RUN.sub(" ", _single(msg, "Subject") or "").strip(" "),
        "text_sha256": hashlib.sha256(
            canonical_text(_text_of(text_part)).encode("utf-8")
        ).hexdigest(),
        "to": sorted(_addresses(msg, "To")),
        "type": "charter-email",
        "v": DIGEST_VERSION,
    }


def message_digest(msg: Message) -> str:
    """Hex SHA-256 of the RFC 8785 bytes of :func:`digest_document`."""
    return hashlib.sha256(canonical_json(digest_document(msg))).hexdigest()


def outgoing_digest(mail: OutgoingMail, *, message_id: str, date: str, unsigned: bytes) -> str:
    """:func:`message_digest` of the message :func:`render` wrote (``unsigned``), computed
    from the validated fields it was rendered from instead of parsing it back.

    It is the same value: what :func:`render` writes parses back to exactly these fields
    (addresses are bare ASCII addr-specs, the subject survives its encoding and folding, the
    text its quoted-printable encoding up to what :func:`canonical_text` drops); the tests
    compare both ways over generated messages. A message with attachments is parsed back
    (their names and types go through :mod:`email`'s own encoding): the rare, large case.
    """
    if mail.attachments:
        return message_digest(parse(unsigned))
    document = {
        "attachments": [],
        "cc": sorted(a.lower() for a in mail.cc),
        "date": int(email.utils.parsedate_to_datetime(date).timestamp()),
        "from": mail.sender.lower(),
        "in_reply_to": mail.in_reply_to,
        "message_id": message_id,
        "reply_to": sorted(a.lower() for a in mail.reply_to),
        "subject": _WS_RUN.sub(" ", mail.subject).strip(" "),
        "text_sha256": hashlib.sha256(canonical_text(mail.text).encode("utf-8")).hexdigest(),
        "to": sorted(a.lower() for a in mail.to),
        "type": "charter-email",
        "v": DIGEST_VERSION,
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


def _single(msg: Message, name: str) -> str | None:
    values = msg.get_all(name) or []
    if len(values) > 1:
        raise UnverifiableMessage(f"the {name} header occurs {len(values)} times")
    if not values:
        return None
    return _normalize_newlines(str(values[0])).replace("\n", "")


def _addresses(msg: Message, name: str) -> list[str]:
    value = _single(msg, name)
    if value is None:
        return []
    return [addr.lower() for _, addr in email.utils.getaddresses([value]) if addr]


def _body_parts(msg: Message) -> tuple[Message, list[Message]]:
    if msg.get_content_type() == "text/plain":
        return msg, []
    if msg.get_content_type() != "multipart/mixed" or not msg.is_multipart():
        raise UnverifiableMessage(f"unexpected top-level type {msg.get_content_type()}")
    parts = [p for p in msg.get_payload() if isinstance(p, Message)]
    if not parts or parts[0].get_content_type() != "text/plain":
        raise UnverifiableMessage("the first part of multipart/mixed must be text/plain")
    if any(p.is_multipart() for p in parts[1:]):
        raise UnverifiableMessage("attachments must not be multipart")
    return parts[0], parts[1:]


def _payload(part: Message) -> bytes:
    """The part's content with its transfer encoding undone."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _text_of(part: Message) -> str:
    payload = _payload(part)
    charset = part.get_content_charset() or "us-ascii"
    try:
        return payload.decode(charset)
    except (LookupError, UnicodeDecodeError) as exc:
        raise UnverifiableMessage(f"the text is not valid {charset}") from exc


# -- Charter-Signature ------------------------------------------------------------------------


def sign(
    key: Ed25519Signer, *, digest: str, seq: int, ledger: str, agent_id: str, charter_hash: str
) -> str:
    """The compact JWS (EdDSA) for the ``Charter-Signature`` header."""
    payload = {
        "agent": agent_id,
        "charter": charter_hash,
        "digest": digest,
        "ledger": ledger,
        "seq": seq,
        "v": DIGEST_VERSION,
    }
    return compact_jws(payload, key, JWS_TYP)


@dataclass(frozen=True, slots=True)
class SignatureClaims:
    """A verified ``Charter-Signature``'s payload."""

    agent: str
    charter: str
    digest: str
    ledger: str
    seq: int


def verify(msg: Message, agent_public_key: bytes) -> SignatureClaims:
    """Check a received message's ``Charter-Signature`` against the agent's public key.

    Checks only the signature, the digest and that ``Charter-Agent`` names the signer; the
    caller still checks the charter (owner signature, validity, that it is this agent's).

    Raises:
        UnverifiableMessage: naming the first problem.
    """
    value = _single(msg, SIGNATURE_HEADER)
    agent_header = _single(msg, AGENT_HEADER)
    if value is None or agent_header is None:
        raise UnverifiableMessage("no Charter-Signature or Charter-Agent header")
    token = _ALL_WS.sub("", value)
    try:
        h64, p64, s64 = token.split(".")
        header = json.loads(b64url_decode(h64))
        payload = json.loads(b64url_decode(p64))
        sig = b64url_decode(s64)
    except ValueError as exc:
        raise UnverifiableMessage("Charter-Signature is not a compact JWS") from exc
    if not isinstance(header, dict) or header.get("alg") != "EdDSA":
        raise UnverifiableMessage("Charter-Signature must use alg EdDSA")
    if header.get("typ") != JWS_TYP or not isinstance(payload, dict):
        raise UnverifiableMessage(f"Charter-Signature must have typ {JWS_TYP}")
    if not ed25519_verify(agent_public_key, f"{h64}.{p64}".encode("ascii"), sig):
        raise UnverifiableMessage("Charter-Signature does not verify with the agent's key")
    if payload.get("agent") != agent_header.strip():
        raise UnverifiableMessage("Charter-Agent does not match the signed agent")
    if payload.get("v") != DIGEST_VERSION or payload.get("digest") != message_digest(msg):
        raise UnverifiableMessage("the message was altered: its digest does not match")
    try:
        return SignatureClaims(
            agent=str(payload["agent"]),
            charter=str(payload["charter"]),
            digest=str(payload["digest"]),
            ledger=str(payload["ledger"]),
            seq=int(payload["seq"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UnverifiableMessage("Charter-Signature payload is incomplete") from exc
