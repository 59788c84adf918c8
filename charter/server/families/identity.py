"""``identity_*`` tools."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from charter.clock import rfc3339
from charter.server.app import READ_ONLY
from charter.server.calls import current_call
from charter.tools import delegation

if TYPE_CHECKING:
    from charter.server.app import CharterServer


class WhoAmI(BaseModel):
    """This agent's identity and what its owner allows it to do."""

    agent_id: str = Field(description="SPIFFE ID of this agent.")
    name: str
    owner: str = Field(description="The responsible human (owner id).")
    scopes: list[str] = Field(description="The ceiling of what this agent may do.")
    audiences: list[str] = Field(description="Services this agent may get tokens for.")
    charter_hash: str = Field(description="SHA-256 of the owner-signed charter.")
    key_id: str = Field(description="RFC 7638 thumbprint of this agent's signing key.")
    not_before: str
    not_after: str
    policy: dict[str, object] = Field(default_factory=dict)
    chain: list[str] = Field(
        default_factory=list,
        description="Who answers for this agent, owner first, then each delegating agent's id "
        "down to this one (a sub-agent's parent is the one before it).",
    )
    organization: str | None = Field(
        default=None,
        description="The organization that certified the owner (organization -> owner -> "
        "agent), or null for a home with a single owner.",
    )


def register(server: CharterServer) -> None:
    """Register the identity tools."""

    # No precheck: nothing is read outside Charter, and the call's entry (checked in its
    # transaction) must commit before a revoked agent could see the result.
    @server.charter_tool("identity_whoami", annotations=READ_ONLY, title="Who am I", precheck=False)
    async def identity_whoami() -> WhoAmI:
        """Show this agent's identity: its id, owner, scopes, audiences, charter validity and
        its chain of responsibility (owner → parent agent → this sub-agent).

        Use it first, to learn what you may do. Needs no scope. No side effects (the call is
        recorded in the audit ledger, like every call).
        """
        call = current_call()
        agent, home = call.agent, call.deps.home
        view = agent.charter
        chain = await delegation.chain(home, view)
        return WhoAmI(
            agent_id=view.agent_id,
            name=agent.name,
            owner=view.owner_id,
            scopes=list(view.scopes),
            audiences=list(view.audiences),
            charter_hash=view.hash,
            key_id=agent.key.kid,
            not_before=rfc3339(view.not_before),
            not_after=rfc3339(view.not_after),
            policy=view.policy,
            chain=chain,
            organization=call.deps.home.organization,
        )
