"""PostgreSQL going away under running servers (issue 18, faults).

A stdio server and an HTTP server keep streaming ``token_issue`` calls while their PostgreSQL
server stops (fast shutdown: every connection cut) and starts again on the same port. During
the outage every call is refused with one clear line and nothing acts: no token exists
without its committed signed intent. Afterwards the same server processes, never restarted,
reconnect by themselves; the ledger verifies and holds every acknowledged call.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sechelp
from pg import PgCluster, free_port
from pgteam import API, Acks, HttpServer, assert_recorded, cli, http_client, initialize, ledger

from charter.tools.tokens import resource_url

pytestmark = pytest.mark.sqlite_only("runs PostgreSQL clusters of its own (pg_own_cluster)")


def stdio_stream(
    server: sechelp.RawStdioServer, stop: threading.Event, acks: Acks, refused: list[str]
) -> None:
    """One ``token_issue`` at a time until ``stop``: jtis of the answered ones, refusals."""
    while not stop.is_set():
        ok, result, text = sechelp.tool_result(
            server.wait(server.call("token_issue", {"audience": API}), timeout=60)
        )
        if ok and result is not None:
            acks.jtis.append(str(result["jti"]))
        else:
            refused.append(text)
            time.sleep(0.05)


def no_effect_without_intent(entries: list[dict[str, Any]], url: str) -> None:
    import psycopg

    intents = {
        e["args"]["details"]["jti"]
        for e in entries
        if e["phase"] == "intent" and e["action"] == "token.issue"
    }
    with psycopg.connect(url) as conn:
        issued = {str(r[0]) for r in conn.execute("SELECT jti FROM tokens").fetchall()}
    owner_issued = {  # the owner's token (charter token issue): its own signed event
        e["args"].get("jti") or e["args"].get("details", {}).get("jti")
        for e in entries
        if e["action"] == "token.issue" and e["phase"] not in ("intent", "outcome")
    }
    assert issued - owner_issued <= intents, "a token exists without its signed intent"


async def test_servers_survive_a_postgresql_restart_and_refuse_clearly_meanwhile(
    tmp_path: Path, pg_own_cluster: PgCluster
) -> None:
    pg = pg_own_cluster
    url = pg.create_database("team")
    root = tmp_path / "home"
    cli(root, url, "init", "--owner", "owner@example.com")
    issuer = f"http://127.0.0.1:{free_port()}"
    resource = resource_url(issuer)
    cli(root, url, "token", "issuer", "set", issuer)
    cli(root, url, "agent", "add", "alpha", "--scope", "audit:read", "--scope", "token:issue",
        "--audience", API, "--audience", resource)  # fmt: skip
    issued = cli(root, url, "token", "issue", "--agent", "alpha", "--audience", resource,
                 "--scope", "audit:read", "--scope", "token:issue", "--json")  # fmt: skip
    token = json.loads(issued.stdout)["token"]
    log = tmp_path / "servers.log"
    web = HttpServer(root, url, free_port(), issuer, log)
    stdio = sechelp.RawStdioServer(root, "alpha", log, CHARTER_DATABASE_URL=url)
    try:
        await web.ready()
        stdio.initialize(timeout=120)
        acks, refused, stop = Acks(), list[str](), threading.Event()
        driver = threading.Thread(target=stdio_stream, args=(stdio, stop, acks, refused))
        driver.start()
        while len(acks.jtis) < 5:
            await asyncio.sleep(0.05)

        pg.stop("fast")  # every connection cut, mid-stream
        down = Acks()
        await http_client(web.mcp, token, down, calls=1)
        bare = await initialize(web.mcp, token)  # a clear 503, not a 500
        assert bare.status_code == 503 and "PostgreSQL" in bare.json()["error_description"]
        seen = len(refused)
        deadline = time.monotonic() + 30
        while len(refused) < seen + 3:  # the stdio server keeps being refused, clearly
            assert time.monotonic() < deadline, "no refusal while PostgreSQL was down"
            await asyncio.sleep(0.05)
        pg.start()
        answered_before = len(acks.jtis)
        deadline = time.monotonic() + 30
        while len(acks.jtis) < answered_before + 5:  # the same process reconnected
            assert time.monotonic() < deadline, f"no recovery: {refused[-3:]}"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.to_thread(driver.join, 60)
        after = Acks()
        await http_client(web.mcp, token, after, calls=3)
    finally:
        stdio.close()
        web.stop()

    assert refused, "no call was refused during the outage"
    for text in refused:
        assert "PostgreSQL" in text and "Traceback" not in text, text
        assert "\n" not in text.strip()
    assert not down.jtis and down.failures  # the HTTP server refused too
    assert not after.failures and len(after.jtis) == 3, after.failures
    entries = await ledger(root, url)
    verified = cli(root, url, "audit", "verify")
    assert verified.stdout.startswith(f"OK: {len(entries)} entries verified")
    assert_recorded(entries, acks.jtis + after.jtis)
    no_effect_without_intent(entries, url)
