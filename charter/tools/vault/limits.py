"""Limits on an agent's use of secrets: a rate per minute, and blocks after a guess.

- **Rate**: each agent may use each secret ``rate_per_minute`` times per minute through
  ``secret_http_request`` (the secret's own setting, or :data:`DEFAULT_USES_PER_MINUTE`).
  The count is checked before the call and again inside the intent's transaction, where the
  use is recorded (``vault_uses``), so concurrent servers cannot overshoot it.
- **Blocks**: an agent that writes the value of a secret it may only use (a guess: it was
  never shown the value) is blocked from that secret until the owner lifts the block
  (``charter secret unblock``). The refusal itself tells the agent its guess was right, so it
  must be the last thing it learns about that secret.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from charter.errors import CharterError
from charter.storage.ports import Tx
from charter.storage.vault import DEFAULT_USES_PER_MINUTE, SecretInfo

WINDOW = dt.timedelta(minutes=1)


class VaultDenied(CharterError):
    """Policy refuses the use of a secret (rate limit, a block after a guess)."""

    exit_code = 4
    outcome = "denied"


def check_blocked(tx: Tx, agent: str, names: Iterable[str]) -> None:
    """Refuse if ``agent`` is blocked from any of ``names``.

    Raises:
        VaultDenied: naming the secret and how the owner lifts the block.
    """
    repo = tx.vault
    for name in names:
        since = repo.find_block(agent, name)
        if since is not None:
            raise VaultDenied(
                f"this agent is blocked from using secret {name!r} since {since}: it wrote "
                "the secret's value itself; the owner can lift the block with "
                f"`charter secret unblock {name} --agent {agent}`"
            )


def block(tx: Tx, agent: str, name: str, now: dt.datetime) -> None:
    """Block ``agent`` from using ``name`` (run it in a unit of work of its own: it must
    outlive the call)."""
    tx.vault.insert_block(agent, name, now=now)


def unblock(tx: Tx, agent: str, name: str) -> bool:
    """Lift a block; True if there was one."""
    return tx.vault.delete_block(agent, name)


@dataclass(frozen=True)
class RateLimit:
    """The uses one call makes: ``check`` before it, ``record`` as an intent effect."""

    agent: str
    secrets: tuple[SecretInfo, ...]
    now: dt.datetime

    def check(self, tx: Tx) -> None:
        """Refuse when a secret's rate for this agent is used up.

        Raises:
            VaultDenied: the agent already used it ``rate`` times in the last minute.
        """
        repo = tx.vault
        for info in self.secrets:
            rate = info.rate_per_minute or DEFAULT_USES_PER_MINUTE
            count = repo.count_uses_since(self.agent, info.name, self.now - WINDOW)
            if count >= rate:
                raise VaultDenied(
                    f"rate limit: this agent may use secret {info.name!r} {rate} times per "
                    f"minute and has used it {count} times in the last minute; try again later"
                )

    def record(self, tx: Tx) -> None:
        """Check again (under the write lock), forget uses past the window, record these."""
        self.check(tx)
        repo = tx.vault
        for info in self.secrets:
            repo.forget_uses_until(self.agent, info.name, self.now - WINDOW)
            repo.insert_use(self.agent, info.name, now=self.now)
