"""Vault rows: encrypted at rest, bound to their place, failing closed on any key or row fault."""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path

import nacl.pwhash
import pytest

from charter.errors import ConfigError, InvalidInput, NotFound
from charter.evidence.jwk import b64url
from charter.home import Home
from charter.storage import vault as vault_mod
from charter.storage.vault import SecretValue
from charter.testing import BlockingVault, raw_db


@pytest.fixture
def vault(home: Home) -> BlockingVault:
    return BlockingVault(home)


@pytest.fixture
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)
    monkeypatch.setattr(vault_mod, "KDF_LIMITS", limits)


def row(home: Home, name: str, version: int) -> tuple[bytes, bytes]:
    nonce, ciphertext = (
        raw_db(home)
        .execute(
            "SELECT nonce, ciphertext FROM vault_versions WHERE name=? AND version=?",
            (name, version),
        )
        .fetchone()
    )
    return bytes(nonce), bytes(ciphertext)


def set_row(home: Home, name: str, version: int, nonce: bytes, ciphertext: bytes) -> None:
    raw_db(home).execute(
        "UPDATE vault_versions SET nonce=?, ciphertext=? WHERE name=? AND version=?",
        (nonce, ciphertext, name, version),
    )


def test_put_get_keeps_versions_and_encrypts(home: Home, vault: BlockingVault) -> None:
    assert vault.put("API", b"first-value", allowed_hosts=["API.Example.com"]) == 1
    assert vault.put("API", b"second-value", allowed_hosts=["api.example.com"]) == 2
    assert vault.get("API").reveal() == b"second-value"
    assert vault.get("API", version=1).reveal() == b"first-value"
    info = vault.info("API")
    assert (info.version, info.versions, info.allowed_hosts) == (
        2,
        (1, 2),
        ("https://api.example.com:443",),
    )
    for _, ciphertext in (row(home, "API", 1), row(home, "API", 2)):
        assert b"value" not in ciphertext
    key_file = home.layout.keys / "vault.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_secret_value_never_shows_itself() -> None:
    value = SecretValue("API", 3, b"hunter2")
    assert "hunter2" not in repr(value) and "hunter2" not in str(value)
    assert "hunter2" not in f"{value} {value!r} {[value]}"
    with pytest.raises(TypeError):
        pickle.dumps(value)


def test_swapping_ciphertexts_between_rows_fails_to_decrypt(
    home: Home, vault: BlockingVault
) -> None:
    vault.put("A", b"value-of-a")
    vault.put("B", b"value-of-b")
    a, b = row(home, "A", 1), row(home, "B", 1)
    set_row(home, "A", 1, *b)
    set_row(home, "B", 1, *a)
    for name in ("A", "B"):
        with pytest.raises(ConfigError, match="failed authentication"):
            vault.get(name)


def test_replaying_an_old_version_as_the_current_one_fails(
    home: Home, vault: BlockingVault
) -> None:
    vault.put("A", b"old-value")
    vault.put("A", b"new-value")
    set_row(home, "A", 2, *row(home, "A", 1))
    with pytest.raises(ConfigError, match="failed authentication"):
        vault.get("A")


def test_a_flipped_bit_fails_closed(home: Home, vault: BlockingVault) -> None:
    vault.put("A", b"value-of-a")
    nonce, ciphertext = row(home, "A", 1)
    set_row(home, "A", 1, nonce, bytes([ciphertext[0] ^ 1]) + ciphertext[1:])
    with pytest.raises(ConfigError, match="altered or moved"):
        vault.get("A")


async def test_a_row_from_another_vault_does_not_open(
    home: Home, vault: BlockingVault, tmp_path: Path
) -> None:
    from charter.testing import make_home

    vault.put("A", b"mine")
    async with await make_home(tmp_path / "other") as other:
        theirs = BlockingVault(other)
        theirs.put("A", b"theirs")
        # Same master key, too: only the vault id in the associated data differs.
        (other.layout.keys / "vault.key").write_bytes((home.layout.keys / "vault.key").read_bytes())
        raw_db(other).execute(
            "UPDATE vault_state SET key_check = ?",
            raw_db(home).execute("SELECT key_check FROM vault_state").fetchone(),
        )
        set_row(home, "A", 1, *row(other, "A", 1))
    with pytest.raises(ConfigError):
        vault.get("A")


