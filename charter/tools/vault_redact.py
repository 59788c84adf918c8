"""Redaction of secret values in HTTP responses, and finding values an agent wrote itself.

A value is matched, not enumerated, in the forms a server may echo it in: one pattern per
secret accepts, for each character, the raw bytes, percent-encoding of each byte (upper or
lower hex, any mixture with raw bytes, ``+`` for a space), and JSON escapes (``\\uXXXX`` in
either case, surrogate pairs, ``\\"``, ``\\\\``, ``\\/``, ``\\n``… — which covers Go's
HTML-safe ``\\u003c``/``\\u003e``/``\\u0026`` and "escape everything"). Base64, base64url
(padded, unpadded and at each of the three byte alignments) and hex (either case) are added
as literal forms.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator, Sequence

from charter.storage.vault import SecretValue

#: Shifted base64 fragments shorter than this are not redacted (they would hit noise).
_MIN_FRAGMENT = 8
#: Values longer than this are matched by their literal forms only (a per-character pattern
#: of a 64 KiB value would be slow to compile); see :func:`_literal_forms`.
_MAX_PATTERN_BYTES = 4096
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f"} | {
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _hex(n: int, width: int) -> str:
    """A regex for ``n`` in hex of ``width`` digits, letters in either case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{n:0{width}x}")


def _byte(b: int) -> str:
    return f"(?:{re.escape(bytes([b]).decode('latin-1'))}|%{_hex(b, 2)})"


def _char(c: str) -> str:
    """Every form of one character: raw/percent-encoded UTF-8 bytes, or a JSON escape."""
    forms = ["".join(_byte(b) for b in c.encode("utf-8"))]
    code = ord(c)
    if code > 0xFFFF:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"\\u{_hex(high, 4)}\\u{_hex(low, 4)}")
    else:
        forms.append(rf"\\u{_hex(code, 4)}")
    if c in _JSON_SHORT:
        forms.append(re.escape(_JSON_SHORT[c]))
    if c == " ":
        forms.append(r"\+")
    return f"(?:{'|'.join(forms)})"


def _pattern(value: bytes) -> str:
    """The per-character pattern of ``value`` (latin-1 text standing for bytes)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(_byte(b) for b in value)
    return "".join(_char(c) for c in text)


def _literal_forms(value: bytes) -> set[bytes]:
    forms = {value.hex().encode(), value.hex().upper().encode()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        full = encode(value)
        forms |= {full, full.rstrip(b"=")}
        for shift in range(3):
            # The characters of encode(prefix + value + suffix) that depend on value alone.
            n = shift + len(value)
            fragment = encode(b"\0" * shift + value)[(4 if shift else 0) : (n // 3) * 4]
            if len(fragment) >= _MIN_FRAGMENT:
                forms.add(fragment)
    if len(value) > _MAX_PATTERN_BYTES:  # no per-character pattern: the common forms
        import json
        import urllib.parse

        forms |= {value, urllib.parse.quote(value, safe="").encode()}
        forms |= {urllib.parse.quote(value).encode(), urllib.parse.quote_plus(value).encode()}
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


class Redactor:
    """Finds and replaces every occurrence of some secret values, raw or encoded."""

    def __init__(self, secrets: Iterable[SecretValue]) -> None:
        alternatives: list[tuple[int, str, str]] = []  # (nominal length, regex, secret name)
        self._max = 0
        for secret in secrets:
            value = secret.reveal()
            # An escaped character is at most 12 bytes (a surrogate pair, or four %XX).
            self._max = max(self._max, 12 * len(value) + 4)
            if len(value) <= _MAX_PATTERN_BYTES:
                alternatives.append((len(value), _pattern(value), secret.name))
            alternatives.extend(
                (len(form), re.escape(form.decode("latin-1")), secret.name)
                for form in _literal_forms(value)
            )
        # Longest first, so a whole value wins over a shorter secret or a fragment.
        alternatives.sort(key=lambda a: a[0], reverse=True)
        self._names = {f"s{i}": name for i, (_, _, name) in enumerate(alternatives)}
        source = "|".join(f"(?P<s{i}>{regex})" for i, (_, regex, _) in enumerate(alternatives))
        # NOTE: compiled as bytes (latin-1 maps each byte to one character of the source).
        self._pattern = re.compile(source.encode("latin-1"), re.DOTALL) if source else None

    def matches(self, data: bytes) -> Iterator[tuple[int, int, str]]:
        """``(start, end, secret name)`` of each occurrence, left to right."""
        if self._pattern is None:
            return
        for m in self._pattern.finditer(data):
            yield m.start(), m.end(), self._names[str(m.lastgroup)]

    def redact(self, data: bytes, cap: int | None = None) -> bytes:
        """``data`` with every secret form replaced by ``[REDACTED:NAME]``.

        With ``cap``, only ``data[:cap]`` is returned (redacted), and an occurrence that
        starts before ``cap`` and ends after it is cut off whole. Whether there is one never
        depends on a *part* of a value: the caller passes at least ``cap`` +
        :attr:`max_length` bytes when it has them, so every occurrence that starts before
        the cap is seen whole (this is what makes the cut no prefix oracle).
        """
        limit = len(data) if cap is None else min(cap, len(data))
        out, last = [], 0
        for start, end, name in self.matches(data):
            if end > limit:
                limit = min(limit, start)
                break
            out += [data[last:start], f"[REDACTED:{name}]".encode()]
            last = end
        out.append(data[last:limit])
        return b"".join(out)

    @property
    def max_length(self) -> int:
        """An upper bound on the length of any occurrence."""
        return self._max

    def redact_text(self, data: str) -> str:
        """Same as :meth:`redact`, for text."""
        return self.redact(data.encode("utf-8", "surrogateescape")).decode(
            "utf-8", "surrogateescape"
        )

    def foreign(self, data: bytes, injected: Sequence[tuple[int, int]]) -> str | None:
        """The name of a secret occurring in ``data`` other than exactly at an ``injected``
        span (where Charter put it), or None."""
        spans = set(injected)
        for start, end, name in self.matches(data):
            if (start, end) not in spans:
                return name
        return None
