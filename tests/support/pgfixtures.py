"""pytest fixtures over a private PostgreSQL cluster (``pg.py``).

- ``pg_cluster`` (session): one :class:`pg.PgCluster` for the whole run, started on first use
  (about half a second), stopped fast at the end. Tests must not stop it; a test that
  restarts or crashes a server takes ``pg_own_cluster`` instead.
- ``pg_database`` (function): the DSN of a new, empty database on that cluster (``CREATE
  DATABASE ... TEMPLATE template0``: a file copy, about 50 ms), dropped after the test.
- ``pg_own_cluster`` (function): a cluster of the test's own, for fault tests
  (``restart()``, ``crash()`` then ``start()``); removed after the test.

When PostgreSQL is not installed the fixtures fail the test if the ``CI`` environment variable
is set (CI installs it with ``.ci/install-postgres``) and skip it otherwise.

**Registering them.** ``tests/support`` is on ``sys.path`` (``tests/conftest.py`` puts it
there), so ``tests/conftest.py`` registers every fixture here, for every test, with one line
after that ``sys.path`` insert::

    pytest_plugins = ["pgfixtures"]

(or ``from pgfixtures import pg_cluster, pg_database, pg_own_cluster  # noqa: F401``). Until
then a test module imports the fixtures it uses the same way. Several modules importing
``pg_cluster`` still share one server: the session fixtures hand out one cluster and the last
one to finish stops it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from pg import PgCluster, require_pg_bin

_shared: PgCluster | None = None
_users = 0


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster (fails in CI, skips elsewhere, when not installed)."""
    global _shared, _users
    bin_dir = require_pg_bin()
    if _shared is None or not _shared.running:
        _shared = PgCluster(bin_dir=bin_dir)
        _shared.start()
    cluster = _shared
    _users += 1
    try:
        yield cluster
    finally:
        _users -= 1
        if _users == 0:
            cluster.close()
            _shared = None


@pytest.fixture
def pg_database(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The DSN of a fresh, empty database, dropped after the test."""
    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:30]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    dsn = pg_cluster.create_database(name)
    try:
        yield dsn
    finally:
        if pg_cluster.running:
            pg_cluster.drop_database(name)


@pytest.fixture
def pg_own_cluster() -> Iterator[PgCluster]:
    """A private cluster for one test, free to be restarted or crashed."""
    with PgCluster(bin_dir=require_pg_bin()) as cluster:
        yield cluster
