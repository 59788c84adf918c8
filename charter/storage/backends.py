"""Which backend a home's storage lives on: the one place every command opens it through.

A home's database is its SQLite file (``charter.db`` in the home folder) unless
:attr:`~charter.config.Settings.database_url` names a PostgreSQL database
(``CHARTER_DATABASE_URL`` or ``charter init --database URL``); then the home folder holds its
config and keys only. The PostgreSQL backend (``pip install 'charter[postgres]'``) is imported
only when such a URL is used.
"""

from __future__ import annotations

from charter.config import Settings
from charter.errors import ConfigError
from charter.storage.ports import Store
from charter.storage.sqlite import SqliteStore


async def open_store(settings: Settings, *, create: bool = False, inline: bool = False) -> Store:
    """Open (``create``: make) the home's store on its backend (``inline``: an existing SQLite
    database through :class:`~charter.storage.inline.InlineSqliteStore`).

    Raises:
        ConfigError: the database cannot be opened, or the PostgreSQL driver is missing.
    """
    url = settings.database_url
    if url is None:
        if inline and not create:
            from charter.storage.inline import InlineSqliteStore

            return InlineSqliteStore.open(settings.layout.db)
        return await SqliteStore.open(settings.layout.db, create=create)
    try:
        from charter.storage.pg import PgStore
    except ImportError as exc:
        raise ConfigError(
            "a PostgreSQL database needs the postgres extra: pip install 'charter[postgres]'"
        ) from exc
    return await PgStore.open(url, create=create)


async def database_contains(store: Store, needle: bytes) -> bool:
    """Whether ``needle`` appears anywhere in the stored bytes (the demo's leak check):
    the SQLite file itself, or every text and bytea column of the PostgreSQL tables."""
    import asyncio

    if isinstance(store, SqliteStore):
        return needle in await asyncio.to_thread(store.path.read_bytes)
    from charter.storage.pg import PgStore

    assert isinstance(store, PgStore)
    return await store.contains_bytes(needle)
