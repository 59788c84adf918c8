"""Write-ahead log checkpoints beside the append path, for a server's ledger writer.

SQLite copies the log back into the database file (a checkpoint: the pages written, the
database file synced) inside whichever commit first finds the log past ``wal_autocheckpoint``
pages, 1000 by default: every hundred or so tool calls, one caller's commit copied the whole
log and took several milliseconds more, which was the tail (p99) of a tool call's round trip.

:class:`Checkpointer` does most of that copying beside the writer: the writer counts its
commits, and a thread of its own, on a connection of its own, runs a ``PASSIVE`` checkpoint
every few dozen commits (or once the writer has gone quiet with some pending). A ``PASSIVE``
checkpoint never blocks the writer or a reader; SQLite serializes it with any other process's.
The writer keeps SQLite's automatic checkpoint: when the log reaches its size, the commit that
finds it there copies only the few frames written since the thread's last round, completes the
checkpoint, and the log is reused from its start (a log can only restart once everything in it
has been copied, which a checkpoint racing a busy writer rarely achieves alone). Durability is
unchanged: a checkpoint only copies frames that are already synced in the log, and syncs the
database file before the log is reused.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from charter.storage.db import connect
from charter.storage.meta import close_quietly

log = logging.getLogger(__name__)


class Checkpointer:
    """Checkpoints the log of ``path`` on a thread of its own (see the module docstring).

    Args:
        path: The database file.
        after_commits: Checkpoint once this many commits have gathered (~10 pages each for a
            tool call: the automatic checkpoint at 1000 pages then finds at most a few
            hundred frames left to copy).
        idle_seconds: Or once this long has passed with at least one commit pending.
    """

    def __init__(self, path: Path, *, after_commits: int = 20, idle_seconds: float = 0.5) -> None:
        self.path = path
        self.after_commits = after_commits
        self.idle_seconds = idle_seconds
        self._pending = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="charter-wal", daemon=True)
        self.checkpoints = 0
        self._thread.start()

    @property
    def alive(self) -> bool:
        """False once the thread has stopped (closed, or the database refused it)."""
        return self._thread.is_alive()

    def committed(self) -> None:
        """Count one commit of the writer (called on the writer's thread, after its commit)."""
        self._pending += 1
        if self._pending >= self.after_commits:
            self._wake.set()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way finishes first)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(self.path)
            while not self._stopping.is_set():
                self._wake.wait(self.idle_seconds)
                self._wake.clear()
                if self._stopping.is_set() or self._pending == 0:
                    continue
                # NOTE: a plain counter shared without a lock: a commit counted while this
                # resets it is only checkpointed a round later.
                self._pending = 0
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
        except sqlite3.Error as exc:  # SQLite's own checkpoints still bound the log
            log.warning("write-ahead log checkpoints left to SQLite: %s", exc)
        finally:
            if conn is not None:
                close_quietly(conn)
