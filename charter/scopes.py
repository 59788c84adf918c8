"""Scope strings (DESIGN §3): parsing, validation and checks.

A charter's scopes are the ceiling; tokens and calls may only narrow them. Known forms::

    token:issue   email:send   email:send:<recipient-glob>   email:read
    secret:read:<name-glob>    secret:use:<name-glob>        audit:read

Unknown scopes are refused when a charter is made; an empty list grants nothing; every check
fails closed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from charter.errors import InvalidInput, ScopeDenied

PLAIN_SCOPES = frozenset({"token:issue", "email:send", "email:read", "audit:read"})
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
    """True when every requested scope is granted by the ceiling (globs must stay inside)."""
    ceiling = list(ceiling)
    for scope in requested:
        if grants(ceiling, scope):
            continue
        # A glob request like secret:use:API_* fits only under an identical or wider glob.
        family = next((f for f in GLOB_FAMILIES if scope.startswith(f)), None)
        if family is None:
            return False
        pattern = scope[len(family) :]
        if not any(
            c.startswith(family) and fnmatch.fnmatchcase(pattern, c[len(family) :]) for c in ceiling
        ):
            return False
    return True
