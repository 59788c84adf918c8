"""``charter daemon``: Charter as its own OS account; agents reach it only through its socket.

Three real accounts, made for the test (CI runs as root: ``useradd``, ``runuser``): the daemon's
account owns the home; the agent's account runs ``charter serve --connect`` (a relay with no
home) under a real MCP client and is served as the agent the owner bound to it; a third account
is refused (and the refusal recorded); the agent's account can list nothing in the home; the
ledger verifies.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

REPO = Path(__file__).resolve().parents[2]


def _need(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI runs as root with useradd and runuser")
    pytest.skip(why)


def _runs_as(user: str, python: str) -> bool:
    probe = subprocess.run(
        ["runuser", "-u", user, "--", python, "-c", "import charter"],
        capture_output=True,
        timeout=60,
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def accounts() -> Iterator[dict[str, str]]:
    """Three throwaway accounts: the daemon's, the agent's, a stranger's."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        _need("the daemon test makes OS accounts: it needs root, useradd and runuser")
    tag = secrets.token_hex(3)
    names = {"daemon": f"chd{tag}", "agent": f"cha{tag}", "stranger": f"chx{tag}"}
    for name in names.values():
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    try:
        yield names
    finally:
        for name in names.values():
            subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture(scope="module")
def python(accounts: dict[str, str]) -> Iterator[str]:
    """A Python with Charter that every account can run: this one if they can, else a venv
    made for the test from the system's python3 (a developer's Python may sit in root's home)."""
    if _runs_as(accounts["agent"], sys.executable):
        yield sys.executable
        return
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        _need("no Python that other accounts can run")
    assert system is not None
    folder = Path(tempfile.mkdtemp(prefix="charter-daemon-venv-", dir="/tmp"))
    try:
        subprocess.run([system, "-m", "venv", str(folder)], check=True, capture_output=True)
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, str(REPO)], check=True, capture_output=True, timeout=600)
        folder.chmod(0o755)
        yield str(folder / "bin" / "python")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _as(user: str, python: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    return ["runuser", "-u", user, "--", "env", *extra, python, "-m", "charter", *args]


@pytest.fixture
def site(accounts: dict[str, str], python: str) -> Iterator[dict[str, Path]]:
    """A home owned by the daemon's account, agent ``bot`` bound to the agent's account, and
    the daemon listening on a socket the others can reach."""
    base = Path(tempfile.mkdtemp(prefix="charter-daemon-", dir="/tmp"))
    base.chmod(0o755)
    home, sock = base / "home", base / "charter.sock"
    shutil.chown(base, accounts["daemon"])
    env = {"CHARTER_HOME": str(home)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = _as(accounts["daemon"], python, *args, env=env)
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert run("init", "--owner", "owner@example.com").returncode == 0
    added = run("agent", "add", "bot", "--scope", "audit:read", "--os-user", accounts["agent"])
    assert added.returncode == 0, added.stderr
    assert run("agent", "add", "other", "--scope", "audit:read").returncode == 0
    daemon = subprocess.Popen(
        _as(accounts["daemon"], python, "daemon", "--socket", str(sock), env=env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)
        yield {"home": home, "socket": sock, "base": base}
    finally:
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(20)
        if daemon.stderr is not None:
            daemon.stderr.close()
        shutil.rmtree(base, ignore_errors=True)


def _serve(agent: str, sock: Path) -> list[str]:
    return ["-m", "charter", "serve", "--agent", agent, "--connect", str(sock)]


def _relay(user: str, python: str, sock: Path, agent: str) -> StdioServerParameters:
    return StdioServerParameters(
        command="runuser",
        args=["-u", user, "--", python, *_serve(agent, sock)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


async def test_the_agent_account_is_served_through_the_socket_and_nothing_else(
    accounts: dict[str, str], python: str, site: dict[str, Path]
) -> None:
    agent, stranger, owner = accounts["agent"], accounts["stranger"], accounts["daemon"]
    # The agent's account: served as `bot`, through a real MCP client over the relay.
    async with Client(_relay(agent, python, site["socket"], "bot")) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert "identity_whoami" in tools
        who = await client.call_tool("identity_whoami", {})
        assert not who.is_error
        assert who.structured_content is not None
        assert who.structured_content["agent_id"].endswith("/bot")

    # It cannot read the home: not the keys, not the database, not even the listing.
    for target in (site["home"], site["home"] / "keys", site["home"] / "charter.db"):
        peek = subprocess.run(
            ["runuser", "-u", agent, "--", "ls", str(target)], capture_output=True
        )
        assert peek.returncode != 0, target

    # Another agent of the home, not bound to this account: refused.
    other = subprocess.run(
        _as(agent, python, "serve", "--agent", "other", "--connect", str(site["socket"])),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 3
    assert "is not bound to agent 'other'" in other.stderr

    # A third account: refused, whatever agent it names.
    third = subprocess.run(
        _as(stranger, python, "serve", "--agent", "bot", "--connect", str(site["socket"])),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert third.returncode == 3
    assert f"OS account {stranger!r} is not bound to agent 'bot'" in third.stderr
    assert "Traceback" not in third.stderr

    # The daemon's account verifies the ledger: the call, and both refusals under the log key.
    env = {"CHARTER_HOME": str(site["home"])}
    verified = subprocess.run(
        _as(owner, python, "audit", "verify", env=env), capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    tail = subprocess.run(
        _as(owner, python, "audit", "tail", "-n", "20", "--json", env=env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    refusals = [line for line in tail.stdout.splitlines() if '"daemon.connect"' in line]
    assert len(refusals) == 2 and all('"denied"' in line for line in refusals)
    assert any(stranger in line for line in refusals)
    assert '"identity.whoami"' in tail.stdout


async def test_binding_an_unknown_account_is_refused_with_one_line(
    accounts: dict[str, str], python: str, site: dict[str, Path]
) -> None:
    added = subprocess.run(
        _as(
            accounts["daemon"],
            python,
            "agent",
            "add",
            "ghosted",
            "--os-user",
            "no-such-user-x",
            env={"CHARTER_HOME": str(site["home"])},
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode != 0
    assert "no OS account named 'no-such-user-x'" in added.stderr
    assert "Traceback" not in added.stderr
