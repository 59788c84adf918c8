"""``charter audit export --format ocsf``: OCSF API Activity events, validated against the
OCSF 1.8.0 schema of class 6003 (vendored JSON Schema, made from the OCSF schema repository by
ocsf-lib's compiler: tests/tools/ocsf/make_schema.py names the source)."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client
from sechelp import run_cli

from charter.evidence.entries import Entry
from charter.home import Home
from charter.testing import raw_tx, server_for
from charter.tools import ocsf

SCHEMA = json.loads((Path(__file__).parent / "ocsf" / "api_activity.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def check(event: dict[str, Any]) -> None:
    """Valid OCSF 6003, plus what JSON Schema cannot say (type_uid = class * 100 + activity)."""
    VALIDATOR.validate(event)
    assert event["type_uid"] == 600300 + event["activity_id"]


async def make_traffic(home: Home) -> None:
    async with Client(await server_for(home, "alpha")) as client:
        assert not (await client.call_tool("identity_whoami", {})).is_error
        assert not (await client.call_tool("audit_query", {"limit": 5})).is_error
    async with Client(await server_for(home, "beta")) as client:
        assert (await client.call_tool("audit_query", {})).is_error  # denied


def ledger(home: Home) -> list[Entry]:
    return [Entry.from_body(b) for b in raw_tx(home).ledger.iter_bodies()]


async def test_every_entry_becomes_a_valid_api_activity_event(home: Home) -> None:
    await make_traffic(home)
    buf = io.BytesIO()
    count = await ocsf.export(home, buf)
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    entries = ledger(home)
    assert count == len(events) == len(entries) > 5
    for event, entry in zip(events, entries, strict=True):
        check(event)
        assert event["metadata"]["uid"] == entry.hash
        assert event["metadata"]["sequence"] == entry.seq
        assert event["unmapped"]["charter"]["entry_hash"] == entry.hash
        assert event["unmapped"]["charter"]["seq"] == entry.seq
        assert event["unmapped"]["charter"]["prev"] == entry.fields["prev"]
        assert event["actor"]["user"]["uid"] == entry.fields["actor"]
        assert event["src_endpoint"]["owner"]["uid"] == "owner@example.com"
        assert event["api"]["operation"] == entry.fields["action"]
        assert event["metadata"]["log_name"] == home.origin


async def test_agent_calls_map_actor_owner_tool_and_outcome(home: Home) -> None:
    await make_traffic(home)
    buf = io.BytesIO()
    await ocsf.export(home, buf)
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    whoami = next(e for e in events if e["api"]["operation"] == "identity.whoami")
    assert whoami["actor"]["user"]["uid"] == "spiffe://charter.local/agent/owner/alpha"
    assert whoami["actor"]["user"]["name"] == "alpha"
    assert (whoami["status_id"], whoami["status"], whoami["status_code"]) == (1, "Success", "ok")
    assert (whoami["activity_id"], whoami["type_uid"]) == (2, 600302)
    assert whoami["actor"]["authorizations"][0]["decision"] == "allowed"
    denied = [e for e in events if e["status_code"] == "denied"][-1]
    assert denied["actor"]["user"]["name"] == "beta"
    assert (denied["status_id"], denied["status"]) == (2, "Failure")
    assert "does not grant 'audit:read'" in denied["status_detail"]
    assert denied["actor"]["authorizations"][0]["decision"] == "denied"
    assert denied["api"]["request"]["uid"] == denied["metadata"]["correlation_uid"]
    init = events[0]
    assert init["api"]["operation"] == "ledger.init"
    assert init["actor"]["user"] == {
        "uid": "owner@example.com",
        "name": "owner@example.com",
        "type_id": 1,
        "type": "User",
    }


def test_the_schema_rejects_what_ocsf_rejects() -> None:
    """The validator has teeth: each broken variant of a valid event fails."""
    good: dict[str, Any] = {
        "class_uid": 6003,
        "category_uid": 6,
        "activity_id": 2,
        "type_uid": 600302,
        "severity_id": 1,
        "time": 1,
        "actor": {"user": {"uid": "a"}},
        "api": {"operation": "x.get"},
        "src_endpoint": {"name": "owner"},
        "metadata": {"version": "1.8.0", "product": {"name": "Charter"}},
    }
    check(good)
    breakers: list[Callable[[dict[str, Any]], object]] = [
        lambda e: e.pop("actor"),  # required
        lambda e: e.__setitem__("class_uid", 3002),  # another class
        lambda e: e.__setitem__("status_id", 7),  # not in the enum
        lambda e: e.__setitem__("hash", "x"),  # not an OCSF attribute: belongs in unmapped
        lambda e: e["api"].pop("operation"),  # required in the api object
        lambda e: e.__setitem__("src_endpoint", {"ip": "127.0.0.1"}),  # OCSF 'at_least_one'
        lambda e: e.__setitem__("time", "2026-01-01"),  # a timestamp is epoch ms
    ]
    for brk in breakers:
        bad = copy.deepcopy(good)
        brk(bad)
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(bad)


async def test_cli_writes_ocsf_jsonl_and_keeps_the_default_format(
    home: Home, tmp_path: Path
) -> None:
    await make_traffic(home)
    size = len(ledger(home))
    root = home.layout.root
    await home.close()
    out = tmp_path / "siem"
    result = run_cli(root, "audit", "export", "--format", "ocsf", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"format": "ocsf", "version": "1.8.0", "events": size}
    lines = (out / "events.ocsf.jsonl").read_bytes().splitlines()
    assert len(lines) == size
    for line in lines:
        check(json.loads(line))
    # To stdout, for a pipe into a SIEM shipper.
    piped = run_cli(root, "audit", "export", "--format", "ocsf", "-")
    assert piped.returncode == 0, piped.stderr
    assert [json.loads(x)["metadata"]["uid"] for x in piped.stdout.splitlines()] == [
        json.loads(x)["metadata"]["uid"] for x in lines
    ]
    # Never overwrites a previous export.
    again = run_cli(root, "audit", "export", "--format", "ocsf", str(out))
    assert again.returncode != 0
    assert "exists" in again.stderr and "Traceback" not in again.stderr
    # The default is still the auditor's bundle.
    bundle = run_cli(root, "audit", "export", str(tmp_path / "bundle"))
    assert bundle.returncode == 0, bundle.stderr
    assert (tmp_path / "bundle" / "ledger.json").exists()
    assert not (tmp_path / "bundle" / "events.ocsf.jsonl").exists()
    dash = run_cli(root, "audit", "export", "-")
    assert dash.returncode != 0 and "Traceback" not in dash.stderr
