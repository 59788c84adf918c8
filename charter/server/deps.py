"""What the server needs to serve calls, built once per process."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from charter.home import Home
from charter.storage.backends import open_store
from charter.storage.ports import Store
from charter.storage.writer import AfterCommit, LedgerWriter
from charter.tools.identity import AgentContext

#: Returns the agent a call acts for (stdio: fixed; HTTP: from the bearer token).
AgentResolver = Callable[[], Awaitable[AgentContext]]


@dataclass
class Deps:
    """Shared services of one server process."""

    home: Home
    resolve_agent: AgentResolver
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    #: Awaited when the server shuts down, after the writer (e.g. sign a final checkpoint).
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    #: Given to the ledger writer: run after commits (e.g. checkpoints).
    after_commit: list[AfterCommit] = field(default_factory=list)
    #: The owner's console (``charter serve --console-url``): owner approvals are sent there
    #: to clients that support URL-mode elicitation (server/approvals.py). None: not used.
    console_url: str | None = None
    _writer: LedgerWriter | None = None
    _writer_store: Store | None = None

    @property
    def writer(self) -> LedgerWriter:
        """The group-commit ledger writer (started by :meth:`start`)."""
        if self._writer is None:
            # Before start (in-process tests): appends share the home's own store.
            self._writer = LedgerWriter(self.home.store, self.after_commit)
        return self._writer

    async def start(self) -> LedgerWriter:
        """Start the writer on a connection of its own, if it is not running; return it.

        The servers call this when they start, so that the writer's connection grows the
        write-ahead log while the client is still initializing, not in the first call. Its
        own connection (its own thread) keeps reads from waiting behind a batch's fsync.
        """
        if self._writer is None:
            home = self.home
            store = await open_store(home.settings)
            store.bind(home.identity, home.clock, home.log_key)
            await store.warm()
            self._writer_store = store
            self._writer = LedgerWriter(store, self.after_commit)
        return self._writer

    async def shutdown(self) -> None:
        """Stop the writer (pending appends commit first), then run the shutdown hooks.

        The order matters: the final checkpoint must cover every acknowledged entry.
        """
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._writer_store is not None:
            await self._writer_store.close()
            self._writer_store = None
        for hook in self.on_shutdown:
            await hook()
