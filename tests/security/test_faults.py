"""Resource faults: a full or read-only disk, missing or unreadable keys, an unsafe home, a
database held locked. Tool calls fail closed (a clear error, no side effect, nothing
half-recorded) and the CLI refuses with a clear message and no traceback.

How each fault is made (root is what this sandbox and CI run as):

* full disk: the home on a small ``tmpfs`` filled to the last block (needs ``mount``;
  skipped with the reason otherwise), and independently a real ``charter serve`` under
  ``prlimit --fsize`` (RLIMIT_FSIZE: writes past the limit fail with EFBIG, which SQLite
  reports like a full disk);
* read-only filesystem: that ``tmpfs`` remounted read-only under a running server;
* read-only database file and unreadable key files: ``chmod``, with the subprocess run
  without CAP_DAC_OVERRIDE (``setpriv``) when the tests run as root, so modes apply.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sechelp
from mcp import Client
from mcp.types import CallToolResult, TextContent

from charter.config import Settings
from charter.errors import ConfigError, LedgerUnavailable
from charter.home import Home
from charter.storage import db
from charter.testing import make_home, server_for
from charter.tools import vault as vault_tools

pytestmark = pytest.mark.sqlite_only(
    "faults of the SQLite file (full disk, read-only file, file size, its lock, its mode);"
    " PostgreSQL faults: tests/storage/test_pg_faults.py"
)

API = "https://api.example.com"
CANARY = "canary-faults-41c9e07d"
#: One call of each kind: an email, a token, a secret read, a read-only call.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("email_send", sechelp.send_args("during the fault")),
    ("token_issue", {"audience": API, "ttl_seconds": 60}),
    ("secret_get", {"name": "API_KEY"}),
    ("identity_whoami", {}),
]


async def make_site(root: Path) -> None:
    async with await make_home(root) as home:
        await sechelp.add_mailbox(home)
        await sechelp.add_mail_agent(
            home,
            "mailer",
            ["email:send", "token:issue", "secret:read:*", "audit:read"],
            audiences=[API],
        )
        await vault_tools.set_secret(home, "API_KEY", CANARY.encode(), allowed_hosts=["127.0.0.1"])


def effects(root: Path) -> tuple[int, ...]:
    """Everything a call could change: intents and successes in the ledger, mail sent and
    delivered, tokens.

    An entry recording a call that was refused or failed is the record that it failed
    closed, not an effect: when the room left takes a small entry but not the call's intent,
    that record commits. A ``mail_sent`` row marked ``aborted`` (earlier versions) is the
    record of a send that stopped before its intent was committed.
    """
    conn = sqlite3.connect(f"file:{root / 'charter.db'}?mode=ro", uri=True)
    try:
        return tuple(
            conn.execute(sql).fetchone()[0]
            for sql in (
                "SELECT count(*) FROM ledger WHERE phase = 'intent' OR outcome = 'ok'",
                "SELECT count(*) FROM mail_sent WHERE status != 'aborted'",
                "SELECT count(*) FROM mail_local_inbox",
                "SELECT count(*) FROM tokens",
            )
        )
    finally:
        conn.close()


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def assert_fails_closed(text: str, ok: bool, *needles: str) -> None:
    assert not ok, f"the call succeeded: {text[:300]}"
    assert any(n in text for n in needles), text
    for leak in ("Traceback", "internal error", CANARY, 'File "'):
        assert leak not in text, text


def assert_cli_refuses(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert any(n in result.stderr for n in needles), result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


# -- making faults ----------------------------------------------------------------------------


@cache
def mount_allowed() -> bool:
    """True when this process may mount a tmpfs (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="charter-mount-probe-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            subprocess.run(["umount", str(probe)], check=True)
        return done.returncode == 0
    finally:
        probe.rmdir()


@pytest.fixture
def mounts() -> None:
    """Skip (saying why) where this process may not mount filesystems."""
    if not mount_allowed():
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")


needs_mount = pytest.mark.usefixtures("mounts")


@contextmanager
def tmpfs(path: Path, size: str = "16m") -> Iterator[Path]:
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", options, str(path)], check=True)


def fill(folder: Path) -> Path:
    """Write zeros until the filesystem is full, to the last byte; return the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def without_dac_override() -> list[str]:
    """A command prefix under which file modes apply, even to root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    await make_site(path)
    return path


# -- a full disk ------------------------------------------------------------------------------


@needs_mount
async def test_a_full_disk_fails_every_call_closed_and_recovers(tmp_path: Path, mode: str) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        root = fs / "home"
        await make_site(root)
        async with (
            await Home.open(Settings(home=root)) as home,
            Client(await server_for(home, "mailer"), mode=mode) as client,
        ):
            warm = await client.call_tool("email_send", sechelp.send_args("before"))
            assert not warm.is_error, text_of(warm)
            filler = fill(fs)
            # The server's writer preallocated its write-ahead log (db.preallocate_wal):
            # calls go on committing into that space, durably, until the log must grow.
            size = effects(root)[0]
            acknowledged = await calls_until_refused(client)
            assert 0 < acknowledged < MAX_CALLS_INTO_THE_LOG
            assert effects(root)[0] == size + acknowledged  # each one is in the ledger
            before = effects(root)
            for tool, args in CALLS:
                result = await client.call_tool(tool, args)
                assert_fails_closed(text_of(result), not result.is_error, "disk is full")
            assert effects(root) == before
            filler.unlink()
            after = await client.call_tool("email_send", sechelp.send_args("after"))
            assert not after.is_error, text_of(after)
        await sechelp.verify(root)


#: Read-only calls that fit into a preallocated write-ahead log (about 1,000 pages; each
#: call writes 5-6), with a wide margin.
MAX_CALLS_INTO_THE_LOG = 2000


async def calls_until_refused(client: Client) -> int:
    """Call ``identity_whoami`` until it fails (closed); return how many succeeded first."""
    for n in range(MAX_CALLS_INTO_THE_LOG):
        result = await client.call_tool("identity_whoami", {})
        if result.is_error:
            assert_fails_closed(text_of(result), False, "disk is full")
            return n
    return MAX_CALLS_INTO_THE_LOG


@needs_mount
async def test_the_cli_on_a_full_disk_refuses_clearly(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        root = fs / "home"
        await make_site(root)
        before = effects(root)
        filler = fill(fs)
        added = sechelp.run_cli(root, "agent", "add", "newbie", "--scope", "audit:read")
        assert_cli_refuses(added, "No space left", "disk is full")
        verified = sechelp.run_cli(root, "audit", "verify")
        if verified.returncode != 0:  # SQLite may need room for its shared-memory file
            assert_cli_refuses(verified, "disk", "space")
        filler.unlink()
        assert effects(root) == before
        retry = sechelp.run_cli(root, "agent", "add", "newbie", "--scope", "audit:read")
        assert retry.returncode == 0, retry.stderr
        await sechelp.verify(root)


async def test_a_server_past_its_file_size_limit_fails_closed(root: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the server's first write that grows a file fails, as on a full disk."""
    before = effects(root)
    # No bytecode writes: under the limit they would leave truncated .pyc files that break
    # every later import of those modules.
    limited = sechelp.RawStdioServer(
        root,
        "mailer",
        tmp_path / "limited.log",
        prefix=["prlimit", "--fsize=32768"],
        PYTHONDONTWRITEBYTECODE="1",
    )
    try:
        limited.initialize()
        for tool, args in CALLS:
            ok, _, text = sechelp.tool_result(limited.wait(limited.call(tool, args)))
            assert_fails_closed(text, ok, "cannot be written")
    finally:
        limited.close()
    assert effects(root) == before
    server = sechelp.RawStdioServer(root, "mailer", tmp_path / "server.log")
    try:
        server.initialize()
        ok, _, text = sechelp.tool_result(
            server.wait(server.call("email_send", sechelp.send_args("after")))
        )
        assert ok, text
    finally:
        server.close()
    await sechelp.verify(root)


# -- a read-only filesystem or database file --------------------------------------------------


@needs_mount
async def test_a_read_only_filesystem_fails_calls_closed(root: Path, tmp_path: Path) -> None:
    """The home seen through a read-only bind mount. (Linux refuses to remount a filesystem
    read-only while a process holds a file on it open for writing, so this is the state a
    server meets when it starts.)"""
    before = effects(root)
    view = tmp_path / "ro"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(root), str(view)], check=True)
    try:
        remount(view, "remount,bind,ro")
        added = sechelp.run_cli(view, "agent", "add", "x", "--scope", "audit:read")
        assert_cli_refuses(added, "Read-only file system", "readonly", "cannot be opened")
        calls_fail_closed(view, tmp_path / "server.log", [], "readonly", "Read-only")
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)
    assert effects(root) == before
    await sechelp.verify(root)


