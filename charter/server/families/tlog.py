"""``audit_checkpoint`` and ``audit_prove``: the transparency side of the audit family.

The server's checkpoint hooks are wired in :mod:`charter.server.wiring`, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from charter.server.app import READ_ONLY
from charter.server.calls import current_call
from charter.tools import tlog, witnesses

if TYPE_CHECKING:
    from charter.server.app import CharterServer
    from charter.storage.ports import Tx

#: Entry positions are JSON-safe integers.
MAX_SEQ = 2**53 - 1


def register(server: CharterServer) -> None:
    """Register the tools."""

    @server.charter_tool(
        "audit_checkpoint", annotations=READ_ONLY, title="Get a signed checkpoint of the ledger"
    )
    async def audit_checkpoint() -> tlog.CheckpointOut:
        """Get a checkpoint of the whole audit ledger, signed by the log key.

        A checkpoint (C2SP signed note: origin, size, Merkle root) commits the log to every
        entry so far; whoever keeps it can later detect a cut-off tail or a forked history.
        Returns the latest checkpoint, signing a new one first if the ledger has grown since,
        with the cosignatures of the owner's witnesses gathered so far (a new checkpoint is
        sent to them in the background: call again later for theirs). Needs scope
        `audit:read`. Side effects: none beyond the log's own bookkeeping (a new checkpoint
        row, a request to each witness).
        """
        call = current_call()
        call.require("audit:read")
        home = call.deps.home

        def work(tx: Tx) -> tlog.CheckpointOut:
            out = tlog.sign_checkpoint(home, tx)
            witnesses.kick(home, tx)
            return out

        return await home.write(work)

    @server.charter_tool(
        "audit_prove",
        annotations=READ_ONLY,
        title="Prove one of my entries is in the ledger",
        visible_args=("seq", "tree_size"),
    )
    async def audit_prove(
        seq: Annotated[int, Field(ge=0, le=MAX_SEQ, description="The entry's seq.")],
        tree_size: Annotated[
            int | None,
            Field(
                ge=1,
                le=MAX_SEQ,
                description="Size of an earlier checkpoint to prove against; omit for the latest.",
            ),
        ] = None,
    ) -> tlog.InclusionOut:
        """Prove that one of your own ledger entries is included in a signed checkpoint.

        Returns the entry's bytes, its RFC 9162 inclusion proof and the checkpoint, also as
        a `c2sp.org/tlog-proof@v1` file anyone can verify offline with the log's key. Only
        your own entries (as listed by audit_query) can be proven. Without `tree_size`, uses
        the latest checkpoint, signing one first if none covers the entry yet. Needs scope
        `audit:read`. No other side effects.
        """
        call = current_call()
        call.require("audit:read")
        home, actor = call.deps.home, call.agent.agent_id

        return await tlog.prove(home, seq, tree_size, actor=actor)
