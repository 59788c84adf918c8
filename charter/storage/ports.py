"""The storage ports: what every service and the gate may ask of storage, whatever the backend.

A **unit of work** is a plain function of a :class:`Tx` (every repository, and the ledger,
inside one transaction). The service hands it to the :class:`Store`, which runs it whole on
the backend's own thread, in one transaction, and returns its result to the event loop:

    def revoke(tx: Tx) -> None:
        tx.agents.mark_revoked(name, at=now, reason=reason)
        tx.ledger.append_one(owner_event)

    await home.store.write(revoke)

Why functions and not ``await`` per statement (decided by measurement, docs/ARCHITECTURE.md):
a unit of work costs one hop to the database thread and back (about 20-50 µs) instead of one
per statement, a ledger append with its effects stays one transaction on one thread, and the
event loop never blocks on a lock, a page read or an fsync. A backend is a class with the
:class:`Store` methods whose :class:`Tx` has the repositories' methods (the SQLite one is
:mod:`charter.storage.sqlite`); no service changes when another one is plugged in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from charter.evidence.charters import CharterView
from charter.evidence.jwk import Ed25519Signer

if TYPE_CHECKING:
    from charter.clock import Clock
    from charter.errors import AgentRevoked, CharterError
    from charter.evidence.entries import Entry, LedgerIdentity
    from charter.storage.agents import AgentRepo
    from charter.storage.approvals import ApprovalRepo
    from charter.storage.dpop import DpopReplayRepo
    from charter.storage.health import HealthRepo
    from charter.storage.lockdown import LockdownRepo
    from charter.storage.mail import MailRepo
    from charter.storage.meta import MetaRepo
    from charter.storage.owners import OwnerRepo
    from charter.storage.queries import LedgerQueries
    from charter.storage.tlog import CheckpointLog, TreeStore
    from charter.storage.tokens import TokenRepo
    from charter.storage.vault import VaultRepo
    from charter.storage.witnesses import WitnessRepo

T = TypeVar("T")

#: A state change committed atomically with one entry (e.g. a token's row with the outcome
#: that issues it): run inside the append transaction, just before the entry is inserted.
Effect = Callable[["Tx"], object]
#: Makes the entry that follows a committed-together entry (see :attr:`Draft.follow`).
Follow = Callable[["Tx", "Entry"], "Draft | None"]


@dataclass(slots=True)
class Draft:
    """An entry to be appended; the ledger fills in seq, ts, prev, kid and sig."""

    actor: str
    owner: str
    action: str
    phase: str
    signer: Ed25519Signer
    charter: str | None = None
    session: str | None = None
    call: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    args_hash: str | None = None
    outcome: str | None = None
    reason: str | None = None
    result_hash: str | None = None
    #: Agent name that must still be active (with ``charter`` current) when the entry is
    #: committed; checked inside the append transaction so a revocation wins every race.
    require_agent: str | None = None
    #: The signer's charter (with ``require_agent``): the entry's time must fall inside its
    #: validity window, checked in the append transaction like revocation, so an agent key
    #: never signs past its charter (a refusal then goes under the log key).
    charter_view: CharterView | None = None
    #: Committed with this entry or not at all; dropped when the entry is refused.
    effects: tuple[Effect, ...] = ()
    #: The next entry of the same unit, made once this one is sequenced (given the unit of
    #: work and this entry; None ends the chain): appended right after it under the same
    #: savepoint, so every entry of the chain commits or none does. A local effect's intent
    #: carries its outcome this way (:class:`charter.tools.plan.LocalPlan`).
    follow: Follow | None = None


class LedgerTx(Protocol):
    """The ledger inside a unit of work (appends join its transaction)."""

    def append(
        self, drafts: Sequence[Draft], *, lock_wait: float | None = None
    ) -> list[Entry | CharterError]: ...
    def append_one(self, draft: Draft) -> Entry: ...
    def head(self) -> tuple[int, str]: ...
    def get(self, seq: int) -> Entry | None: ...
    def iter_bodies(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        mismatches: list[tuple[int, str]] | None = None,
    ) -> Iterator[bytes]: ...


class Tx(Protocol):
    """One transaction's view of every repository (valid only inside its unit of work)."""

    @property
    def agents(self) -> AgentRepo: ...
    @property
    def approvals(self) -> ApprovalRepo: ...
    @property
    def lockdown(self) -> LockdownRepo: ...
    @property
    def mail(self) -> MailRepo: ...
    @property
    def meta(self) -> MetaRepo: ...
    @property
    def owners(self) -> OwnerRepo: ...
    @property
    def tokens(self) -> TokenRepo: ...
    @property
    def vault(self) -> VaultRepo: ...
    @property
    def witnesses(self) -> WitnessRepo: ...
    @property
    def dpop(self) -> DpopReplayRepo: ...
    @property
    def health(self) -> HealthRepo: ...
    @property
    def queries(self) -> LedgerQueries: ...
    @property
    def tree(self) -> TreeStore: ...
    @property
    def ledger(self) -> LedgerTx: ...
    @property
    def checkpoints(self) -> CheckpointLog: ...

    def agent_refusal(self, name: str, charter: str | None) -> AgentRevoked | None:
        """Why ``name`` may not act under ``charter`` now, or None (the revocation check)."""
        ...

    def sync_tree(self, upto: int | None = None) -> int:
        """Catch the Merkle tree up with the ledger; return its size."""
        ...


class Store(Protocol):
    """A backend: runs units of work and group-commits ledger appends, off the event loop."""

    def bind(self, identity: LedgerIdentity, clock: Clock, log_key: Ed25519Signer | None) -> None:
        """Give the ledger its identity, clock and log key (read from ``meta`` by the home)."""
        ...

    async def read(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` in one read transaction (a consistent snapshot)."""
        ...

    async def write(self, work: Callable[[Tx], T], *, lock_wait: float | None = None) -> T:
        """Run ``work`` in one write transaction: all of it is committed (durably) or none.

        Raises:
            WriteLockBusy: another writer held the lock past ``lock_wait`` seconds.
            LedgerUnavailable: the backend cannot write (disk full, read-only, I/O error).
        """
        ...

    async def append(
        self, drafts: Sequence[Draft], *, lock_wait: float | None = None
    ) -> list[Entry | CharterError]:
        """Append ``drafts`` to the ledger in one transaction (see ``Ledger.append``)."""
        ...

    async def autocommit(self, work: Callable[[Tx], T]) -> T:
        """Run ``work`` outside any transaction: each statement commits on its own, and the
        work opens the transactions it needs (a checkpoint's signing, after commits)."""
        ...

    async def warm(self) -> None:
        """Get ready for a stream of appends (SQLite: grow the write-ahead log up front)."""
        ...

    def worker(self) -> WorkerStore:
        """A blocking handle for a worker thread that has no event loop (its own connection)."""
        ...

    async def close(self) -> None:
        """Finish queued work and close the connection."""
        ...


class WorkerStore(Protocol):
    """Units of work run from a plain thread (the witness submitter); close it when done."""

    def read(self, work: Callable[[Tx], T]) -> T: ...
    def write(self, work: Callable[[Tx], T]) -> T: ...
    def close(self) -> None: ...