def calls_fail_closed(root: Path, log: Path, prefix: list[str], *needles: str) -> None:
    """Every kind of call to a server on ``root`` fails closed (or it refuses to start)."""
    server = sechelp.RawStdioServer(root, "mailer", log, prefix=prefix)
    try:
        server.initialize()
        for tool, args in CALLS:
            ok, _, text = sechelp.tool_result(server.wait(server.call(tool, args)))
            assert_fails_closed(text, ok, *needles)
    except sechelp.ServerGone:
        # Refusing to start at all is also closed; it must say why.
        text = log.read_text()
        assert "error: " in text and "Traceback" not in text, text
    finally:
        server.close()


async def test_a_read_only_database_file_fails_calls_closed(root: Path, tmp_path: Path) -> None:
    prefix = without_dac_override()
    before = effects(root)
    (root / "charter.db").chmod(0o400)
    try:
        added = sechelp.charter_cli(
            root, "agent", "add", "x", "--scope", "audit:read", prefix=prefix
        )
        assert_cli_refuses(added, "readonly", "read-only", "cannot be opened")
        calls_fail_closed(root, tmp_path / "ro.log", prefix, "read-only", "readonly")
    finally:
        (root / "charter.db").chmod(0o600)
    assert effects(root) == before
    await sechelp.verify(root)


