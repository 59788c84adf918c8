"""The witness's HTTP app: ``POST /add-checkpoint`` (c2sp.org/tlog-witness) on starlette.

The decision runs on a worker thread (it signs and commits to SQLite); bodies larger than
:data:`~charter.evidence.c2sp.witness.MAX_REQUEST_BYTES` are refused before they are read in
full. Unexpected errors answer 500 with no detail (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from charter.evidence.c2sp.witness import MAX_REQUEST_BYTES

if TYPE_CHECKING:
    from charter.witness.core import Witness

log = logging.getLogger(__name__)


def make_app(witness: Witness) -> Starlette:
    """The ASGI app serving ``witness``."""

    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return Response("request body is too large\n", status_code=413)
        try:
            answer = await anyio.to_thread.run_sync(witness.add_checkpoint, body)
        except Exception:
            log.exception("add-checkpoint failed")
            return Response("internal error\n", status_code=500)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"])])


def serve(witness: Witness, host: str, port: int) -> None:
    """Serve until interrupted."""
    import uvicorn

    uvicorn.run(make_app(witness), host=host, port=port, log_level="warning", access_log=False)
