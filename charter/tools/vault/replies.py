"""An outside server's reply, read and redacted before any of it reaches the agent: shared by
``secret_http_request`` (:mod:`charter.tools.vault.http`) and ``token_http_request``
(:mod:`charter.tools.tokens.outbound`).

The body is read up to a cap (plus a margin so redaction sees whole occurrences across it),
only in encodings the HTTP client decodes (an encoded body could hide a value from the
redactor), and the status reason, every header and the body go through the redactor.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from charter.errors import ServiceError

if TYPE_CHECKING:
    import httpx2

    from charter.tools.vault.redact import Redactor

#: Content-Encodings the HTTP client decodes (so the redactor sees the plain bytes).
DECODABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


def refuse_undecodable(response: httpx2.Response, host: str, hidden: str) -> bool:
    """Refuse a body the HTTP client would hand back still encoded (so unredactable); True
    when the body is compressed (and will be decoded).

    Raises:
        ServiceError: naming the host and what could hide in it (``hidden``), never the
            server-chosen encoding.
    """
    codings = [
        c.strip().lower() for c in response.headers.get_list("content-encoding", split_commas=True)
    ]
    if any(c not in DECODABLE for c in codings):
        raise ServiceError(
            f"the response from {host} uses a Content-Encoding Charter cannot decode, so it "
            f"cannot be checked for {hidden}: nothing of it is returned"
        )
    return any(c not in ("", "identity") for c in codings)


async def read_capped(response: httpx2.Response, max_bytes: int, margin: int) -> tuple[bytes, bool]:
    """Read the (decoded) body: all of it, or ``max_bytes + margin`` bytes and True when it
    is longer than ``max_bytes`` (the margin lets redaction see whole occurrences)."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes + margin:
            break
    data = b"".join(chunks)
    return data[: max_bytes + margin], len(data) > max_bytes


def redacted_body(
    redactor: Redactor, data: bytes, truncated: bool, max_bytes: int
) -> tuple[str, str]:
    """The body as (text, ``utf-8`` or ``base64``), redacted over the whole window read and
    then cut at the cap: an occurrence across the cap is cut off whole, so where the body ends
    never depends on part of a value."""
    body = redactor.redact(data, max_bytes if truncated else None)
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def redacted_reason(response: httpx2.Response, redactor: Redactor) -> str:
    """The status line's reason phrase, redacted."""
    return redactor.redact(response.reason_phrase.encode("latin-1", "replace")).decode("latin-1")


def redacted_headers(
    response: httpx2.Response, redactor: Redactor, compressed: bool
) -> list[tuple[str, str]]:
    """Every response header (name, value), redacted; Content-Length dropped when the body
    was decompressed (it no longer describes what the agent gets)."""
    return [
        (redactor.redact(k).decode("latin-1"), redactor.redact(v).decode("latin-1"))
        for k, v in response.headers.raw
        if not (compressed and k.lower() == b"content-length")
    ]