def test_a_wrong_master_key_fails_closed(home: Home, vault: BlockingVault) -> None:
    vault.put("A", b"value-of-a")
    key_file = home.layout.keys / "vault.key"
    doc = json.loads(key_file.read_text())
    doc["key"] = b64url(bytes(32))
    key_file.write_text(json.dumps(doc))
    for fresh in (BlockingVault(home),):
        with pytest.raises(ConfigError, match="wrong vault master key"):
            fresh.get("A")
        with pytest.raises(ConfigError, match="wrong vault master key"):
            fresh.put("B", b"never stored")
    assert raw_db(home).execute("SELECT count(*) FROM vault_versions").fetchone()[0] == 1


def test_a_missing_master_key_is_never_silently_recreated(home: Home, vault: BlockingVault) -> None:
    vault.put("A", b"value-of-a")
    (home.layout.keys / "vault.key").unlink()
    with pytest.raises(ConfigError, match="missing"):
        BlockingVault(home).get("A")
    with pytest.raises(ConfigError, match="missing"):
        BlockingVault(home).put("B", b"x")
    assert not (home.layout.keys / "vault.key").exists()


def test_rotation_re_encrypts_everything_and_retires_the_old_key(
    home: Home, vault: BlockingVault
) -> None:
    vault.put("A", b"a1")
    vault.put("A", b"a2")
    vault.put("charter:mail-password", b"pw", system=True)
    old_key = (home.layout.keys / "vault.key").read_bytes()
    before = {
        (n, v): row(home, n, v) for n, v in [("A", 1), ("A", 2), ("charter:mail-password", 1)]
    }
    assert vault.rotate_master_key() == (2, 3)
    fresh = BlockingVault(home)
    assert [fresh.get("A", version=v).reveal() for v in (1, 2)] == [b"a1", b"a2"]
    assert fresh.get("charter:mail-password").reveal() == b"pw"
    for place, old in before.items():
        assert row(home, *place) != old
    assert not (home.layout.keys / "vault.key.new").exists()
    (home.layout.keys / "vault.key").write_bytes(old_key)
    with pytest.raises(ConfigError):
        BlockingVault(home).get("A")


def test_rotation_refuses_a_tampered_row_and_changes_nothing(
    home: Home, vault: BlockingVault
) -> None:
    vault.put("A", b"a")
    vault.put("B", b"b")
    set_row(home, "B", 1, *row(home, "A", 1))
    key_before = (home.layout.keys / "vault.key").read_bytes()
    with pytest.raises(ConfigError, match="not rotated"):
        vault.rotate_master_key()
    assert (home.layout.keys / "vault.key").read_bytes() == key_before
    assert not (home.layout.keys / "vault.key.new").exists()
    assert BlockingVault(home).get("A").reveal() == b"a"


