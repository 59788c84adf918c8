"""``charter agent add|update|list|show|revoke``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from charter.cli._common import (
    emit_json,
    handle_errors,
    home_option,
    json_option,
    open_home,
    owner_passphrase,
    passphrase_option,
)
from charter.tools import identity
from charter.tools.identity import AgentInfo


def _print_agent(info: AgentInfo) -> None:
    click.echo(f"{info.name}  ({info.status})")
    click.echo(f"  id:        {info.agent_id}")
    click.echo(f"  owner:     {info.owner}")
    click.echo(f"  key id:    {info.kid}")
    click.echo(f"  scopes:    {' '.join(info.scopes) or '(none)'}")
    click.echo(f"  audiences: {' '.join(info.audiences) or '(none)'}")
    click.echo(f"  valid:     {info.not_before} .. {info.not_after}")
    click.echo(f"  charter:   {info.charter_hash}")
    if info.policy:
        click.echo(f"  policy:    {info.policy}")
    if info.revoked_at:
        click.echo(f"  revoked:   {info.revoked_at} {info.revoked_reason or ''}".rstrip())


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("agent")
    def agent() -> None:
        """Register, inspect and revoke agents."""

    @agent.command("add")
    @click.argument("name")
    @click.option("--scope", "scopes", multiple=True, help="A scope to grant (repeatable).")
    @click.option(
        "--audience",
        "audiences",
        multiple=True,
        help="A service URL the agent may get tokens for (repeatable).",
    )
    @click.option(
        "--valid-for", default="90d", show_default=True, help="Charter validity, e.g. 90d, 12h."
    )
    @home_option
    @passphrase_option
    @json_option
    @handle_errors
    def add(
        name: str,
        scopes: tuple[str, ...],
        audiences: tuple[str, ...],
        valid_for: str,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Create agent NAME with its own key and an owner-signed charter."""
        with open_home(home) as h:
            info = identity.add_agent(
                h,
                name,
                scopes=list(scopes),
                audiences=list(audiences),
                valid_for=identity.parse_duration(valid_for),
                passphrase=owner_passphrase(h, passphrase_file),
            )
        if as_json:
            emit_json(info.model_dump())
        else:
            _print_agent(info)
            click.echo(f"Serve it with: charter serve --agent {name}")

    @agent.command("update")
    @click.argument("name")
    @click.option("--scope", "scopes", multiple=True, help="Replace the scopes (repeatable).")
    @click.option("--audience", "audiences", multiple=True, help="Replace the audiences.")
    @click.option("--valid-for", default=None, help="New validity from now, e.g. 90d.")
    @home_option
    @passphrase_option
    @json_option
    @handle_errors
    def update(
        name: str,
        scopes: tuple[str, ...],
        audiences: tuple[str, ...],
        valid_for: str | None,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Re-issue NAME's charter with new grants (same key); the old charter stops working."""
        with open_home(home) as h:
            info = identity.update_agent(
                h,
                name,
                scopes=list(scopes) or None,
                audiences=list(audiences) or None,
                valid_for=identity.parse_duration(valid_for) if valid_for else None,
                passphrase=owner_passphrase(h, passphrase_file),
            )
        if as_json:
            emit_json(info.model_dump())
        else:
            _print_agent(info)

    @agent.command("list")
    @home_option
    @json_option
    @handle_errors
    def list_(home: Path | None, as_json: bool) -> None:
        """List agents."""
        with open_home(home) as h:
            agents = identity.list_agents(h)
        if as_json:
            emit_json([a.model_dump() for a in agents])
            return
        table = Table("name", "status", "scopes", "valid until", "id")
        for a in agents:
            table.add_row(a.name, a.status, " ".join(a.scopes), a.not_after, a.agent_id)
        Console().print(table)

    @agent.command("show")
    @click.argument("name")
    @home_option
    @json_option
    @handle_errors
    def show(name: str, home: Path | None, as_json: bool) -> None:
        """Show one agent and its charter."""
        with open_home(home) as h:
            info = identity.get_agent(h, name)
        if as_json:
            emit_json(info.model_dump())
        else:
            _print_agent(info)

    @agent.command("revoke")
    @click.argument("name")
    @click.option("--reason", default="", help="Why (recorded in the ledger).")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @home_option
    @passphrase_option
    @json_option
    @handle_errors
    def revoke(
        name: str,
        reason: str,
        yes: bool,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Revoke NAME: every later call by it is refused and recorded as denied."""
        if not yes and not click.confirm(
            f"Revoke agent {name!r}? This cannot be undone", default=False, err=True
        ):
            raise click.Abort
        with open_home(home) as h:
            info = identity.revoke_agent(
                h, name, reason=reason, passphrase=owner_passphrase(h, passphrase_file)
            )
        if as_json:
            emit_json(info.model_dump())
        else:
            click.echo(f"Revoked {name} at {info.revoked_at}")
