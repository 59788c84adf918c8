"""Scope strings (DESIGN §3): parsing, validation and checks.

A charter's scopes are the ceiling; tokens and calls may only narrow them. Known forms::

    token:issue   email:send   email:send:<recipient-glob>   email:read
    secret:read:<name-glob>    secret:use:<name-glob>        audit:read
    agent:delegate (sub-agents, AUDIT-FORMAT §12)

Unknown scopes are refused when a charter is made; an empty list grants nothing; every check
fails closed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from charter.errors import InvalidInput, ScopeDenied

PLAIN_SCOPES = frozenset(
    {"token:issue", "email:send", "email:read", "audit:read", "agent:delegate"}
)
#: Families whose scope carries a glob after the family prefix.
GLOB_FAMILIES = ("secret:read:", "secret:use:", "email:send:")
_GLOB = re.compile(r"^[A-Za-z0-9_.*?@+\-\[\]!]{1,200}$")


def validate_scope(scope: str) -> str:
    """Return ``scope`` if it is a known form.

    Raises:
        InvalidInput: naming the unknown scope and the known forms.
    """
    if scope in PLAIN_SCOPES:
        return scope
    for family in GLOB_FAMILIES:
        if scope.startswith(family) and _GLOB.match(scope[len(family) :]):
            return scope
    known = ", ".join([*sorted(PLAIN_SCOPES), *(f + "<glob>" for f in GLOB_FAMILIES)])
    raise InvalidInput(f"unknown scope {scope!r}; known scopes: {known}")


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Validate each scope and return them sorted and de-duplicated."""
    return sorted({validate_scope(s) for s in scopes})


def grants(scopes: Iterable[str], needed: str) -> bool:
    """True when ``scopes`` grant ``needed``.

    ``needed`` is a concrete scope: ``secret:read:API_KEY`` is granted by
    ``secret:read:API_*``; ``email:send:bob@example.com`` is granted by ``email:send`` or by
    ``email:send:*@example.com``. Plain scopes need an exact match.
    """
    for scope in scopes:
        if scope == needed:
            return True
        if needed.startswith("email:send:") and scope == "email:send":
            return True
        for family in GLOB_FAMILIES:
            if (
                scope.startswith(family)
                and needed.startswith(family)
                and fnmatch.fnmatchcase(needed[len(family) :], scope[len(family) :])
            ):
                return True
    return False


def require(scopes: Iterable[str], needed: str) -> None:
    """Raise :class:`ScopeDenied` unless ``scopes`` grant ``needed``."""
    if not grants(scopes, needed):
        raise ScopeDenied(f"this agent's charter does not grant {needed!r}")


def is_subset(requested: Iterable[str], ceiling: Iterable[str]) -> bool:
    """True when every requested scope is within the ceiling, by glob semantics.

    A requested glob (``secret:use:A*``) is read as the set of names it matches, and must be
    contained in the union of the sets the ceiling's globs of the same family match: never
    compared as a string. ``email:send`` covers every ``email:send:<glob>``.
    """
    ceiling = list(ceiling)
    for scope in requested:
        if scope in PLAIN_SCOPES:
            if scope not in ceiling:
                return False
            continue
        family = next((f for f in GLOB_FAMILIES if scope.startswith(f)), None)
        if family is None:
            return False
        if family == "email:send:" and "email:send" in ceiling:
            continue
        outer = [c[len(family) :] for c in ceiling if c.startswith(family)]
        if not glob_within(scope[len(family) :], outer):
            return False
    return True


#: Most (requested, ceiling) state pairs explored before giving up and refusing: deciding
#: glob inclusion can take exponential time (``*a??????``), and refusing is always safe.
MAX_GLOB_STATES = 4096

_Symbol = tuple[frozenset[str], bool] | None  # (ASCII chars, matches non-ASCII) or None for *
#: A character outside ASCII: every non-ASCII character behaves like it in every glob.
_OTHER = "\u00e9"
_UNIVERSE = (*(chr(i) for i in range(128)), _OTHER)


def glob_within(pattern: str, ceiling: Sequence[str]) -> bool:
    """True when every string ``fnmatchcase`` matches with ``pattern`` is matched by a glob
    in ``ceiling`` (language inclusion, decided on automata; False when undecided in
    :data:`MAX_GLOB_STATES` steps: sound, never wider).
    """
    if pattern in ceiling or "*" in ceiling:
        return True
    if not ceiling:
        return False
    inner = _parse_glob(pattern)
    outers = [_parse_glob(c) for c in ceiling]
    alphabet = _alphabet([inner, *outers])
    start = (_closure(inner, {0}), tuple(_closure(o, {0}) for o in outers))
    seen = {start}
    todo = [start]
    while todo:
        mine, theirs = todo.pop()
        if len(inner) in mine and not any(len(o) in s for o, s in zip(outers, theirs, strict=True)):
            return False  # a string the request matches and no ceiling glob does
        for ch in alphabet:
            step_mine = _step(inner, mine, ch)
            if not step_mine:
                continue
            pair = (step_mine, tuple(_step(o, s, ch) for o, s in zip(outers, theirs, strict=True)))
            if pair not in seen:
                if len(seen) >= MAX_GLOB_STATES:
                    return False
                seen.add(pair)
                todo.append(pair)
    return True


def _parse_glob(pattern: str) -> list[_Symbol]:
    """Split a glob into symbols exactly as :func:`fnmatch.translate` does."""
    symbols: list[_Symbol] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if not symbols or symbols[-1] is not None:
                symbols.append(None)
            i += 1
            continue
        token = c
        if c == "[":
            # Where fnmatch ends a bracket expression; unclosed, "[" is a literal.
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j < n:
                token = pattern[i : j + 1]
                i = j
        i += 1
        # fnmatch itself says which characters the one-character token matches.
        matched = frozenset(ch for ch in _UNIVERSE if fnmatch.fnmatchcase(ch, token))
        symbols.append((matched - {_OTHER}, _OTHER in matched))
    return symbols


def _alphabet(globs: list[list[_Symbol]]) -> list[str]:
    """One character per class of characters that every symbol treats alike."""
    symbols = [s for g in globs for s in g if s is not None]
    classes: dict[tuple[bool, ...], str] = {}
    for ch in _UNIVERSE:
        signature = tuple(_matches(s, ch) for s in symbols)
        classes.setdefault(signature, ch)
    return list(classes.values())


def _matches(symbol: tuple[frozenset[str], bool], ch: str) -> bool:
    chars, other = symbol
    return other if ch == _OTHER else ch in chars


def _closure(glob: list[_Symbol], positions: Iterable[int]) -> frozenset[int]:
    out = set(positions)
    for pos in sorted(out):
        while pos < len(glob) and glob[pos] is None:  # a * may match nothing
            pos += 1
            out.add(pos)
    return frozenset(out)


def _step(glob: list[_Symbol], positions: frozenset[int], ch: str) -> frozenset[int]:
    nxt = set()
    for pos in positions:
        if pos == len(glob):
            continue
        symbol = glob[pos]
        if symbol is None:
            nxt.add(pos)
        elif _matches(symbol, ch):
            nxt.add(pos + 1)
    return _closure(glob, nxt)
