"""Checks shared by the owner's actions: the length of a recorded reason, and no change to
agents while a lockdown is in force. Below identity, lockdown, approvals and tokens, which
all use them (so none of them needs another for these)."""

from __future__ import annotations

from charter.errors import InvalidInput
from charter.storage.ports import Tx

#: Longest ``reason`` the owner may record with a revocation, a lockdown or a denial.
MAX_REASON_CHARS = 500


def check_reason(reason: str) -> None:
    """Raise :class:`InvalidInput` when ``reason`` is longer than :data:`MAX_REASON_CHARS`."""
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"reason is too long ({MAX_REASON_CHARS} characters at most)")


def refuse_during_lockdown(tx: Tx) -> None:
    """Raise :class:`InvalidInput` while a lockdown is in effect."""
    latest = tx.lockdown.latest()
    if latest is not None and latest.active:
        raise InvalidInput(
            f"Charter is locked down (since {latest.started_at}); lift it first with "
            "`charter lockdown --lift`, then reinstate agents one by one"
        )
