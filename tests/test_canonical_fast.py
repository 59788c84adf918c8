"""The fast canonical JSON (orjson) is byte-equal to the reference, and fails the same way.

``canonical_json`` serializes with orjson; these tests pin it to the definition in
``charter/evidence/canonical.py`` (sorted, compact ``json.dumps`` with ``ensure_ascii=False`` on
Charter's domain) and to the ``rfc8785`` package, and check that ``parse_canonical`` accepts
exactly the canonical encodings of domain values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.evidence import canonical
from charter.evidence.canonical import MAX_SAFE_INT, canonical_json, parse_canonical

_chars = st.characters(codec="utf-8")  # every code point but lone surrogates
_key = st.text(st.characters(codec="utf-8", max_codepoint=0xFFFF), max_size=6)
_tricky = st.sampled_from(
    ["", "\x00", "\x1f", "\x7f", "\u2028", "\u2029", '"', "\\", "\b\f\n\r\t", "é", "😀", "\ufeff"]
)
_text = st.text(_chars, max_size=8) | _tricky
_domain = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | _text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_key | _tricky.filter(lambda s: s != "😀"), inner, max_size=4)
    ),
    max_leaves=20,
)


def _reference(value: Any) -> bytes:
    """The definition: the standard library's sorted, compact dump."""
    canonical._check(value)
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


@settings(max_examples=400, deadline=None)
@given(value=_domain)
def test_bytes_equal_the_definition_and_rfc8785(value: Any) -> None:
    data = canonical_json(value)
    assert data == _reference(value)
    assert data == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(value=_domain)
def test_parse_canonical_accepts_canonical_bytes_and_returns_the_value(value: Any) -> None:
    data = canonical_json(value)
    assert parse_canonical(data) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"b":1,"a":2}',  # unsorted
        b'{"a": 1}',  # whitespace
        b"1.0",  # float
        b"1e2",
        b"99999999999999999999",  # beyond 64 bits (orjson would give a float)
        b"9007199254740993",  # beyond 2^53
        b"-0",
        b'"\\u0041"',  # needless escape
        b'"\\ud800"',  # lone surrogate
        b"NaN",
        b'{"a":1,"a":2}',  # duplicate key
        b"\xef\xbb\xbf{}",  # BOM
        b'"\xff"',  # not UTF-8
        b'{"\xf0\x9f\x98\x80":1}',  # key outside the BMP
        b"[" * 70 + b"]" * 70,  # nested too deeply
    ],
)
def test_parse_canonical_refuses_anything_else(data: bytes) -> None:
    assert parse_canonical(data) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": 1.5}, "cannot canonicalize a float"),
        ([2**53], "integer outside the JSON safe range"),
        ({1: "x"}, "object keys must be strings"),
        ({"😀": 1}, "object keys must lie in the Basic Multilingual Plane"),
        ("\ud800", "string is not valid Unicode"),
        ({"k": "a\udfffb"}, "string is not valid Unicode"),
        (object(), "cannot canonicalize a object"),
    ],
)
def test_errors_are_unchanged(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        canonical_json(value)
