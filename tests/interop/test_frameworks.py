"""Charter from the agent frameworks people use: LangChain's MCP adapters, PydanticAI, the
OpenAI Agents SDK and FastMCP, each driving a real `charter serve` subprocess over stdio and
over streamable HTTP with a bearer token, with no model.

The frameworks live in .ci/interop-venv (made by .ci/install-interop), not in Charter's venv:
each test runs tests/interop/client.py (or a README snippet) under that venv's python, and
checks what came back against Charter's own CLI: the agent's id, a token that
`charter token verify` accepts, the ledger entries of the calls, and `charter audit verify`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTEROP_PYTHON = ROOT / ".ci" / "interop-venv" / "bin" / "python"
CLIENT = Path(__file__).resolve().parent / "client.py"
CHARTER = Path(sys.executable).parent / "charter"
API = "https://api.example.com"
OWNER = "owner@example.com"
FRAMEWORKS = ["langchain", "pydantic_ai", "openai_agents", "fastmcp"]
TOOLS = {
    "identity_whoami",
    "agent_delegate",
    "agent_revoke_delegate",
    "token_issue",
    "token_http_request",
    "audit_query",
    "audit_verify",
    "audit_checkpoint",
    "audit_prove",
    "secret_list",
    "secret_http_request",
    "secret_get",
    "email_send",
    "email_list",
    "email_read",
}


def agent_id(name: str) -> str:
    return f"spiffe://charter.local/agent/owner/{name}"


@dataclass
class Site:
    """A home served by `charter serve --http` on a free loopback port."""

    home: Path
    issuer: str
    token: str  # a bearer token for agent `bot` at this server (audit:read token:issue)

    @property
    def mcp(self) -> str:
        return f"{self.issuer}/mcp"

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{CHARTER.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", str(self.home)),
            "CHARTER_HOME": str(self.home),
        }

    def charter(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(CHARTER), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert proc.returncode == 0, f"charter {' '.join(args)}\n{proc.stdout}{proc.stderr}"
        return proc

    def interop(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        """Run the interop venv's python with ``args``; its stdout."""
        proc = subprocess.run(
            [str(INTEROP_PYTHON), *args],
            env={**self.env(), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def entries(self) -> list[dict[str, Any]]:
        out = self.charter("audit", "tail", "-n", "100000", "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_serving(issuer: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"charter serve --http exited: {server.communicate()[1]}")
        try:
            with urllib.request.urlopen(f"{issuer}/.well-known/jwks.json", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail("charter serve --http did not start within 30 s")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not INTEROP_PYTHON.exists():
        why = "the agent frameworks' venv .ci/interop-venv is missing"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/install-interop should have made it")
        pytest.skip(f"{why}; run `bash .ci/install-interop` to enable these tests")
    issuer = f"http://127.0.0.1:{_free_port()}"
    site = Site(tmp_path_factory.mktemp("interop") / "home", issuer, token="")
    site.charter("init", "--owner", OWNER)
    site.charter("token", "issuer", "set", issuer)
    site.charter(
        "agent", "add", "bot", "--scope", "audit:read", "--scope", "token:issue",
        "--audience", API, "--audience", site.mcp,
    )  # fmt: skip
    # The README snippets' agents.
    site.charter("agent", "add", "research-assistant", "--scope", "audit:read")
    site.charter("agent", "add", "web-agent", "--scope", "audit:read", "--audience", site.mcp)
    site.token = site.charter(
        "token", "issue", "--agent", "bot", "--audience", site.mcp,
        "--scope", "audit:read", "--scope", "token:issue", "--ttl", "3600",
    ).stdout.strip()  # fmt: skip
    server = subprocess.Popen(
        [str(CHARTER), "serve", "--http", "--port", issuer.rsplit(":", 1)[1]],
        env=site.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_serving(issuer, server)
        yield site
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stderr is not None:
            server.stderr.close()
    site.charter("audit", "verify")  # the ledger is whole after every framework's calls


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_framework_lists_and_calls_charter_tools(
    site: Site, framework: str, transport: str
) -> None:
    before = len(site.entries())
    if transport == "stdio":
        server = ["stdio", str(CHARTER), str(site.home), "bot"]
    else:
        server = ["http", site.mcp, site.token]
    result = json.loads(site.interop(str(CLIENT), framework, *server, API))

    # The tools, as the framework's own tool objects name them.
    assert set(result["tools"]) == TOOLS
    # identity_whoami: this agent, under its owner.
    whoami = result["whoami"]
    assert whoami["agent_id"] == agent_id("bot")
    assert whoami["owner"] == OWNER
    assert whoami["scopes"] == ["audit:read", "token:issue"]
    # token_issue: a token Charter's own verifier accepts, for that audience and scope only.
    issued = result["issued"]
    assert issued["audience"] == API and issued["scopes"] == ["audit:read"]
    verified = json.loads(
        site.charter("token", "verify", issued["token"], "--audience", API, "--json").stdout
    )
    assert verified["valid"] is True
    claims = verified["claims"]
    assert claims["sub"] == agent_id("bot") and claims["jti"] == issued["jti"]
    assert claims["scope"] == "audit:read"
    wrong = site.charter("token", "verify", issued["token"], "--audience", site.mcp, check=False)
    assert wrong.returncode == 5, wrong.stdout + wrong.stderr  # bound to its one audience
    # The ledger: both calls signed by this agent, the token's id in its issue entry.
    new = site.entries()[before:]
    assert all(entry["actor"] == agent_id("bot") for entry in new), new
    assert any(e["action"] == "identity.whoami" and e["outcome"] == "ok" for e in new), new
    issue = [e for e in new if e["action"] == "token.issue"]
    assert any(e["phase"] == "outcome" and e["outcome"] == "ok" for e in issue), issue
    assert any(e["args"].get("details", {}).get("jti") == issued["jti"] for e in issue), issue
    site.charter("audit", "verify")


def readme_snippets() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## From agent frameworks") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_has_a_snippet_per_framework() -> None:
    snippets = readme_snippets()
    imports = ["langchain_mcp_adapters", "pydantic_ai", "from agents", "fastmcp"]
    assert len(snippets) == len(imports)
    for snippet, name in zip(snippets, imports, strict=True):
        assert name in snippet


@pytest.mark.parametrize("index", range(4), ids=FRAMEWORKS)
def test_readme_snippet_runs_as_written(site: Site, index: int) -> None:
    """Each README snippet, unchanged but for the port, against this test's server."""
    snippet = readme_snippets()[index].replace(":8765/", f":{site.issuer.rsplit(':', 1)[1]}/")
    over_http = "CHARTER_TOKEN" in snippet
    token = site.charter("token", "issue", "--agent", "web-agent", "--audience", site.mcp)
    out = site.interop("-c", snippet, extra_env={"CHARTER_TOKEN": token.stdout.strip()})
    agent = "web-agent" if over_http else "research-assistant"
    assert agent_id(agent) in out, out
