"""``audit_*`` tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from charter.server.app import READ_ONLY
from charter.server.calls import current_call
from charter.tools import audit

if TYPE_CHECKING:
    from charter.server.app import CharterServer


def register(server: CharterServer) -> None:
    """Register the audit tools."""

    @server.charter_tool(
        "audit_query",
        annotations=READ_ONLY,
        title="Query my audit trail",
        visible_args=("action", "outcome", "since", "until", "limit", "cursor", "session"),
    )
    async def audit_query(
        action: Annotated[
            str | None, Field(max_length=64, description="Only this action, e.g. 'email.send'.")
        ] = None,
        outcome: Annotated[
            Literal["ok", "denied", "error"] | None, Field(description="Only this outcome.")
        ] = None,
        since: Annotated[
            str | None, Field(max_length=40, description="RFC 3339 time; entries at or after it.")
        ] = None,
        until: Annotated[
            str | None, Field(max_length=40, description="RFC 3339 time; entries before it.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=audit.MAX_QUERY_LIMIT)] = 50,
        cursor: Annotated[
            int,
            # Bounded: SQLite integers are 64-bit, and a seq is a JSON-safe integer.
            Field(ge=0, le=2**53 - 1, description="`next_cursor` from the previous page."),
        ] = 0,
        session: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=256,
                description="Only entries of this session (e.g. a Claude Code session id).",
            ),
        ] = None,
    ) -> audit.QueryPage:
        """List this agent's own entries in the signed audit ledger, oldest first.

        Use it to check what you did and what was refused. Needs scope `audit:read`. You see
        only your own entries. No side effects.
        """
        call = current_call()
        call.require("audit:read")
        return await audit.query(
            call.deps.home,
            actor=call.agent.agent_id,
            action=action,
            outcome=outcome,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
            session=session,
        )

    @server.charter_tool("audit_verify", annotations=READ_ONLY, title="Verify the audit ledger")
    async def audit_verify() -> audit.VerifyOut:
        """Verify the whole ledger: every signature, the hash chain and every charter.

        Returns the size and head hash, or the first failing entry and why. Needs scope
        `audit:read`. No side effects; may take a while on a large ledger.
        """
        call = current_call()
        call.require("audit:read")
        # On a connection and thread of its own: the server's other calls go on meanwhile.
        return await audit.verify_out(call.deps.home, private=True)
