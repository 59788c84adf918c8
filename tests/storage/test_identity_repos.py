"""The agents, lockdown and approvals repositories: plain values in and out, driver errors
translated (the service-level behaviour is tested in tests/tools and tests/cli)."""

from __future__ import annotations

import pytest

from charter.errors import ConfigError
from charter.home import Home
from charter.storage.agents import AgentRepo
from charter.storage.approvals import ApprovalRecord, ApprovalRepo
from charter.storage.db import transaction
from charter.storage.lockdown import LockdownRepo
from charter.testing import raw_db


def test_agent_repo_reads_and_refuses_a_taken_name(home: Home) -> None:
    agents = AgentRepo(raw_db(home))
    alpha = agents.get("alpha")
    assert alpha is not None and alpha.status == "active" and alpha.revoked_at is None
    assert agents.exists("alpha") and not agents.exists("nobody")
    assert agents.get("nobody") is None and agents.status("nobody") is None
    assert agents.list_names() == ["alpha", "beta"]
    assert [a.name for a in agents.list_active()] == ["alpha", "beta"]
    with transaction(raw_db(home)):
        taken = agents.insert(
            name="alpha",
            agent_id="spiffe://x/agent/o/alpha2",
            public_key="k",
            kid="kid2",
            charter_hash=alpha.charter_hash,
            created_at="2026-01-01T00:00:00.000Z",
        )
    assert taken is False
    body = agents.charter_body(alpha.charter_hash)
    assert body is not None and body.startswith(b"{")
    assert agents.charter_body("0" * 64) is None
    with pytest.raises(ConfigError, match="already stored"), transaction(raw_db(home)):
        agents.insert_charter(alpha.charter_hash, agent_name="alpha", body=body, issued_at="x")


def test_lockdown_repo_round_trip(home: Home) -> None:
    repo = LockdownRepo(raw_db(home))
    assert repo.latest() is None
    with transaction(raw_db(home)):
        lockdown_id = repo.insert(started_at="2026-01-02T00:00:00.000Z", reason=None)
        repo.add_agents(lockdown_id, ["beta", "alpha"])
        AgentRepo(raw_db(home)).mark_all_revoked(at="2026-01-02T00:00:00.000Z", reason="lockdown")
    latest = repo.latest()
    assert latest is not None and latest.active and latest.id == lockdown_id
    assert repo.agents_of(lockdown_id) == ["alpha", "beta"]
    assert repo.list_awaiting_reinstatement() == ["alpha", "beta"]
    assert repo.find_unreinstated("alpha") == lockdown_id
    alpha = AgentRepo(raw_db(home)).get("alpha")
    assert alpha is not None and alpha.status == "revoked"
    with transaction(raw_db(home)):
        repo.mark_lifted(lockdown_id, at="2026-01-02T01:00:00.000Z")
        repo.mark_reinstated("alpha", at="2026-01-02T01:00:00.000Z")
        AgentRepo(raw_db(home)).mark_active("alpha", alpha.charter_hash)
    latest = repo.latest()
    assert latest is not None and not latest.active
    assert repo.find_unreinstated("alpha") is None
    assert repo.list_awaiting_reinstatement() == ["beta"]


def test_approval_repo_round_trip_and_single_use(home: Home) -> None:
    repo = ApprovalRepo(raw_db(home))
    record = ApprovalRecord(
        id="apr-0123456789abcdef",
        mode="owner",
        agent="alpha",
        agent_id="spiffe://x/agent/o/alpha",
        tool="audit_query",
        action="audit.query",
        call_id="c1",
        args_hash="ab" * 32,
        scopes=("audit:read",),
        summary={"arguments": {"note": "café"}},
        status="pending",
        requested_at="2026-01-02T00:00:00.000Z",
        expires_at="2026-01-03T00:00:00.000Z",
        request_entry="cd" * 32,
    )
    with transaction(raw_db(home)):
        repo.insert(record)
    assert repo.get(record.id) == record
    assert repo.get("apr-ffffffffffffffff") is None
    assert repo.find_latest_for_call("alpha", "audit_query", "ab" * 32, "owner") == record
    assert repo.find_latest_for_call("alpha", "audit_query", "ab" * 32, "client") is None
    assert repo.list_pending_owner("2026-01-02T12:00:00.000Z") == [record]
    assert repo.list_pending_owner("2026-01-03T00:00:00.000Z") == []
    now = "2026-01-02T12:00:00.000Z"
    assert repo.mark_used(record.id, status="pending", call_id="c2", now=now)
    assert not repo.mark_used(record.id, status="pending", call_id="c3", now=now)
    used = repo.get(record.id)
    assert used is not None and (used.status, used.used_call) == ("used", "c2")
    assert repo.cancel_open(reason="lockdown", now=now) == 0
