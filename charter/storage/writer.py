"""Group commit of ledger appends for a server (DESIGN §4.3).

Callers ``await writer.append(draft)``; the writer gathers every draft that arrives while the
previous batch is being committed and commits them together, in one transaction (one fsync),
on the store's own thread (:meth:`~charter.storage.ports.Store.append`). A caller's await
returns only after its entry is durable, so an acknowledged entry survives a crash; the event
loop never waits for the write lock or the disk.

After-commit hooks (a checkpoint every N entries) run as their own units of work
:attr:`LedgerWriter.HOOK_DELAY` seconds after a commit, for every commit since: callers
already have their results, and a burst of commits wakes them once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from charter.errors import CharterError, LedgerUnavailable
from charter.evidence.entries import Entry
from charter.storage.ports import Draft, Store, Tx

log = logging.getLogger(__name__)

#: Run after commits on the store's thread, outside a transaction (it opens its own): e.g.
#: sign a checkpoint every N entries.
AfterCommit = Callable[[Tx], None]

_Pending = tuple[Draft, "asyncio.Future[Entry]"]


class LedgerWriter:
    """Group commit: one transaction per batch, each caller resumed once its entry is durable."""

    _MAX_BATCH = 256
    #: Seconds after a commit before the after-commit hooks run (for every commit since).
    HOOK_DELAY = 0.05

    def __init__(self, store: Store, after_commit: Sequence[AfterCommit] = ()) -> None:
        self.store = store
        self.after_commit = list(after_commit)
        self._pending: list[_Pending] = []
        self._drain: asyncio.Task[None] | None = None
        self._hooks: asyncio.TimerHandle | None = None
        self._hooks_running: asyncio.Task[None] | None = None
        self._closed = False

    async def append(self, draft: Draft) -> Entry:
        """Append one draft; return once it is committed.

        Raises:
            CharterError: the refusal for this draft, or ``LedgerUnavailable``.
        """
        if self._closed:
            raise LedgerUnavailable("the server is shutting down")
        future: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._pending.append((draft, future))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        """Commit batches until nobody is waiting (callers arriving meanwhile join the next)."""
        await asyncio.sleep(0)  # callers ready in this loop turn join the first batch
        while self._pending:
            batch = self._pending[: self._MAX_BATCH]
            del self._pending[: self._MAX_BATCH]
            results = await self._commit([draft for draft, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller was cancelled; its entry is committed anyway
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            self._schedule_hooks()

    async def _commit(self, drafts: list[Draft]) -> list[Entry | CharterError]:
        try:
            return await self.store.append(drafts)
        except CharterError as exc:
            return [exc] * len(drafts)
        except Exception as exc:  # never leave a caller waiting forever
            log.exception("ledger writer failed")
            error = LedgerUnavailable(f"the ledger cannot be written: {type(exc).__name__}")
            return [error] * len(drafts)

    def _schedule_hooks(self) -> None:
        if not self.after_commit or self._hooks is not None:
            return
        loop = asyncio.get_running_loop()
        self._hooks = loop.call_later(self.HOOK_DELAY, self._start_hooks)

    def _start_hooks(self) -> None:
        self._hooks = None
        if self._hooks_running is None or self._hooks_running.done():
            self._hooks_running = asyncio.ensure_future(self._run_hooks())
        else:  # still running the last round: go again after it
            self._schedule_hooks()

    async def _run_hooks(self) -> None:
        for hook in self.after_commit:
            try:
                await self.store.autocommit(hook)
            except Exception:
                log.exception("after-commit hook failed")

    async def close(self) -> None:
        """Commit what is pending, run the due hooks, then refuse new appends."""
        self._closed = True
        if self._drain is not None:
            await self._drain
        if self._hooks is not None:
            self._hooks.cancel()
            self._hooks = None
            if self._hooks_running is not None:
                await self._hooks_running
            await self._run_hooks()
        elif self._hooks_running is not None:
            await self._hooks_running