# -- keys ---------------------------------------------------------------------------------------


def test_a_missing_agent_key_stops_its_server_with_a_clear_message(root: Path) -> None:
    (root / "keys" / "agents" / "mailer.key").unlink()
    served = sechelp.run_cli(root, "serve", "--agent", "mailer")
    assert_cli_refuses(served, "key file mailer.key is missing")
    assert served.returncode == ConfigError.exit_code


def test_a_missing_log_key_stops_the_server_and_the_cli(root: Path) -> None:
    (root / "keys" / "log.key").unlink()
    for args in (("serve", "--agent", "mailer"), ("agent", "list"), ("audit", "verify")):
        assert_cli_refuses(sechelp.run_cli(root, *args), "key file log.key is missing")


async def test_a_missing_owner_key_blocks_owner_actions_but_not_the_server(root: Path) -> None:
    (root / "keys" / "owner.key").unlink()
    before = effects(root)
    added = sechelp.run_cli(root, "agent", "add", "newbie", "--scope", "audit:read")
    assert_cli_refuses(added, "key file owner.key is missing")
    assert effects(root) == before
    async with (
        await Home.open(Settings(home=root)) as home,
        Client(await server_for(home, "mailer")) as client,
    ):
        who = await client.call_tool("identity_whoami", {})
    assert not who.is_error, text_of(who)  # the server never needs the owner key
    await sechelp.verify(root)


async def test_a_missing_vault_key_fails_secret_calls_closed(root: Path, mode: str) -> None:
    (root / "keys" / "vault.key").unlink()
    async with await Home.open(Settings(home=root)) as home:
        before, size = effects(root), len(sechelp.entries(home))
        async with Client(await server_for(home, "mailer"), mode=mode) as client:
            got = await client.call_tool("secret_get", {"name": "API_KEY"})
        assert_fails_closed(text_of(got), not got.is_error, "vault", "master key")
        entries = sechelp.entries(home)
    assert effects(root) == before
    assert len(entries) == size + 1  # the refusal is on the record, nothing else
    assert (entries[-1]["action"], entries[-1]["phase"]) == ("secret.read", "call")
    assert entries[-1]["outcome"] in ("denied", "error")


