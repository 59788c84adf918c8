"""The OS accounts an agent may be served to through the daemon (``charter agent add NAME
--os-user USER``): kept in the charter's owner-signed policy, so an auditor sees them."""

from __future__ import annotations

import pwd
from collections.abc import Iterable, Mapping
from typing import Any

from charter.errors import InvalidInput

#: The charter policy key (a list of account names).
POLICY_KEY = "os_users"


def check_os_users(users: Iterable[str]) -> list[str]:
    """The accounts, checked to exist on this machine, without repeats.

    Raises:
        InvalidInput: naming an unknown account.
    """
    out: list[str] = []
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise InvalidInput(f"no OS account named {user!r} on this machine") from None
        if user not in out:
            out.append(user)
    return out


def with_os_users(policy: Mapping[str, Any], users: list[str]) -> dict[str, Any]:
    """``policy`` with its bound accounts replaced by ``users`` (none: the key is dropped)."""
    out = {k: v for k, v in policy.items() if k != POLICY_KEY}
    if users:
        out[POLICY_KEY] = users
    return out


def bound_users(policy: Mapping[str, Any]) -> tuple[str, ...]:
    """The accounts a charter's policy binds its agent to."""
    users = policy.get(POLICY_KEY) or []
    return tuple(u for u in users if isinstance(u, str)) if isinstance(users, list) else ()
