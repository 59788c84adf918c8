"""What a Charter server is made of, in one place: its tool families and its ledger hooks.

A reader finds here every tool family the server registers and every hook that runs beside
the calls (checkpoint signing, witness submission); nothing is discovered by scanning
packages. The pinned tool list and schemas live in ``tests/server/test_registry.py``.
"""

from __future__ import annotations

from typing import Any

from charter.server.app import CharterServer
from charter.server.deps import Deps
from charter.server.families import agent, audit, email, identity, secret, tlog, token
from charter.tools import tlog as checkpoints
from charter.tools import witnesses

#: Every agent-facing tool family, in registration order (the order of the tool list).
FAMILIES = (audit, email, identity, secret, tlog, token, agent)


def build_server(deps: Deps, **kwargs: Any) -> CharterServer:
    """Build the server with every tool family registered and its checkpoint hooks wired
    (``kwargs`` go to ``MCPServer``, e.g. the HTTP server's token verifier and auth
    settings)."""
    server = CharterServer(deps, **kwargs)
    for family in FAMILIES:
        family.register(server)
    _wire_checkpoints(deps)
    return server


def _wire_checkpoints(deps: Deps) -> None:
    """The ledger writer signs a checkpoint each time the ledger passes a multiple of
    ``Settings.checkpoint_every`` entries (on its own thread, after the commit, so no caller
    waits for it) and has the witnesses asked to cosign it (on the submitter's thread, with a
    timeout, so no caller waits for a witness either); the server signs one when it shuts down
    (after its last append), then stops the submitter."""
    home = deps.home
    every = home.settings.checkpoint_every
    if every > 0:
        deps.after_commit.append(
            checkpoints.periodic_checkpoints(every, on_signed=lambda tx: witnesses.kick(home, tx))
        )
    final, stop = checkpoints.final_checkpoint(home), witnesses.stop_submitter(home)

    async def shutdown() -> None:
        await final()
        await stop()

    deps.on_shutdown.append(shutdown)
