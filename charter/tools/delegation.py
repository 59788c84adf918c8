"""Sub-agents (issue 21): an agent with ``agent:delegate`` creates agents of its own, each with
its own key and a delegation charter the parent signs (AUDIT-FORMAT §12), and revokes them.

The child's key is made server-side through the signer seam (``agent:<name>``, like every
agent key); the parent's signature is made through the parent's key handle. Services return
plans (``charter/tools/plan.py``): the intent is signed by the parent, the key and charter are
made only after it is durable, and the child's row is committed with the ``ok`` outcome that
carries its charter, so the ledger alone proves the chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from charter.clock import rfc3339
from charter.errors import InvalidInput, NotFound, ScopeDenied
from charter.evidence.canonical import canonical_json
from charter.evidence.charters import (
    CharterView,
    agent_spiffe_id,
    charter_hash,
    validate_agent_name,
)
from charter.evidence.delegation import check_attenuation, make_delegation
from charter.evidence.jwk import public_jwk
from charter.home import Home
from charter.keys import KeyHandle, agent_ref
from charter.scopes import validate_scopes
from charter.storage.ports import Tx
from charter.tools.guards import refuse_during_lockdown
from charter.tools.identity import AgentContext
from charter.tools.plan import Plan

if TYPE_CHECKING:
    from charter.evidence.entries import Entry
    from charter.storage.ledger import Effect

#: Longest a sub-agent may be asked to live (it is cut to its parent's validity anyway).
MAX_TTL_SECONDS = 366 * 86400


class Delegated(BaseModel):
    """A sub-agent just created (serve it with `charter serve --agent <name>`)."""

    name: str = Field(description="The sub-agent's name: `charter serve --agent <name>`.")
    agent_id: str
    parent: str = Field(description="The parent agent's id (the caller).")
    scopes: list[str]
    audiences: list[str]
    not_after: str = Field(description="End of validity (never after the parent's).")
    charter_hash: str = Field(description="SHA-256 of the delegation charter.")


class RevokedDelegate(BaseModel):
    """A sub-agent revoked by its ancestor."""

    name: str
    agent_id: str
    status: str


@dataclasses.dataclass(frozen=True, slots=True)
class Made:
    out: Delegated
    charter: dict[str, Any]
    kid: str
    public_key: bytes


def _check_request(
    home: Home,
    parent: CharterView,
    name: str,
    scopes: list[str],
    audiences: list[str],
    ttl_seconds: int,
) -> tuple[list[str], list[str], dt.datetime, dt.datetime]:
    if isinstance(ttl_seconds, bool) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")
    validate_agent_name(name)
    scopes = validate_scopes(scopes)
    audiences = sorted(set(audiences))
    now = home.clock.now()
    not_after = min(now + dt.timedelta(seconds=ttl_seconds), parent.not_after)
    try:
        check_attenuation(
            parent,
            child_key=b"",
            scopes=scopes,
            audiences=audiences,
            not_before=now,
            not_after=not_after,
            depth=parent.depth + 1,
            policy=parent.policy,
        )
    except InvalidInput as exc:  # wider than the parent: a refusal, recorded as denied
        raise ScopeDenied(f"delegation refused: {exc.public_message}") from None
    return scopes, audiences, now, not_after


async def delegate_plan(
    home: Home,
    parent: AgentContext,
    name: str,
    *,
    scopes: list[str],
    audiences: list[str],
    ttl_seconds: int,
) -> Plan[Made]:
    """Check a delegation request against the parent's charter and plan it.

    Raises:
        InvalidInput: a bad name or ttl, an unknown scope, an existing agent, a lockdown.
        ScopeDenied: anything wider than the parent's charter (scopes by glob containment,
            audiences, validity, depth beyond the owner's ``delegation_depth``).
    """
    scopes, audiences, now, not_after = _check_request(
        home, parent.charter, name, scopes, audiences, ttl_seconds
    )

    def check(tx: Tx) -> None:
        refuse_during_lockdown(tx)
        if tx.agents.exists(name):
            raise InvalidInput(f"agent {name!r} already exists: choose another name")

    await home.read(check)
    agent_id = agent_spiffe_id(home.trust_domain, home.owner_id, name)

    async def act(_intent: Entry) -> Made:
        await home.read(check)  # never remove the key of an agent made meanwhile
        home.signer.remove(agent_ref(name))  # a leftover of an interrupted delegation
        key = KeyHandle.of(home.signer, home.signer.create(agent_ref(name)))
        doc = make_delegation(
            parent_key=parent.key,
            parent=parent.charter,
            agent_id=agent_id,
            agent_name=name,
            agent_public_key=key.public_key,
            scopes=scopes,
            audiences=audiences,
            not_before=now,
            not_after=not_after,
        )
        out = Delegated(
            name=name,
            agent_id=agent_id,
            parent=parent.agent_id,
            scopes=list(doc["scopes"]),
            audiences=list(doc["audiences"]),
            not_after=doc["not_after"],
            charter_hash=charter_hash(doc),
        )
        return Made(out, doc, key.kid, key.public_key)

    def store(made: Made) -> tuple[Effect, ...]:
        def effect(tx: Tx) -> None:
            h = made.out.charter_hash
            if not tx.agents.insert(
                name=name,
                agent_id=agent_id,
                public_key=public_jwk(made.public_key)["x"],
                kid=made.kid,
                charter_hash=h,
                created_at=rfc3339(now),
            ):
                raise InvalidInput(f"agent {name!r} already exists: choose another name")
            tx.agents.set_parent(
                name,
                parent=parent.name,
                parent_charter=parent.charter.hash,
                depth=int(made.charter["depth"]),
            )
            tx.agents.insert_charter(
                h, agent_name=name, body=canonical_json(made.charter), issued_at=rfc3339(now)
            )

        return (effect,)

    return Plan(
        details={"agent": name, "scopes": scopes, "audiences": audiences},
        act=act,
        success_effects=store,
        outcome=lambda made: {
            "agent": name,
            "agent_id": agent_id,
            "charter": made.charter,
            "charter_hash": made.out.charter_hash,
        },
    )


async def revoke_delegate_plan(
    home: Home, caller: AgentContext, name: str
) -> Plan[RevokedDelegate]:
    """Plan the revocation of sub-agent ``name`` by ``caller``, one of its ancestors.

    Raises:
        NotFound: no such agent.  ScopeDenied: ``caller`` is not an ancestor of it.
        InvalidInput: already revoked.
    """

    def check(tx: Tx) -> tuple[str, str]:
        record = tx.agents.get(name)
        if record is None or name not in tx.agents.descendants(caller.name):
            if record is None:
                raise NotFound(f"no agent named {name!r}")
            raise ScopeDenied(f"agent {name!r} is not one of this agent's sub-agents")
        if record.status != "active":
            raise InvalidInput(f"agent {name!r} is already revoked")
        return record.agent_id, record.charter_hash

    agent_id, _charter = await home.read(check)
    now = rfc3339(home.clock.now())
    out = RevokedDelegate(name=name, agent_id=agent_id, status="revoked")

    async def act(_intent: Entry) -> RevokedDelegate:
        return out

    def effect(tx: Tx) -> None:
        tx.agents.mark_revoked(name, at=now, reason=f"revoked by its ancestor {caller.name}")

    return Plan(
        details={"agent": name},
        act=act,
        success_effects=lambda _out: (effect,),
        outcome=lambda _out: {"agent": name, "agent_id": agent_id},
    )


async def chain(home: Home, view: CharterView) -> list[str]:
    """:func:`chain_of`, reading storage only for a sub-agent (an owner-chartered agent's
    chain is its owner and itself)."""
    if view.parent_id is None:
        return [home.owner_id, view.agent_id]
    return await home.read(lambda tx: chain_of(home, tx, view))


def chain_of(home: Home, tx: Tx, view: CharterView) -> list[str]:
    """The chain of responsibility, owner first: owner id, then each agent id down to
    ``view``'s (every link was verified when ``view`` was loaded)."""
    chain = [view.agent_id]
    doc = view.doc
    while doc.get("type") == "delegation":
        chain.append(str(doc["parent"]["id"]))
        body = tx.agents.charter_body(str(doc["parent"]["charter"]))
        if body is None:
            break
        doc = json.loads(body)
    return [home.owner_id, *reversed(chain)]
