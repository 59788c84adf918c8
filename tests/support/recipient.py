"""What a recipient does to check a ``Charter-Signature``, written from AUDIT-FORMAT.md §10 alone.

Nothing here imports Charter: JCS comes from the ``rfc8785`` package, the JWS check from
``joserfc``, the charter signature from PyNaCl. Tests compare its verdict with Charter's.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import fnmatch
import hashlib
import json
import re
import warnings
from email.message import Message
from typing import Any

import nacl.exceptions
import nacl.signing
import rfc8785
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey


class NotVerified(Exception):
    """The message does not verify; the text says why."""


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one(msg: Message, name: str, *, required: bool = False) -> str | None:
    values = msg.get_all(name) or []
    if len(values) > 1 or (required and not values):
        raise NotVerified(f"{name} must occur {'exactly' if required else 'at most'} once")
    return str(values[0]) if values else None


def _addrs(msg: Message, name: str) -> list[str]:
    value = _one(msg, name)
    if value is None:
        return []
    return sorted(a.lower() for _, a in email.utils.getaddresses([value]) if a)


def _canon_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip(" \t") for line in text.split("\n")).rstrip("\n")


def digest(msg: Message) -> str:
    """AUDIT-FORMAT.md §10.4."""
    if msg.get_content_type() == "text/plain":
        parts: list[Message] = [msg]
    elif msg.get_content_type() == "multipart/mixed":
        parts = list(msg.get_payload())  # type: ignore[arg-type]
        if parts[0].get_content_type() != "text/plain" or any(p.is_multipart() for p in parts[1:]):
            raise NotVerified("unexpected body structure")
    else:
        raise NotVerified("unexpected body structure")
    raw_text = parts[0].get_payload(decode=True)
    assert isinstance(raw_text, bytes)
    text = raw_text.decode(parts[0].get_content_charset() or "us-ascii")
    from_ = _addrs(msg, "From")
    if len(from_) != 1:
        raise NotVerified("From must hold one address")
    date = _one(msg, "Date", required=True)
    message_id = _one(msg, "Message-ID", required=True)
    in_reply_to = _one(msg, "In-Reply-To")
    assert date is not None and message_id is not None
    doc: dict[str, Any] = {
        "type": "charter-email",
        "v": 1,
        "from": from_[0],
        "to": _addrs(msg, "To"),
        "cc": _addrs(msg, "Cc"),
        "reply_to": _addrs(msg, "Reply-To"),
        "subject": re.sub(r"[ \t]+", " ", _one(msg, "Subject") or "").strip(" "),
        "date": int(email.utils.parsedate_to_datetime(date).timestamp()),
        "message_id": re.sub(r"\s+", "", message_id),
        "in_reply_to": None if in_reply_to is None else re.sub(r"\s+", "", in_reply_to),
        "text_sha256": sha(_canon_text(text).encode("utf-8")),
        "attachments": [
            {
                "content_type": a.get_content_type(),
                "filename": a.get_filename() or "",
                "sha256": sha(a.get_payload(decode=True) or b""),  # type: ignore[arg-type]
            }
            for a in parts[1:]
        ],
    }
    return sha(rfc8785.dumps(doc))


def verify(
    raw: bytes, charter: dict[str, Any], trusted_owner_key: dict[str, str]
) -> dict[str, Any]:
    """AUDIT-FORMAT.md §10.1-§10.5; returns the JWS payload or raises :class:`NotVerified`."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    signature = _one(msg, "Charter-Signature", required=True)
    agent_header = _one(msg, "Charter-Agent", required=True)
    assert signature is not None and agent_header is not None
    token = re.sub(r"\s+", "", signature)
    h64 = token.split(".")[0]
    header = json.loads(b64d(h64))
    if header.get("alg") != "EdDSA" or header.get("typ") != "charter-email+jws":
        raise NotVerified("wrong alg or typ")
    # Step 3, with an independent JOSE library (RFC 8037 JWK straight from the charter).
    key = OKPKey.import_key(charter["agent"]["key"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as superseded by RFC 9864
            obj = jws.deserialize_compact(token, key, algorithms=["EdDSA"])
    except JoseError as exc:
        raise NotVerified(f"bad signature: {exc}") from exc
    payload = json.loads(obj.payload)
    if payload.get("v") != 1 or payload["agent"] != agent_header.strip():
        raise NotVerified("payload agent does not match Charter-Agent")
    if payload["digest"] != digest(msg):
        raise NotVerified("digest mismatch")
    # Step 5: the charter.
    if payload["charter"] != sha(rfc8785.dumps(charter)):
        raise NotVerified("charter hash mismatch")
    if charter["owner"]["key"] != trusted_owner_key:
        raise NotVerified("charter is not signed by the trusted owner key")
    unsigned = {k: v for k, v in charter.items() if k != "sig"}
    try:
        nacl.signing.VerifyKey(b64d(charter["owner"]["key"]["x"])).verify(
            b"charter.charter.v1\x00" + rfc8785.dumps(unsigned), b64d(charter["sig"])
        )
    except nacl.exceptions.BadSignatureError as exc:
        raise NotVerified("charter signature invalid") from exc
    if charter["agent"]["id"] != payload["agent"]:
        raise NotVerified("charter is for another agent")
    sent = email.utils.parsedate_to_datetime(str(msg["Date"]))
    start = dt.datetime.fromisoformat(charter["not_before"].replace("Z", "+00:00"))
    start = start.replace(microsecond=0)  # Date has whole seconds
    end = dt.datetime.fromisoformat(charter["not_after"].replace("Z", "+00:00"))
    if not start <= sent < end:
        raise NotVerified("sent outside the charter's validity")
    if charter["policy"]["email"]["address"].lower() != _addrs(msg, "From")[0]:
        raise NotVerified("From is not the address the owner gave this agent")
    for address in _addrs(msg, "To") + _addrs(msg, "Cc") + _addrs(msg, "Reply-To"):
        if not any(
            s == "email:send"
            or (s.startswith("email:send:") and fnmatch.fnmatchcase(address, s[11:]))
            for s in charter["scopes"]
        ):
            raise NotVerified(f"the charter does not allow mail to {address}")
    return dict(payload)
