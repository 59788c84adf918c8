"""The ``meta`` repository, opening a database, and what doctor asks of storage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from charter.errors import ConfigError
from charter.storage.db import transaction
from charter.storage.health import HealthRepo
from charter.storage.meta import MetaRepo, close_quietly, create_database, open_database
from charter.storage.vault import VaultRepo


def test_meta_settings_round_trip(tmp_path: Path) -> None:
    conn = create_database(tmp_path / "charter.db")
    repo = MetaRepo(conn)
    with transaction(conn):
        repo.insert_identity({"origin": "o", "owner_id": "me@example.com"})
    assert repo.get("origin") == "o"
    assert repo.get("missing") is None
    assert repo.update("missing", "x") is False and repo.get("missing") is None
    repo.set("issuer", "https://a.example")
    repo.set("issuer", "https://b.example")
    assert repo.update("origin", "o2") is True
    assert repo.all() == {
        "origin": "o2",
        "owner_id": "me@example.com",
        "issuer": "https://b.example",
    }
    close_quietly(conn)
    close_quietly(conn)  # a second close is harmless

    conn, meta = open_database(tmp_path / "charter.db")
    assert meta["issuer"] == "https://b.example"
    conn.close()


def test_a_corrupt_database_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "charter.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(ConfigError, match=r"database charter\.db (is corrupt|cannot be opened)"):
        open_database(path)


def test_health_and_vault_answers_for_doctor(tmp_path: Path) -> None:
    conn = create_database(tmp_path / "charter.db")
    health, vault = HealthRepo(conn), VaultRepo(conn)
    assert health.integrity_check() == "ok"
    assert health.active_agent_kids() == []
    assert health.mail_summary() is None
    now = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert vault.insert_block("bot", "API_KEY", now=now) is True
    assert vault.insert_block("bot", "API_KEY", now=now + dt.timedelta(hours=1)) is False
    [block] = vault.list_blocks()
    assert (block.agent, block.secret) == ("bot", "API_KEY")
    assert vault.find_block("bot", "API_KEY") == block.blocked_at
    assert vault.delete_block("bot", "API_KEY") is True
    assert vault.delete_block("bot", "API_KEY") is False
    assert vault.list_allowed_hosts() == []
    conn.close()
