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
import functools
import re
from collections.abc import Iterable, Iterator, Sequence

from charter.storage.vault import SecretValue

#: Shifted base64 fragments shorter than this are not redacted (they would hit noise).
_MIN_FRAGMENT = 8
#: Values longer than this are matched by their literal forms only (a per-character pattern
#: of a long value is slow to compile: ~0.25 s at 1 KiB); see :func:`_literal_forms`.
_MAX_PATTERN_BYTES = 1024
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


def _char_forms(c: str) -> list[str]:
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
    return forms


def _patterns(value: bytes) -> list[str]:
    """Patterns that together match every form of ``value`` (latin-1 text standing for
    bytes). Each begins with a literal (one pattern per form of the first byte or
    character), so the regex engine can skip to the places where a match may start."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        head, escapes, units = value[:1], [], [[_byte(b)] for b in value[1:]]
    else:
        head, escapes = text[0].encode("utf-8"), _char_forms(text[0])[1:]
        units = [_char_forms(c) for c in text[1:]]
    tail = "".join(_byte(b) for b in head[1:])
    firsts = [re.escape(head[:1].decode("latin-1")) + tail, f"%{_hex(head[0], 2)}" + tail]
    rest = "".join(f"(?:{'|'.join(forms)})" for forms in units)
    return [first + rest for first in [*firsts, *escapes]]


def _literal_forms(value: bytes, whole_escapes: bool = False) -> set[bytes]:
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
    if whole_escapes or len(value) > _MAX_PATTERN_BYTES:  # no per-character pattern
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

    def __init__(self, secrets: Iterable[SecretValue], *, literal: bool = False) -> None:
        """``literal``: match the values only in their literal forms (raw; percent-quoted and
        JSON-escaped as a whole; base64 and hex), as values over 1 KiB always are: compiling
        takes milliseconds instead of ~0.5 s for fresh ~750-byte values (the outbound DPoP
        token and proof, made of characters no common encoder escapes one by one)."""
        self._pattern, self._each, self._max = _compile(
            tuple((s.name, s.reveal()) for s in secrets), literal
        )

    def matches(self, data: bytes) -> Iterator[tuple[int, int, str]]:
        """``(start, end, secret name)`` of each occurrence, left to right."""
        if self._pattern is None:
            return
        for m in self._pattern.finditer(data):
            name = next(n for n, p in self._each if p.fullmatch(m[0]))
            yield m.start(), m.end(), name

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


@functools.lru_cache(maxsize=32)
def _compile(
    secrets: tuple[tuple[str, bytes], ...],
    literal: bool = False,
) -> tuple[re.Pattern[bytes] | None, list[tuple[str, re.Pattern[bytes]]], int]:
    """The patterns of some secrets: compiling takes tens of milliseconds, so the last few
    sets are kept (in this process's memory, which holds the values anyway)."""
    alternatives: list[tuple[int, str, str]] = []  # (nominal length, regex, secret name)
    longest = 0
    for name, value in secrets:
        # An escaped character is at most 12 bytes (a surrogate pair, or four %XX).
        longest = max(longest, 12 * len(value) + 4)
        if not literal and len(value) <= _MAX_PATTERN_BYTES:
            alternatives.extend((len(value), p, name) for p in _patterns(value))
        alternatives.extend(
            (len(form), re.escape(form.decode("latin-1")), name)
            for form in _literal_forms(value, literal)
        )
    # Longest first, so a whole value wins over a shorter secret or a fragment.
    alternatives.sort(key=lambda a: a[0], reverse=True)
    # NOTE: one flat alternation, each branch starting with a literal, and no groups around
    # the branches: the regex engine then skips to the bytes a match can start with (named
    # groups per branch made it ~20x slower). Which secret matched is found afterwards, by
    # the secrets' own patterns (matches are rare). Compiled as bytes: latin-1 maps each
    # byte to one character of the source.
    pattern = (
        re.compile("|".join(a[1] for a in alternatives).encode("latin-1")) if alternatives else None
    )
    by_name: dict[str, list[str]] = {}
    for _, regex, name in alternatives:
        by_name.setdefault(name, []).append(regex)
    each = [(n, re.compile("|".join(r).encode("latin-1"))) for n, r in by_name.items()]
    return pattern, each, longest
