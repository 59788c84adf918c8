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
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from charter.clock import rfc3339
from charter.errors import CharterError
from charter.storage.db import transaction
from charter.storage.vault import DEFAULT_USES_PER_MINUTE, SecretInfo

WINDOW = dt.timedelta(minutes=1)


class VaultDenied(CharterError):
    """Policy refuses the use of a secret (rate limit, a block after a guess)."""

    exit_code = 4
    outcome = "denied"


def check_blocked(conn: sqlite3.Connection, agent: str, names: Iterable[str]) -> None:
    """Refuse if ``agent`` is blocked from any of ``names``.

    Raises:
        VaultDenied: naming the secret and how the owner lifts the block.
    """
    for name in names:
        row = conn.execute(
            "SELECT blocked_at FROM vault_blocks WHERE agent = ? AND secret = ?", (agent, name)
        ).fetchone()
        if row is not None:
            raise VaultDenied(
                f"this agent is blocked from using secret {name!r} since {row[0]}: it wrote "
                "the secret's value itself; the owner can lift the block with "
                f"`charter secret unblock {name} --agent {agent}`"
            )


def block(conn: sqlite3.Connection, agent: str, name: str, now: dt.datetime) -> None:
    """Block ``agent`` from using ``name`` (committed at once: it must outlive the call)."""
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO vault_blocks(agent, secret, blocked_at) VALUES (?,?,?)",
            (agent, name, rfc3339(now)),
        )


def unblock(conn: sqlite3.Connection, agent: str, name: str) -> bool:
    """Lift a block; True if there was one. The caller holds the transaction."""
    cur = conn.execute("DELETE FROM vault_blocks WHERE agent = ? AND secret = ?", (agent, name))
    return cur.rowcount > 0


@dataclass(frozen=True)
class RateLimit:
    """The uses one call makes: ``check`` before it, ``record`` as an intent effect."""

    agent: str
    secrets: tuple[SecretInfo, ...]
    now: dt.datetime

    def check(self, conn: sqlite3.Connection) -> None:
        """Refuse when a secret's rate for this agent is used up.

        Raises:
            VaultDenied: the agent already used it ``rate`` times in the last minute.
        """
        since = rfc3339(self.now - WINDOW)
        for info in self.secrets:
            rate = info.rate_per_minute or DEFAULT_USES_PER_MINUTE
            (count,) = conn.execute(
                "SELECT count(*) FROM vault_uses WHERE agent = ? AND secret = ? AND used_at > ?",
                (self.agent, info.name, since),
            ).fetchone()
            if count >= rate:
                raise VaultDenied(
                    f"rate limit: this agent may use secret {info.name!r} {rate} times per "
                    f"minute and has used it {count} times in the last minute; try again later"
                )

    def record(self, conn: sqlite3.Connection) -> None:
        """Check again (under the write lock), forget uses past the window, record these."""
        self.check(conn)
        since, now = rfc3339(self.now - WINDOW), rfc3339(self.now)
        for info in self.secrets:
            conn.execute(
                "DELETE FROM vault_uses WHERE agent = ? AND secret = ? AND used_at <= ?",
                (self.agent, info.name, since),
            )
            conn.execute(
                "INSERT INTO vault_uses(agent, secret, used_at) VALUES (?,?,?)",
                (self.agent, info.name, now),
            )
