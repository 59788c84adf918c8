"""Throwaway PostgreSQL databases for tests: one per home, cloned from a migrated template.

The test suite runs over PostgreSQL when ``CHARTER_TEST_DATABASE=postgresql``
(``tests/conftest.py``): every home :func:`charter.testing.make_home` creates then lives on a
database of its own on the session's cluster. :class:`ScratchDatabases` makes them: the first
call creates ``charter_template`` and applies ``migrations_pg/`` to it; each home's database is
then ``CREATE DATABASE … TEMPLATE charter_template`` (a copy of a few megabytes, about 60 ms,
instead of about 190 ms for an empty database plus the migrations), and :meth:`drop_all`
drops them after the test (``WITH (FORCE)``: a connection a test left open does not keep one).
"""

from __future__ import annotations

import threading
import uuid
from urllib.parse import urlsplit

import psycopg

from charter.storage.pg import connect_pg, migrate_pg

TEMPLATE = "charter_template"


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{name}").geturl()


class ScratchDatabases:
    """Databases on the cluster ``admin_url`` reaches (a superuser's URL to any database)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._created: list[str] = []
        self._lock = threading.Lock()
        self._template_ready = False

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def _ensure_template(self, admin: psycopg.Connection[tuple[object, ...]]) -> None:
        if self._template_ready:
            return
        admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {TEMPLATE} TEMPLATE template0 ENCODING 'UTF8'")
        conn = connect_pg(_with_dbname(self.admin_url, TEMPLATE))
        try:
            migrate_pg(conn)
        finally:
            conn.close()
        self._template_ready = True

    def create(self) -> str:
        """A new database holding Charter's schema and no ledger; its URL."""
        name = f"h_{uuid.uuid4().hex[:20]}"
        with self._lock, self._admin() as admin:
            self._ensure_template(admin)
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
            self._created.append(name)
        return _with_dbname(self.admin_url, name)

    def drop_all(self) -> None:
        """Drop every database :meth:`create` made so far."""
        with self._lock:
            names, self._created = self._created, []
            if not names:
                return
            with self._admin() as admin:
                for name in names:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
