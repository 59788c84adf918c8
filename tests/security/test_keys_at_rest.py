"""Issue 19: every private key and the vault master key sealed at rest under one passphrase.

Real homes, real key files, real ``charter`` processes; only the Argon2id cost is the minimum
(``make_home``), which the sealed files record, so subprocesses derive it cheaply too.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nacl.bindings as sodium
import pytest
from click.testing import CliRunner, Result
from rawstdio import exchange

from charter.cli import cli
from charter.config import Settings
from charter.errors import ConfigError
from charter.evidence.entries import Entry
from charter.home import Home
from charter.keys import agent_ref, issuer_ref
from charter.keys.reseal import change_passphrase
from charter.storage.vault import VaultRepo
from charter.storage.vault_sealing import ad, open_sealed
from charter.testing import BlockingVault, make_home, raw_db, raw_tx
from charter.tools import audit, identity

OLD, NEW = b"correct horse", b"battery staple"
API = "https://api.example.com"
_B64 = re.compile(r"^[A-Za-z0-9_\-+/]{40,}={0,2}$")


async def _home(root: Path, passphrase: bytes | None) -> Path:
    """A home with an owner, log and issuer key, two agents and one vault secret."""
    async with await make_home(root, passphrase=passphrase) as h:
        for name in ("alpha", "beta"):
            await identity.add_agent(h, name, scopes=["audit:read", "token:issue"], audiences=[API])
        BlockingVault(h).put("API_KEY", b"the-secret-value")
    return root


def _secret_file(tmp_path: Path, name: str, value: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(value + b"\n")
    return path


def _env(root: Path, passphrase_file: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}
    env["CHARTER_HOME"] = str(root)
    if passphrase_file is not None:
        env["CHARTER_PASSPHRASE_FILE"] = str(passphrase_file)
    return env


def _cli(root: Path, *args: str, passphrase_file: Path | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=_env(root, passphrase_file))


def _candidates(root: Path) -> set[bytes]:
    """Every 32-byte window of every file in the home, and of every base64/base64url string
    found in its JSON files, decoded."""
    blobs: list[bytes] = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        blobs.append(data)
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        stack = [doc]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str) and _B64.match(value):
                text = value.replace("-", "+").replace("_", "/").rstrip("=")
                blobs.append(base64.b64decode(text + "=" * (-len(text) % 4)))
    return {blob[i : i + 32] for blob in blobs for i in range(len(blob) - 31)}


async def _found_keys(root: Path) -> set[str]:
    """Which keys of the home a window of its files gives: Ed25519 seeds whose public key is
    a published one, and a vault master key that opens the sealed secret."""
    async with await Home.open(Settings(home=root)) as h:
        published = {
            h.owner_public_key: "owner",
            h.log_key.public_key: "log",
            h.signer.public_key(issuer_ref(h.meta["issuer_kid"])): "issuer",
            h.signer.public_key(agent_ref("alpha")): "agent alpha",
            h.signer.public_key(agent_ref("beta")): "agent beta",
        }
        repo = VaultRepo(raw_db(h))
        state = repo.get_state()
        row = repo.get_version("API_KEY", 1)
        assert state is not None and row is not None
        aad = ad(state.vault_id, "API_KEY", 1, row.key_version)
    found = set()
    for window in _candidates(root):
        public = sodium.crypto_sign_seed_keypair(window)[0]
        if public in published:
            found.add(published[public])
        if open_sealed(window, row.nonce, row.ciphertext, aad) == b"the-secret-value":
            found.add("vault")
    return found


EVERY_KEY = {"owner", "log", "issuer", "agent alpha", "agent beta", "vault"}


async def test_no_private_key_is_in_the_clear_in_a_sealed_home(tmp_path: Path) -> None:
    clear = await _home(tmp_path / "clear", None)
    assert await _found_keys(clear) == EVERY_KEY  # the scan finds keys that are there
    sealed = await _home(tmp_path / "sealed", OLD)
    assert await _found_keys(sealed) == set()


async def test_a_passphrase_change_leaves_no_key_in_the_clear(tmp_path: Path) -> None:
    root = await _home(tmp_path / "home", None)
    change_passphrase(root / "keys", None, NEW, cheap_kdf=True)
    assert await _found_keys(root) == set()


async def test_serve_unlocks_a_sealed_home_from_the_passphrase_file(tmp_path: Path) -> None:
    root = await _home(tmp_path / "home", OLD)
    good = _secret_file(tmp_path, "pass", OLD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "charter", "serve", "--agent", "alpha"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(root, good),
    )
    lines, _ = exchange(
        proc,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "identity_whoami", "arguments": {}}},
        ],
    )  # fmt: skip
    answer = next(json.loads(x) for x in lines if x.startswith("{") and '"id":2' in x)
    assert answer["result"]["isError"] is False
    async with await Home.open(Settings(home=root)) as h:
        await audit.verify_home(h)  # the call was signed with the sealed agent key


@pytest.mark.parametrize("passphrase", [None, NEW], ids=["no passphrase", "wrong passphrase"])
async def test_a_locked_home_fails_cleanly_and_still_verifies(
    tmp_path: Path, passphrase: bytes | None
) -> None:
    root = await _home(tmp_path / "home", OLD)
    pfile = None if passphrase is None else _secret_file(tmp_path, "pass", passphrase)
    async with await Home.open(Settings(home=root)) as h:
        size = raw_tx(h).ledger.head()[0]
    commands = [
        ["serve", "--agent", "alpha"],
        ["agent", "add", "gamma", "--scope", "audit:read"],
        ["token", "issue", "--agent", "alpha", "--audience", API],
    ]
    for args in commands:
        proc = subprocess.run(
            [sys.executable, "-m", "charter", *args],
            input="",
            capture_output=True,
            text=True,
            env=_env(root, pfile),
            timeout=60,
            check=False,
        )
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr, args
        assert len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert ("locked" if passphrase is None else "wrong passphrase") in proc.stderr, args
        assert proc.stdout == "", args
    async with await Home.open(Settings(home=root)) as h:
        assert raw_tx(h).ledger.head()[0] == size  # nothing was signed
    verified = _cli(root, "audit", "verify", passphrase_file=pfile)
    assert verified.exit_code == 0, verified.output
    doctor = _cli(root, "doctor", "--json", passphrase_file=pfile)
    store = {c["name"]: c for c in json.loads(doctor.output)["checks"]}["key store"]
    assert ("locked" if passphrase is None else "wrong passphrase") in store["detail"]


async def test_doctor_says_how_the_keys_are_kept(tmp_path: Path) -> None:
    clear = await _home(tmp_path / "clear", None)
    sealed = await _home(tmp_path / "sealed", OLD)
    good = _secret_file(tmp_path, "pass", OLD)

    def store(root: Path, pfile: Path | None = None) -> dict[str, str]:
        out = json.loads(_cli(root, "doctor", "--json", passphrase_file=pfile).output)
        return dict({c["name"]: c for c in out["checks"]}["key store"])

    assert store(clear)["status"] == "warn" and "in the clear" in store(clear)["detail"]
    assert store(sealed, good)["status"] == "ok"
    assert store(sealed)["status"] == "warn"


async def _opens(root: Path, passphrase: bytes) -> bool:
    """Every key of the home signs and the vault opens under ``passphrase``."""
    try:
        async with await Home.open(Settings(home=root)) as h:
            h.use_passphrase(passphrase)
            h.owner_key()
            for ref in ("log", issuer_ref(h.meta["issuer_kid"]), agent_ref("alpha")):
                h.signer.sign(ref, b"x")
            return BlockingVault(h).get("API_KEY").reveal() == b"the-secret-value"
    except ConfigError:
        return False


async def test_keys_passphrase_reseals_everything(tmp_path: Path) -> None:
    root = await _home(tmp_path / "home", OLD)
    old, new = _secret_file(tmp_path, "old", OLD), _secret_file(tmp_path, "new", NEW)
    result = _cli(
        root, "keys", "passphrase", "--new-passphrase-file", str(new), passphrase_file=old
    )
    assert result.exit_code == 0, result.output
    assert not await _opens(root, OLD) and await _opens(root, NEW)
    assert not list(root.rglob("*.reseal"))
    assert await _found_keys(root) == set()
    wrong = _cli(root, "agent", "add", "gamma", "--scope", "audit:read", passphrase_file=old)
    assert wrong.exit_code != 0 and "wrong passphrase" in wrong.output
    added = _cli(root, "agent", "add", "gamma", "--scope", "audit:read", passphrase_file=new)
    assert added.exit_code == 0, added.output
    issued = _cli(root, "token", "issue", "--agent", "alpha", "--audience", API,
                  passphrase_file=new)  # fmt: skip
    assert issued.exit_code == 0, issued.output
    async with await Home.open(Settings(home=root)) as h:
        await audit.verify_home(h)
        actions = [Entry.from_body(b).fields["action"] for b in raw_tx(h).ledger.iter_bodies()]
    assert "keys.passphrase" in actions


class _Crash(Exception):
    pass


def _steps(root: Path) -> list[str]:
    labels: list[str] = []
    probe = tmp = root.parent / "probe"
    shutil.copytree(root, tmp)
    change_passphrase(probe / "keys", OLD, NEW, cheap_kdf=True, step=labels.append)
    shutil.rmtree(tmp)
    return labels


async def test_an_interrupted_passphrase_change_leaves_a_home_that_opens(tmp_path: Path) -> None:
    template = await _home(tmp_path / "template", OLD)
    labels = _steps(template)
    assert "before commit" in labels and "committed" in labels and len(labels) > 8
    for i, label in enumerate(labels):
        root = tmp_path / f"crash-{i}"
        shutil.copytree(template, root)

        def crash(at: str, *, stop: str = label) -> None:
            if at == stop:
                raise _Crash(at)

        with pytest.raises(_Crash):
            change_passphrase(root / "keys", OLD, NEW, cheap_kdf=True, step=crash)
        committed = labels.index(label) >= labels.index("committed")
        assert await _opens(root, NEW if committed else OLD), label
        assert not await _opens(root, OLD if committed else NEW), label
        # and a later change completes from there
        current = NEW if committed else OLD
        change_passphrase(root / "keys", current, b"third", cheap_kdf=True)
        assert await _opens(root, b"third"), label


async def test_an_old_home_with_only_the_owner_key_sealed_opens_and_can_be_sealed(
    tmp_path: Path,
) -> None:
    from charter.keys.files import KeyPair, read_key_file, write_key_file

    root = await _home(tmp_path / "home", None)
    owner = root / "keys" / "owner.key"
    key = read_key_file(owner)
    owner.unlink()
    write_key_file(owner, KeyPair.from_seed(bytes(key.signing_key)), OLD, cheap_kdf=True)
    pfile = _secret_file(tmp_path, "pass", OLD)
    store = {c["name"]: c for c in json.loads(_cli(root, "doctor", "--json").output)["checks"]}
    assert (
        store["key store"]["status"] == "warn"
        and "only the owner key" in store["key store"]["detail"]
    )
    added = _cli(root, "agent", "add", "gamma", "--scope", "audit:read", passphrase_file=pfile)
    assert added.exit_code == 0, added.output
    done = _cli(
        root, "keys", "passphrase", "--new-passphrase-file", str(pfile), passphrase_file=pfile
    )
    assert done.exit_code == 0, done.output
    assert await _opens(root, OLD)
    assert await _found_keys(root) == set()


async def test_rotating_the_vault_master_key_keeps_it_sealed(tmp_path: Path) -> None:
    root = await _home(tmp_path / "home", OLD)
    async with await Home.open(Settings(home=root)) as h:
        h.use_passphrase(OLD)
        BlockingVault(h).rotate_master_key()
    doc = json.loads((root / "keys" / "vault.key").read_text())
    assert "key" not in doc and doc["sealed"]["gen"] == 1
    assert await _opens(root, OLD)
    assert await _found_keys(root) == set()
    async with await Home.open(Settings(home=root)) as h:
        with pytest.raises(ConfigError, match="locked"):
            BlockingVault(h).get("API_KEY")


def test_init_and_agent_add_honour_the_passphrase_file_variable(tmp_path: Path) -> None:
    root = tmp_path / "home"
    pfile = _secret_file(tmp_path, "pass", OLD)
    made = _cli(root, "init", "--owner", "alice@example.com", "--json", passphrase_file=pfile)
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["keys_sealed"] is True
    added = _cli(root, "agent", "add", "bot", "--scope", "audit:read", passphrase_file=pfile)
    assert added.exit_code == 0, added.output
    for path in [*root.glob("keys/*.key"), *root.glob("keys/agents/*.key")]:
        doc = json.loads(path.read_text())
        assert "d" not in doc and "enc" not in doc and "sealed" in doc, path.name


async def test_a_running_server_follows_a_passphrase_change(tmp_path: Path) -> None:
    root = await _home(tmp_path / "home", OLD)
    pfile = _secret_file(tmp_path, "pass", OLD)
    async with await Home.open(Settings(home=root, passphrase_file=pfile)) as running:
        running.check_unlocked()
        running.signer.sign(agent_ref("alpha"), b"x")
        change_passphrase(root / "keys", OLD, NEW, cheap_kdf=True)
        pfile.write_bytes(NEW + b"\n")  # the credential is updated with it
        async with await Home.open(Settings(home=root, passphrase_file=pfile)) as owner:
            owner.use_passphrase(NEW)
            await identity.add_agent(owner, "gamma", scopes=["audit:read"])
        running.signer.sign(agent_ref("alpha"), b"still loaded")
        running.signer.sign(agent_ref("gamma"), b"sealed under the new generation")
