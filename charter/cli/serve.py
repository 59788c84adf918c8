"""``charter serve``: the MCP server over stdio (HTTP arrives with the tokens feature)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from charter.cli._common import handle_errors, home_option, settings
from charter.errors import ConfigError
from charter.home import Home
from charter.server.app import build_server
from charter.server.deps import Deps
from charter.tools.identity import AgentContext, load_agent


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("serve")
    @click.option(
        "--agent",
        default=None,
        help="The agent this stdio server acts as (default: $CHARTER_AGENT).",
    )
    @click.option(
        "--log-level",
        default="WARNING",
        show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    )
    @home_option
    @handle_errors
    def serve(agent: str | None, log_level: str, home: Path | None) -> None:
        """Serve MCP over stdio as one agent. stdout carries only JSON-RPC; logs go to stderr."""
        logging.basicConfig(
            stream=sys.stderr,
            level=log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        s = settings(home, agent)
        if not s.agent:
            raise ConfigError("name the agent to serve: --agent NAME or CHARTER_AGENT=NAME")
        h = Home.open(s)
        ctx = load_agent(h, s.agent)
        run_stdio(h, ctx)


def run_stdio(home: Home, agent: AgentContext) -> None:
    """Serve ``agent`` over stdio until the client disconnects."""

    async def resolve() -> AgentContext:
        return agent

    server = build_server(Deps(home=home, resolve_agent=resolve))
    try:
        server.run("stdio")
    finally:
        home.close()