def test_a_rotation_interrupted_before_the_key_rename_is_completed(
    home: Home, vault: BlockingVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.put("A", b"a")
    keys = home.layout.keys
    # Simulate a crash after the commit: the new key is still only in vault.key.new.
    calls: list[str] = []

    def crash(src: object, dst: object) -> None:
        calls.append(str(src))
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("os.replace", crash)
        with pytest.raises(KeyboardInterrupt):
            vault.rotate_master_key()
    assert calls and (keys / "vault.key.new").exists()
    assert BlockingVault(home).get("A").reveal() == b"a"
    assert not (keys / "vault.key.new").exists()
    assert json.loads((keys / "vault.key").read_text())["key_version"] == 2


def test_passphrase_derived_key(home: Home, cheap_kdf: None) -> None:
    BlockingVault(home, passphrase=b"correct horse").put("A", b"value-of-a")
    doc = json.loads((home.layout.keys / "vault.key").read_text())
    assert "key" not in doc and doc["kdf"]["alg"] == "argon2id"
    assert BlockingVault(home, passphrase=b"correct horse").get("A").reveal() == b"value-of-a"
    with pytest.raises(ConfigError, match="wrong vault master key"):
        BlockingVault(home, passphrase=b"wrong horse").get("A")
    with pytest.raises(ConfigError, match="passphrase"):
        BlockingVault(home).get("A")
    # Rotate to a random key file and back to another passphrase.
    BlockingVault(home, passphrase=b"correct horse").rotate_master_key()
    assert BlockingVault(home).get("A").reveal() == b"value-of-a"
    BlockingVault(home).rotate_master_key(new_passphrase=b"new pass")
    assert BlockingVault(home, passphrase=b"new pass").get("A").reveal() == b"value-of-a"


def test_system_secrets_are_hidden_from_list_and_names_are_reserved(vault: BlockingVault) -> None:
    vault.put("charter:mail-password", b"pw", system=True)
    vault.put("API", b"k")
    assert [i.name for i in vault.list()] == ["API"]
    assert [i.name for i in vault.list(include_system=True)] == ["API", "charter:mail-password"]
    with pytest.raises(InvalidInput, match="reserved"):
        vault.put("charter:other", b"x")
    with pytest.raises(InvalidInput, match="start with"):
        vault.put("mail", b"x", system=True)


@pytest.mark.parametrize(
    ("name", "value", "hosts"),
    [
        ("bad name", b"v", ()),
        ("", b"v", ()),
        ("-dash", b"v", ()),
        ("A*", b"v", ()),
        ("A", b"", ()),
        ("A", b"x" * (vault_mod.MAX_VALUE_BYTES + 1), ()),
        ("A", b"v", ("*.example.com",)),
        ("A", b"v", ("ftp://example.com",)),
        ("A", b"v", ("http://example.com",)),  # plain http only on loopback
        ("A", b"v", ("https://u@example.com",)),
        ("A", b"v", ("https://example.com:99999",)),
        ("A", b"v", ("example.com/path",)),
        ("A", b"v", ("https://example.com/path",)),
    ],
)
def test_bad_input_is_refused_clearly(
    vault: BlockingVault, name: str, value: bytes, hosts: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidInput):
        vault.put(name, value, allowed_hosts=hosts)


def test_delete_removes_values_and_versions_never_restart(home: Home, vault: BlockingVault) -> None:
    vault.put("A", b"a1")
    vault.put("A", b"a2")
    assert vault.delete("A").versions == (1, 2)
    assert raw_db(home).execute("SELECT count(*) FROM vault_versions").fetchone()[0] == 0
    with pytest.raises(NotFound):
        vault.get("A")
    assert vault.list() == []
    assert vault.put("A", b"a3") == 3
    with pytest.raises(NotFound):
        vault.delete("nope")


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("api.example.com", "https://api.example.com:443"),
        ("API.example.com:8443", "https://api.example.com:8443"),
        ("https://api.example.com", "https://api.example.com:443"),
        ("https://api.example.com:8443/", "https://api.example.com:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://[::1]:9", "https://[::1]:9"),
        ("127.0.0.1", "127.0.0.1"),  # a bare loopback host: any port of this machine
        ("localhost", "localhost"),
    ],
)
def test_allowed_hosts_are_stored_with_scheme_and_port(
    vault: BlockingVault, written: str, stored: str
) -> None:
    vault.put("API", b"value", allowed_hosts=[written])
    assert vault.info("API").allowed_hosts == (stored,)


def test_an_allowed_host_matches_only_its_scheme_and_port() -> None:
    from charter.storage.vault_hosts import allows

    assert allows("https://api.test:443", "https", "api.test", 443)
    assert not allows("https://api.test:443", "https", "api.test", 8443)
    assert not allows("https://api.test:8443", "http", "api.test", 8443)
    assert not allows("https://api.test:443", "https", "evil.test", 443)
    # An entry stored before ports counted (bare, not loopback) means https on 443 only.
    assert allows("api.test", "https", "api.test", 443)
    assert not allows("api.test", "https", "api.test", 8443)
    assert not allows("api.test", "http", "api.test", 80)
    # A bare loopback host is this machine on any port (as before).
    assert allows("127.0.0.1", "http", "127.0.0.1", 8080)
    assert not allows("127.0.0.1", "http", "127.0.0.2", 8080)
