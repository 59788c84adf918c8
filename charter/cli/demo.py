"""``charter demo``: the whole story in a throwaway home, with a real stdio server and client."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click

from charter.cli._common import console, run_async
from charter.cli.audit import ledger_table
from charter.config import Settings
from charter.errors import ServiceError
from charter.home import Home
from charter.storage.backends import database_contains
from charter.tools import audit, identity

AGENT = "demo-agent"
AUDIENCE = "https://api.example.com"
REVIEWER = "reviewer@example.com"
#: A stand-in API key: the demo shows the agent using it without ever seeing it.
DEMO_KEY = "sk-demo-4f1c9a7e2b"


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("demo")
    @click.option("--keep", is_flag=True, help="Keep the demo home and print where it is.")
    @run_async
    async def demo(keep: bool) -> None:
        """Run the whole Charter story in seconds, in a throwaway home."""
        root = Path(tempfile.mkdtemp(prefix="charter-demo-"))
        # CHARTER_DATABASE_URL: the demo's home keeps its rows in that (empty) database.
        url = Settings.from_env(os.environ, home=root / "home").database_url
        try:
            await run_demo(root / "home", database=url)
        finally:
            if keep:
                click.echo(f"\nDemo home kept at {root / 'home'} (CHARTER_HOME={root / 'home'})")
            else:
                shutil.rmtree(root, ignore_errors=True)


def _say(step: str, detail: str = "") -> None:
    click.echo(click.style("▸ ", fg="cyan") + click.style(step, bold=True) + f"  {detail}")


class _EchoAPI(BaseHTTPRequestHandler):
    """A stand-in API on 127.0.0.1 that echoes the Authorization header it received."""

    def do_GET(self) -> None:
        body = f"hello; you sent Authorization: {self.headers.get('Authorization')}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def _echo_api() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAPI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/whoami"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def run_demo(home_dir: Path, database: str | None = None) -> None:
    """Run the demo against a new home at ``home_dir`` (``database``: PostgreSQL's URL,
    kept in the home's config so its stdio server uses it too)."""
    from charter.tools import vault

    started = time.monotonic()
    settings = Settings(home=home_dir)
    async with await Home.init(settings, owner="owner@example.com", database=database) as home:
        _say("charter init", f"owner owner@example.com; ledger {home.origin}")
        await identity.add_agent(
            home,
            AGENT,
            scopes=["audit:read", "token:issue", "secret:use:DEMO_API_KEY", "email:send"],
            audiences=[AUDIENCE],
            policy={"email": {"address": f"{AGENT}@example.com"}},
        )
        _say(f"charter agent add {AGENT}", "its own Ed25519 key + a charter signed by the owner")
        await identity.add_agent(
            home, "reviewer", scopes=["email:read"], policy={"email": {"address": REVIEWER}}
        )
        _say("charter agent add reviewer", f"a second agent, mailbox {REVIEWER}")
        await vault.set_secret(
            home, "DEMO_API_KEY", DEMO_KEY.encode(), description="demo", allowed_hosts=["127.0.0.1"]
        )
        _say("charter secret set DEMO_API_KEY", "encrypted at rest; usable only on 127.0.0.1")
    with _echo_api() as api_url:
        results = await _drive_server(home_dir, api_url)
    who = results["identity_whoami"]
    _say("identity_whoami", f"{who['agent_id']} for {who['owner']}")
    tok = results["token_issue"]
    _say(
        "token_issue",
        f"EdDSA JWT for {tok['audience']}, scope '{' '.join(tok['scopes'])}', "
        f"expires {tok['expires_at']}",
    )
    used = results["secret_http_request"]
    _say("secret_http_request", f"{used['status']}: {used['body']!r}")
    mail = results["email_send"]
    _say(
        "email_send",
        f"to {REVIEWER} on the local transport, {mail['message_id']}, "
        "signed (Charter-Signature) and recorded before sending",
    )
    _say("audit_query", f"{len(results['audit_query']['entries'])} entries signed by the agent")
    verdict = results["audit_verify"]
    _say(
        "audit_verify",
        f"valid={verdict['valid']} size={verdict['size']} (the ledger as it stood when "
        "checked: the audit_verify call's own entry is appended after it)",
    )
    async with await Home.open(Settings.from_env({}, home=home_dir)) as home:
        entries = await audit.entries_from(home, 0, limit=1 << 30)
        report = await audit.verify_home(home)
        leaked = await database_contains(home.store, DEMO_KEY.encode())
    console().print(ledger_table(entries))
    # Say why the counts differ, so "size=12" then "13 entries" does not look like a bug.
    later = report.size - verdict["size"]
    why = f" ({later} more than audit_verify saw: the entries recorded after it checked)"
    _say(
        "charter audit verify",
        f"OK: {report.size} entries{why if later else ''}, head {report.head[:16]}…",
    )
    _say("secret in the database or the model's context?", "no" if not leaked else "YES (bug)")
    click.echo(f"Done in {time.monotonic() - started:.1f}s.")


async def _drive_server(home_dir: Path, api_url: str) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "charter", "serve", "--agent", AGENT],
        env={"CHARTER_HOME": str(home_dir), "PATH": os.environ.get("PATH", "")},
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("identity_whoami", {}),
        ("token_issue", {"audience": AUDIENCE, "scopes": ["audit:read"], "ttl_seconds": 300}),
        (
            "secret_http_request",
            {
                "method": "GET",
                "url": api_url,
                "headers": {"Authorization": "Bearer {{secret:DEMO_API_KEY}}"},
            },
        ),
        (
            "email_send",
            {
                "to": [REVIEWER],
                "subject": "Demo report",
                "text": "The API answered; the key never left Charter.",
            },
        ),
        ("audit_query", {"limit": 50}),
        ("audit_verify", {}),
    ]
    out: dict[str, Any] = {}
    async with Client(params) as client:
        for tool, args in calls:
            result = await client.call_tool(tool, args)
            if result.is_error or result.structured_content is None:
                text = " ".join(getattr(c, "text", "") for c in result.content)
                raise ServiceError(f"{tool} failed in the demo: {text}")
            out[tool] = result.structured_content
    return out