@pytest.mark.parametrize(
    ("key", "command"),
    [
        ("agents/mailer.key", ("serve", "--agent", "mailer")),
        ("log.key", ("agent", "list")),
        ("owner.key", ("agent", "add", "newbie", "--scope", "audit:read")),
    ],
)
def test_an_unreadable_key_file_is_refused_with_a_clear_message(
    root: Path, key: str, command: tuple[str, ...]
) -> None:
    prefix = without_dac_override()
    path = root / "keys" / key
    path.chmod(0o000)
    try:
        result = sechelp.charter_cli(root, *command, prefix=prefix)
    finally:
        path.chmod(0o600)
    assert_cli_refuses(result, f"key file {path.name} cannot be read: Permission denied")


@pytest.mark.parametrize("key", ["agents/mailer.key", "log.key"])
def test_a_corrupt_key_file_is_refused_with_a_clear_message(root: Path, key: str) -> None:
    path = root / "keys" / key
    path.write_text('{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "d": "not-a-key"}')
    result = sechelp.run_cli(root, "serve", "--agent", "mailer")
    assert_cli_refuses(result, f"key file {path.name} is corrupt")


# -- an unsafe home -----------------------------------------------------------------------------


@pytest.mark.parametrize(("folder", "mode"), [("", 0o755), ("", 0o701), ("keys", 0o750)])
async def test_a_home_open_to_other_users_is_refused(root: Path, folder: str, mode: int) -> None:
    target = root / folder if folder else root
    target.chmod(mode)
    for args in (("serve", "--agent", "mailer"), ("agent", "list")):
        result = sechelp.run_cli(root, *args)
        assert_cli_refuses(result, "is accessible to other users")
        assert f"chmod 700 {target}" in result.stderr
    with pytest.raises(ConfigError, match="accessible to other users"):
        await Home.open(Settings(home=root))


# -- a database held locked by another process -------------------------------------------------


async def test_a_database_locked_past_the_busy_timeout_fails_calls_closed(
    root: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(db, "LOCK_WAIT_SECONDS", 0.1)
    async with (
        await Home.open(Settings(home=root)) as home,
        Client(await server_for(home, "mailer"), mode=mode) as client,
    ):
        warm = await client.call_tool("identity_whoami", {})
        assert not warm.is_error
        before = effects(root)
        holder = sqlite3.connect(root / "charter.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            for tool, args in CALLS:
                result = await client.call_tool(tool, args)
                assert_fails_closed(text_of(result), not result.is_error, "locked")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert effects(root) == before
        after = await client.call_tool("email_send", sechelp.send_args("after"))
        assert not after.is_error, text_of(after)
    await sechelp.verify(root)


def test_waiting_for_a_held_lock_is_bounded_in_total(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retries stop after LOCK_WAIT_SECONDS, however many busy timeouts fit in it."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(db, "LOCK_WAIT_SECONDS", 0.5)
    conn = db.connect(root / "charter.db")
    holder = sqlite3.connect(root / "charter.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable, match="stayed locked"), db.transaction(conn):
            raise AssertionError("the write lock was never free")
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert 0.5 <= waited < 0.5 + 0.1 + 1.0  # the deadline, one busy timeout, scheduling slack
    with db.transaction(conn):  # free again: the next transaction goes through
        conn.execute("INSERT INTO meta(key, value) VALUES ('after', 'lock')")
    conn.close()


def test_a_new_home_is_private(root: Path) -> None:
    """Folders 0700, key files and the database 0600, from the first command on."""
    modes = {
        path.relative_to(root).as_posix(): path.stat().st_mode & 0o777
        for path in [root, *root.rglob("*")]
        if not path.name.startswith("charter.db-")  # SQLite's WAL/SHM, inside the 0700 folder
    }
    folders = {p: m for p, m in modes.items() if (root / p).is_dir()}
    files = {p: m for p, m in modes.items() if not (root / p).is_dir()}
    assert set(folders.values()) == {0o700}, folders
    assert set(files.values()) == {0o600}, files
    assert any(p.endswith(".key") for p in files) and "charter.db" in files
