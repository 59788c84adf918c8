"""What the server needs to serve calls, built once per process."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from charter.home import Home
from charter.storage import ledger_hooks
from charter.storage.db import connect
from charter.storage.ledger import AfterCommit, Ledger, LedgerWriter
from charter.tools.identity import AgentContext

#: Returns the agent a call acts for (stdio: fixed; HTTP: from the bearer token).
AgentResolver = Callable[[], Awaitable[AgentContext]]


@dataclass
class Deps:
    """Shared services of one server process."""

    home: Home
    resolve_agent: AgentResolver
    session_id: str = field(default_factory=lambda: secrets.token_hex(8))
    #: Called when the server shuts down (e.g. sign a final checkpoint).
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)
    #: Given to the ledger writer: run on its thread after each commit (e.g. checkpoints).
    after_commit: list[AfterCommit] = field(default_factory=list)
    _writer: LedgerWriter | None = None

    @property
    def writer(self) -> LedgerWriter:
        """The group-commit ledger writer (started on first use, or by :meth:`start`)."""
        return self._writer or self.start()

    def start(self) -> LedgerWriter:
        """Start the writer, on its own connection, if it is not running; return it.

        The servers call this when they start, so that the writer's thread preallocates the
        write-ahead log while the client is still initializing, not in the first call.
        """
        if self._writer is None:
            home = self.home
            ledger = Ledger(
                connect(home.layout.db),
                home.identity,
                home.clock,
                log_key=home.log_key,
                hooks=ledger_hooks(),
            )
            # Inline batches on the event loop: see LedgerWriter (measured in bench_append).
            self._writer = LedgerWriter(ledger, self.after_commit)
        return self._writer

    def shutdown(self) -> None:
        """Stop the writer (pending appends commit first), then run the shutdown hooks.

        The order matters: the final checkpoint must cover every acknowledged entry.
        """
        if self._writer is not None:
            self._writer.close()
            self._writer.ledger.conn.close()
            self._writer = None
        for hook in self.on_shutdown:
            hook()
