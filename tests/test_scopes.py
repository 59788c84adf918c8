"""Scope containment by glob semantics (G-TOKEN-1: a token is never wider than its charter).

``glob_within`` is checked against brute force: every string over a small alphabet (the
pattern characters plus one character no pattern mentions, and a non-ASCII one) that the
requested glob matches must be matched by a ceiling glob, as ``fnmatchcase`` decides.
"""

from __future__ import annotations

import fnmatch
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.scopes import MAX_GLOB_STATES, glob_within, is_subset

_globs = st.text(alphabet="ab*?[]!-", max_size=4)


def _witness(pattern: str, ceiling: list[str]) -> str | None:
    """A string the pattern matches and no ceiling glob does, by trying every string of up
    to 5 characters over the characters the globs mention, "z" (mentioned by none) and "é".
    """
    letters = sorted({*pattern, *"".join(ceiling), "z", "é"})
    inner = re.compile(fnmatch.translate(pattern)).match
    outer = [re.compile(fnmatch.translate(c)).match for c in ceiling]
    for n in range(6):
        for chars in itertools.product(letters, repeat=n):
            s = "".join(chars)
            if inner(s) and not any(m(s) for m in outer):
                return s
    return None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_globs, st.lists(_globs, max_size=3))
def test_glob_within_agrees_with_brute_force(pattern: str, ceiling: list[str]) -> None:
    witness = _witness(pattern, ceiling)
    if glob_within(pattern, ceiling):
        assert witness is None, f"{pattern!r} admitted under {ceiling!r} but matches {witness!r}"
    else:
        # Complete on these sizes: a refusal always has a short witness.
        assert witness is not None, f"{pattern!r} refused under {ceiling!r} with no witness"


@pytest.mark.parametrize(
    ("requested", "ceiling"),
    [
        ("A*", ["A?"]),
        ("[X]*", ["[!X]*"]),
        ("*", ["A?", "[!X]*"]),
        ("?", ["[!X]"]),
        ("A[!B]", ["A[A-Z]"]),  # [!B] matches characters outside A-Z too
        ("[", ["[[]x"]),  # an unclosed [ is the literal "["
    ],
)
def test_a_wider_glob_is_refused(requested: str, ceiling: list[str]) -> None:
    assert not glob_within(requested, ceiling)
    assert not is_subset([f"secret:use:{requested}"], [f"secret:use:{c}" for c in ceiling])


@pytest.mark.parametrize(
    ("requested", "ceiling"),
    [
        ("API_*", ["API*"]),
        ("API_KEY", ["API_*"]),
        ("A?", ["A*"]),
        ("[AB]*", ["A*", "B*"]),
        ("[!X]Y", ["[!X]*"]),
        ("*", ["*"]),
        ("A[B-D]", ["A[A-Z]"]),
    ],
)
def test_a_narrower_or_equal_glob_is_admitted(requested: str, ceiling: list[str]) -> None:
    assert glob_within(requested, ceiling)
    assert is_subset([f"secret:read:{requested}"], [f"secret:read:{c}" for c in ceiling])


def test_families_and_plain_scopes_do_not_mix() -> None:
    assert not is_subset(["secret:read:A"], ["secret:use:*"])
    assert is_subset(["email:send:*@example.com"], ["email:send"])
    assert not is_subset(["email:send"], ["email:send:*"])
    assert not is_subset(["audit:read"], ["token:issue"])
    assert is_subset(["audit:read", "secret:use:K"], ["audit:read", "secret:use:*"])


def test_a_glob_too_costly_to_decide_is_refused_not_admitted() -> None:
    """``*a`` then n ``?`` has 2^n automaton states: past the budget the answer is no, at once."""
    hard = "*a" + "?" * 16
    assert MAX_GLOB_STATES < 2**16
    assert not glob_within(hard, ["*a*"])  # contained, but not provably within the budget
    assert glob_within("*a" + "?" * 4, ["*a*"])  # small enough to decide
