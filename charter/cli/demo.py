"""``charter demo``: the whole story in a throwaway home, with a real stdio server and client."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console

from charter.cli._common import handle_errors
from charter.cli.audit import ledger_table
from charter.config import Settings
from charter.errors import ServiceError
from charter.home import Home
from charter.storage.ledger import Entry
from charter.tools import audit, identity


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("demo")
    @click.option("--keep", is_flag=True, help="Keep the demo home and print where it is.")
    @handle_errors
    def demo(keep: bool) -> None:
        """Run the whole Charter story in seconds, in a throwaway home."""
        root = Path(tempfile.mkdtemp(prefix="charter-demo-"))
        try:
            run_demo(root / "home")
        finally:
            if keep:
                click.echo(f"\nDemo home kept at {root / 'home'} (CHARTER_HOME={root / 'home'})")
            else:
                shutil.rmtree(root, ignore_errors=True)


def _say(step: str, detail: str = "") -> None:
    click.echo(click.style("▸ ", fg="cyan") + step + (f"  {detail}" if detail else ""))


def run_demo(home_dir: Path) -> None:
    """Run the demo against a new home at ``home_dir``."""
    started = time.monotonic()
    settings = Settings(home=home_dir)
    with Home.init(settings, owner="owner@example.com") as home:
        _say("charter init", f"owner owner@example.com, ledger {home.origin}")
        identity.add_agent(
            home, "demo-agent", scopes=["audit:read"], audiences=["https://api.example.com"]
        )
        _say("charter agent add demo-agent", "own Ed25519 key + owner-signed charter")
    results = anyio.run(_drive_server, home_dir)
    who = results["whoami"]
    _say("identity_whoami", who["agent_id"])
    _say("audit_query", f"{len(results['query']['entries'])} entries of mine")
    verdict = results["verify"]
    _say("audit_verify", f"valid={verdict['valid']} size={verdict['size']}")
    with Home.open(settings) as home:
        entries = [audit.entry_out(Entry.from_body(b)) for b in home.ledger.iter_bodies()]
        report = audit.verify_home(home)
    Console().print(ledger_table(entries))
    _say(
        "charter audit verify",
        f"OK: {report.size} entries, head {report.head[:16]}… ({time.monotonic() - started:.1f}s)",
    )


async def _drive_server(home_dir: Path) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "charter", "serve", "--agent", "demo-agent"],
        env={"CHARTER_HOME": str(home_dir), "PATH": os.environ.get("PATH", "")},
    )
    out: dict[str, Any] = {}
    async with Client(params) as client:
        for name in ("whoami", "query", "verify"):
            tool = {"whoami": "identity_whoami", "query": "audit_query", "verify": "audit_verify"}[
                name
            ]
            result = await client.call_tool(tool, {})
            if result.is_error or result.structured_content is None:
                raise ServiceError(f"{tool} failed in the demo")
            out[name] = result.structured_content
    return out
