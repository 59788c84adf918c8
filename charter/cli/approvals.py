"""``charter approvals|approve|deny|lockdown``: the owner's decisions and kill switch."""

from __future__ import annotations

from pathlib import Path

import click

from charter.cli._common import (
    common_options,
    emit_json,
    emit_result,
    open_home,
    owner_passphrase,
    reason_option,
    run_async,
    yes_option,
)
from charter.cli.owner import owner_key_option
from charter.errors import InvalidInput
from charter.tools import approvals, lockdown, owners
from charter.tools.identity import parse_duration
from charter.tools.lockdown import LockdownState


def _print_state(state: LockdownState) -> None:
    if state.active:
        reason = f": {state.reason}" if state.reason else ""
        click.echo(f"LOCKED DOWN since {state.since}{reason}")
        click.echo(f"  revoked: {', '.join(state.agents) or '(no active agents)'}")
        click.echo("  lift with `charter lockdown --lift`, then `charter agent reinstate NAME`")
    else:
        click.echo("not locked down")
    if state.awaiting_reinstatement and not state.active:
        click.echo(f"  awaiting reinstatement: {', '.join(state.awaiting_reinstatement)}")


def _print_lifted(lifted: LockdownState, now: LockdownState) -> None:
    """What ``--lift`` ended: the lockdown (since, why, whom it revoked), and who still waits."""
    why = f" (reason: {lifted.reason})" if lifted.reason else ""
    click.echo(f"Lifted the lockdown in force since {lifted.since}{why}.")
    click.echo(f"  it had revoked: {', '.join(lifted.agents) or '(no active agents)'}")
    if now.awaiting_reinstatement:
        click.echo(
            f"  still revoked until you reinstate them: {', '.join(now.awaiting_reinstatement)}"
        )
        click.echo("  reinstate each with `charter agent reinstate NAME`")


def register(cli: click.Group) -> None:
    """Add the commands."""

    @cli.command("approvals")
    @owner_key_option
    @common_options(as_json=True)
    @run_async
    async def approvals_(owner_key: Path | None, home: Path | None, as_json: bool) -> None:
        """List calls waiting for your approval, each with its exact arguments and hash (in an
        organization home: those for your own agents)."""
        async with await open_home(home) as h:
            who = None
            if h.organization is not None:
                who = await owners.owner_of_key(h, owner_key)
            elif owner_key is not None:
                raise InvalidInput("--owner-key needs an organization home")
            pending = await approvals.list_pending(h, who)
        if as_json:
            emit_json([a.model_dump() for a in pending])
            return
        if not pending:
            click.echo("No approval requests are pending.")
        for a in pending:
            click.echo(f"{a.id}  requested {a.requested_at}")
            click.echo("  " + approvals.render(a).replace("\n", "\n  "))
            click.echo(f"  approve: charter approve {a.id}    deny: charter deny {a.id}\n")

    @cli.command("approve")
    @click.argument("approval_id")
    @click.option(
        "--valid-for",
        default="1h",
        show_default=True,
        help="How long the agent has to retry the approved call.",
    )
    @yes_option
    @owner_key_option
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def approve(
        approval_id: str,
        valid_for: str,
        yes: bool,
        owner_key: Path | None,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Approve APPROVAL_ID: sign it with your owner key; the agent's retry runs once."""
        async with await open_home(home) as h:
            pending = await approvals.find(h, approval_id)
            if not yes:
                click.echo(approvals.render(pending), err=True)
                if not click.confirm("Approve this exact call?", default=False, err=True):
                    raise click.Abort
            decided = await approvals.approve(
                h,
                approval_id,
                valid_for=parse_duration(valid_for),
                passphrase=(pp := owner_passphrase(h, passphrase_file)),
                by=await owners.acting_owner(h, owner_key=owner_key, passphrase=pp),
            )
        emit_result(
            decided,
            as_json,
            f"Approved {decided.id}: {decided.agent} may run {decided.tool} with these exact "
            f"arguments once, until {decided.expires_at}.",
        )

    @cli.command("deny")
    @click.argument("approval_id")
    @reason_option
    @owner_key_option
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def deny(
        approval_id: str,
        reason: str,
        owner_key: Path | None,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Deny APPROVAL_ID: sign the refusal with your owner key."""
        async with await open_home(home) as h:
            pp = owner_passphrase(h, passphrase_file)
            by = await owners.acting_owner(h, owner_key=owner_key, passphrase=pp)
            decided = await approvals.deny(h, approval_id, reason=reason, passphrase=pp, by=by)
        emit_result(decided, as_json, f"Denied {decided.id}.")

    @cli.command("lockdown")
    @reason_option
    @click.option("--lift", is_flag=True, help="End the lockdown (agents stay revoked).")
    @click.option("--status", is_flag=True, help="Only show whether Charter is locked down.")
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def lockdown_(
        reason: str,
        lift: bool,
        status: bool,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Kill switch: revoke every agent (and so every token) at once, signed by you.

        Running servers refuse the very next call. `--lift` ends the lockdown; then
        re-approve agents one by one with `charter agent reinstate NAME`.
        """
        if lift and status:
            raise click.UsageError("--lift and --status are exclusive")
        async with await open_home(home) as h:
            before = await lockdown.get_state(h)
            if status:
                state = before
            elif lift:
                state = await lockdown.lift(h, passphrase=owner_passphrase(h, passphrase_file))
            elif before.active:  # a second lockdown changes nothing and signs nothing
                state = before
            else:
                state = await lockdown.lockdown(
                    h, reason=reason, passphrase=owner_passphrase(h, passphrase_file)
                )
        again = not status and not lift and before.active
        if as_json:
            emit_json(state.model_dump() | ({"already_in_force": True} if again else {}))
        elif again:
            why = f" (reason: {state.reason})" if state.reason else " (no reason given)"
            click.echo(f"Already locked down since {state.since}{why}; nothing changed.")
            _print_state(state)
        elif lift:
            _print_lifted(before, state)
        else:
            _print_state(state)
