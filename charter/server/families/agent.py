"""``agent_*`` tools: sub-agents (issue 21, AUDIT-FORMAT §12)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.types import ToolAnnotations
from pydantic import Field

from charter.errors import ScopeDenied
from charter.scopes import is_subset
from charter.server.calls import current_call
from charter.tools import delegation

if TYPE_CHECKING:
    from charter.server.app import CharterServer

CREATES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
REVOKES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
_SCOPE = "agent:delegate"


def register(server: CharterServer) -> None:
    """Register the sub-agent tools."""

    @server.charter_tool(
        "agent_delegate",
        annotations=CREATES,
        title="Create a sub-agent",
        visible_args=("name", "scopes", "audiences", "ttl_seconds"),
    )
    async def agent_delegate(
        name: Annotated[
            str,
            Field(
                min_length=1,
                max_length=63,
                description="The sub-agent's name (lowercase letters, digits, '.', '_', '-').",
            ),
        ],
        scopes: Annotated[
            list[Annotated[str, Field(max_length=256)]],
            Field(
                max_length=32,
                description="Its scopes: each within yours (a glob may only be narrowed). "
                "Give only what its task needs.",
            ),
        ],
        audiences: Annotated[
            list[Annotated[str, Field(max_length=512)]],
            Field(max_length=32, description="Services it may get tokens for; among yours."),
        ] = [],  # noqa: B006 - pydantic copies defaults
        ttl_seconds: Annotated[
            int,
            Field(
                ge=1,
                le=delegation.MAX_TTL_SECONDS,
                description="Its lifetime in seconds; never beyond your own charter's end.",
            ),
        ] = 3600,
    ) -> delegation.Delegated:
        """Create a sub-agent that acts as itself: its own key and a charter YOU sign,
        narrower than yours, traceable to your owner.

        Use it when you hand a part of your task to another agent (a worker, a subagent):
        give it its own identity instead of your token, and only the scopes, audiences and
        time that part needs. Serve it with `charter serve --agent <name>`. Anything wider
        than your charter is refused. Needs scope `agent:delegate` (and the owner's depth
        limit). Side effect: a new agent key and charter, recorded in the audit ledger.
        Revoke it with `agent_revoke_delegate` when its part is done.
        """
        call = current_call()
        call.require(_SCOPE)
        agent = call.agent
        limit = agent.token_scopes
        if limit is not None and not is_subset(scopes, limit):
            raise ScopeDenied("delegation refused: a scope is wider than the calling token's")
        plan = await delegation.delegate_plan(
            call.deps.home,
            agent,
            name,
            scopes=scopes,
            audiences=audiences,
            ttl_seconds=ttl_seconds,
        )
        return (await call.run(plan)).out

    @server.charter_tool(
        "agent_revoke_delegate",
        annotations=REVOKES,
        title="Revoke a sub-agent",
        visible_args=("name",),
    )
    async def agent_revoke_delegate(
        name: Annotated[
            str, Field(min_length=1, max_length=63, description="The sub-agent to revoke.")
        ],
    ) -> delegation.RevokedDelegate:
        """Revoke one of your sub-agents (or theirs): its next call, and its own sub-agents'
        next calls, are refused. Use it when the sub-agent's part of the task is done or it
        misbehaves. Needs scope `agent:delegate`. Side effect: recorded in the audit ledger;
        final (delegate a new sub-agent if needed).
        """
        call = current_call()
        call.require(_SCOPE)
        plan = await delegation.revoke_delegate_plan(call.deps.home, call.agent, name)
        return await call.run(plan)
