"""Canonical JSON (RFC 8785, JCS) for everything Charter hashes or signs.

Charter's signed objects hold only strings, booleans, null, integers within ±(2^53 - 1),
lists and objects (no floats). On that domain a sorted, compact ``json.dumps`` with
``ensure_ascii=False`` produces exactly the JCS bytes, except that JCS sorts keys by UTF-16
code units; ``_check`` refuses keys outside the Basic Multilingual Plane so the two orders
agree. Tests prove byte equality with the ``rfc8785`` package.

The bytes are produced by ``orjson`` (sorted keys, compact, UTF-8), which is byte-equal to
that ``json.dumps`` on this domain (``tests/test_canonical_fast.py``) and about ten times
faster; every append and every verified entry pays for it. Anything ``orjson`` refuses
goes through ``json.dumps``, so the errors are the same as ever.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_SAFE_INT = 2**53 - 1


def canonical_json(value: Any, *, checked: bool = False) -> bytes:
    """Return the RFC 8785 bytes of ``value``.

    ``checked=True`` skips the domain check, for a value the caller has just canonicalized
    and extended only with ASCII strings (e.g. a signed entry: its fields plus ``sig``).

    Raises:
        ValueError: if ``value`` holds a float, an out-of-range integer, a non-string key, a
            key outside the BMP, a lone surrogate, or a type JSON cannot express.
    """
    if not checked:
        _check(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        pass  # e.g. a lone surrogate: the standard library reports it below
    return _stdlib_dumps(value)


def _stdlib_dumps(value: Any) -> bytes:
    try:
        return json.dumps(
            value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise ValueError("string is not valid Unicode") from exc


def parse_canonical(data: bytes) -> Any | None:
    """Parse ``data`` if it is the canonical JSON of a value in Charter's domain, else None.

    None says nothing about why; callers that must report the reason re-parse with the
    standard library. For canonical input, the value is what ``json.loads`` returns.
    """
    try:
        value = orjson.loads(data)
        return value if canonical_json(value) == data else None
    except (orjson.JSONDecodeError, ValueError):
        return None


def _check(value: Any, depth: int = 0) -> None:
    # NOTE: on every ledger append and every verified entry: exact-type fast paths first,
    # the isinstance() chain only for subclasses.
    if depth > 64:
        raise ValueError("value is nested too deeply")
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return
    if kind is dict or isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise ValueError("object keys must be strings")
            if not key.isascii() and any(ord(ch) > 0xFFFF for ch in key):
                raise ValueError("object keys must lie in the Basic Multilingual Plane")
            if (type(item) is not str and item is not None) or depth >= 64:
                _check(item, depth + 1)
        return
    if isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise ValueError("integer outside the JSON safe range")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check(item, depth + 1)
        return
    raise ValueError(f"cannot canonicalize a {type(value).__name__}")
