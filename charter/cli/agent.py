"""``charter agent add|update|list|show|revoke|reinstate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from charter.cli._common import (
    common_options,
    console,
    emit_json,
    emit_result,
    open_home,
    owner_passphrase,
    reason_option,
    run_async,
    yes_option,
)
from charter.cli.mail import EmailOptions, email_options
from charter.cli.owner import as_org_option, owner_key_option
from charter.errors import InvalidInput
from charter.tools import approvals, identity, lockdown, owners
from charter.tools.hooks import record as hooks_record
from charter.tools.identity import AgentInfo
from charter.tools.os_users import check_os_users, with_os_users

#: ``--approve`` (add/update): which calls need a human yes (docs/APPROVALS.md).
approve_option = click.option(
    "--approve",
    "approve",
    multiple=True,
    metavar="SCOPE_PATTERN[=client|owner]",
    help="Calls needing a scope that matches the pattern need a human's approval: client "
    "(asked through the MCP client, the default) or owner (`charter approve ID`). Repeatable.",
)
#: ``--hook-deny`` / ``--hook-ask`` (add/update): the owner's rules for the agent's Claude
#: Code tool calls, in Claude Code's permission syntax, signed into the charter's policy.
hook_deny_option = click.option(
    "--hook-deny",
    "hook_deny",
    multiple=True,
    metavar="RULE",
    help="Claude Code hook: deny tool calls matching RULE, e.g. 'Bash(rm:*)', "
    "'Edit(./secrets/**)', 'WebFetch', 'mcp__server__tool'. Repeatable; replaces the list.",
)
hook_ask_option = click.option(
    "--hook-ask",
    "hook_ask",
    multiple=True,
    metavar="RULE",
    help="Claude Code hook: ask the user before tool calls matching RULE. Repeatable; "
    "replaces the list.",
)
hook_prompt_option = click.option(
    "--hook-prompt-text/--no-hook-prompt-text",
    "hook_prompt_text",
    default=None,
    help="Claude Code hook: record prompts' text (redacted), not only their hash.",
)


def _hook_policy(
    policy: dict[str, Any],
    deny: tuple[str, ...],
    ask: tuple[str, ...],
    prompt_text: bool | None,
    *,
    clear: bool = False,
) -> dict[str, Any] | None:
    """``policy`` with the hook options applied, or None when none was given."""
    if not (deny or ask or clear) and prompt_text is None:
        return None
    return hooks_record.with_rules(
        policy,
        deny=list(deny) if deny or clear else None,
        ask=list(ask) if ask or clear else None,
        prompt_text=prompt_text,
    )


#: ``--os-user`` (add/update): the OS accounts `charter daemon` may serve the agent to.
os_user_option = click.option(
    "--os-user",
    "os_users",
    multiple=True,
    metavar="USER",
    help="An OS account that may act as this agent through `charter daemon` (repeatable; on "
    "update it replaces the list; signed into the charter).",
)
#: ``--no-os-user`` (update): serve the agent to no other account.
no_os_user_option = click.option(
    "--no-os-user", is_flag=True, help="Unbind every OS account (the daemon serves it to none)."
)


def _emit_agent(info: AgentInfo, as_json: bool) -> None:
    """Print ``info`` as JSON with ``--json``, else as :func:`_print_agent` lines."""
    if as_json:
        emit_json(info.model_dump())
    else:
        _print_agent(info)


def _print_agent(info: AgentInfo) -> None:
    click.echo(f"{info.name}  ({info.status})")
    click.echo(f"  id:        {info.agent_id}")
    click.echo(f"  owner:     {info.owner}")
    click.echo(f"  key id:    {info.kid}")
    click.echo(f"  scopes:    {' '.join(info.scopes) or '(none)'}")
    click.echo(f"  audiences: {' '.join(info.audiences) or '(none)'}")
    click.echo(f"  valid:     {info.not_before} .. {info.not_after}")
    click.echo(f"  charter:   {info.charter_hash}")
    if info.parent:
        click.echo(f"  parent:    {info.parent} (a sub-agent; its charter is signed by its parent)")
    for line in _policy_lines(info.policy):
        click.echo(f"  {line}")
    if info.revoked_at:
        click.echo(f"  revoked:   {info.revoked_at} {info.revoked_reason or ''}".rstrip())


def _policy_lines(policy: dict[str, Any]) -> list[str]:
    """The charter's policy as ``key: value`` lines a human reads (not a Python dict)."""
    lines = []
    for key, value in policy.items():
        if key == "approvals" and isinstance(value, list):
            rules = [f"{r.get('pattern')} ({r.get('mode')})" for r in value if isinstance(r, dict)]
            text = ", ".join(rules)
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
        else:
            text = _plain(value)
        lines.append(f"{key + ':':11}{text or '(none)'}")
    return lines


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_plain(v) for v in value) or "(none)"
    return value if isinstance(value, str) else json.dumps(value)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


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
    @approve_option
    @os_user_option
    @hook_deny_option
    @hook_ask_option
    @hook_prompt_option
    @click.option(
        "--delegation-depth",
        type=click.IntRange(0, 8),
        default=None,
        help="How deep its sub-agents may delegate (with --scope agent:delegate; default 1).",
    )
    @owner_key_option
    @common_options(passphrase=True, as_json=True)
    @email_options
    @run_async
    async def add(
        name: str,
        scopes: tuple[str, ...],
        audiences: tuple[str, ...],
        valid_for: str,
        delegation_depth: int | None,
        approve: tuple[str, ...],
        os_users: tuple[str, ...],
        hook_deny: tuple[str, ...],
        hook_ask: tuple[str, ...],
        hook_prompt_text: bool | None,
        owner_key: Path | None,
        email: EmailOptions,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Create agent NAME with its own key and an owner-signed charter."""
        rules = [approvals.parse_rule(r) for r in approve]
        start = _hook_policy({}, hook_deny, hook_ask, hook_prompt_text) or {}
        async with await open_home(home) as h:
            policy = await email.apply(h, name, approvals.with_rules(start, rules))
            policy = with_os_users(policy, check_os_users(os_users))
            if delegation_depth is not None:
                policy = policy | {"delegation_depth": delegation_depth}
            warnings = await identity.check_settings(
                h,
                scopes=list(scopes),
                audiences=list(audiences),
                policy=policy,
                new_rules=tuple(r.pattern for r in rules),
            )
            if delegation_depth is not None and "agent:delegate" not in scopes:
                warnings.append("--delegation-depth has no effect without --scope agent:delegate")
            info = await identity.add_agent(
                h,
                name,
                scopes=list(scopes),
                audiences=list(audiences),
                valid_for=identity.parse_duration(valid_for),
                policy=policy,
                passphrase=(pp := owner_passphrase(h, passphrase_file)),
                by=await owners.acting_owner(h, owner_key=owner_key, passphrase=pp),
            )
        if as_json:
            emit_json(info.model_dump() | ({"warnings": warnings} if warnings else {}))
        else:
            _print_agent(info)
            _warn(warnings)
            click.echo(f"Serve it with: charter serve --agent {name}")

    @agent.command("update")
    @click.argument("name")
    @click.option("--scope", "scopes", multiple=True, help="Replace the scopes (repeatable).")
    @click.option("--audience", "audiences", multiple=True, help="Replace the audiences.")
    @click.option("--valid-for", default=None, help="New validity from now, e.g. 90d.")
    @approve_option
    @click.option("--no-approvals", is_flag=True, help="Remove every approval rule.")
    @os_user_option
    @no_os_user_option
    @hook_deny_option
    @hook_ask_option
    @hook_prompt_option
    @click.option("--no-hook-rules", is_flag=True, help="Remove every hook deny/ask rule.")
    @owner_key_option
    @common_options(passphrase=True, as_json=True)
    @email_options
    @run_async
    async def update(
        name: str,
        scopes: tuple[str, ...],
        audiences: tuple[str, ...],
        valid_for: str | None,
        approve: tuple[str, ...],
        no_approvals: bool,
        os_users: tuple[str, ...],
        no_os_user: bool,
        hook_deny: tuple[str, ...],
        hook_ask: tuple[str, ...],
        hook_prompt_text: bool | None,
        no_hook_rules: bool,
        owner_key: Path | None,
        email: EmailOptions,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Re-issue NAME's charter with new grants (same key); the old charter stops working.

        ``--approve`` replaces the approval rules; without it they are kept.
        """
        rules = [approvals.parse_rule(r) for r in approve]
        async with await open_home(home) as h:
            old = await identity.get_agent(h, name)
            policy = None
            if rules or no_approvals:
                policy = approvals.with_rules(old.policy, rules)
            if email.given:
                policy = await email.apply(h, name, old.policy if policy is None else policy)
            if os_users or no_os_user:
                if os_users and no_os_user:
                    raise InvalidInput("--os-user and --no-os-user contradict each other")
                users = check_os_users(os_users)
                policy = with_os_users(old.policy if policy is None else policy, users)
            hooked = _hook_policy(
                old.policy if policy is None else policy,
                hook_deny,
                hook_ask,
                hook_prompt_text,
                clear=no_hook_rules,
            )
            policy = policy if hooked is None else hooked
            warnings = await identity.check_settings(
                h,
                scopes=list(scopes) or old.scopes,
                audiences=list(audiences) or old.audiences,
                policy=old.policy if policy is None else policy,
                new_rules=tuple(r.pattern for r in rules),
            )
            stopped = await identity.live_tokens(h, old.charter_hash)
            info = await identity.update_agent(
                h,
                name,
                scopes=list(scopes) or None,
                audiences=list(audiences) or None,
                valid_for=identity.parse_duration(valid_for) if valid_for else None,
                policy=policy,
                passphrase=(pp := owner_passphrase(h, passphrase_file)),
                by=await owners.acting_owner(h, owner_key=owner_key, passphrase=pp),
            )
        if as_json:
            extra = {"warnings": warnings} if warnings else {}
            emit_json(info.model_dump() | {"old_charter_live_tokens": stopped} | extra)
            return
        _print_agent(info)
        _warn(warnings)
        # A token names the charter it was issued under; only the current one is accepted.
        click.echo(
            f"Tokens issued under the old charter stop working now ({stopped} live "
            f"token{'' if stopped == 1 else 's'} affected); issue new ones with "
            "`charter token issue`."
        )

    @agent.command("list")
    @common_options(as_json=True)
    @run_async
    async def list_(home: Path | None, as_json: bool) -> None:
        """List agents."""
        async with await open_home(home) as h:
            agents = await identity.list_agents(h)
        if as_json:
            emit_json([a.model_dump() for a in agents])
            return
        table = Table("name", "status", "scopes", "valid until", "id")
        for depth, a in identity.tree_order(agents):  # sub-agents under their parents
            name = "  " * (depth - 1) + "└─ " + a.name if depth else a.name
            table.add_row(name, a.status, " ".join(a.scopes), a.not_after, a.agent_id)
        console().print(table)

    @agent.command("show")
    @click.argument("name")
    @common_options(as_json=True)
    @run_async
    async def show(name: str, home: Path | None, as_json: bool) -> None:
        """Show one agent and its charter."""
        async with await open_home(home) as h:
            info = await identity.get_agent(h, name)
        _emit_agent(info, as_json)

    @agent.command("revoke")
    @click.argument("name")
    @reason_option
    @yes_option
    @owner_key_option
    @as_org_option
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def revoke(
        name: str,
        reason: str,
        yes: bool,
        owner_key: Path | None,
        as_org: bool,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Revoke NAME: every later call by it is refused and recorded as denied."""
        async with await open_home(
            home
        ) as h:  # a missing or revoked agent fails before the question
            if (await identity.get_agent(h, name)).status == "revoked":
                raise InvalidInput(f"agent {name!r} is already revoked")
        if not yes and not click.confirm(
            f"Revoke agent {name!r}? This cannot be undone", default=False, err=True
        ):
            raise click.Abort
        async with await open_home(home) as h:
            pp = owner_passphrase(h, passphrase_file)
            by = await owners.acting_owner(h, owner_key=owner_key, as_org=as_org, passphrase=pp)
            info = await identity.revoke_agent(h, name, reason=reason, passphrase=pp, by=by)
        emit_result(info, as_json, f"Revoked {name} at {info.revoked_at}")

    @agent.command("reinstate")
    @click.argument("name")
    @click.option("--scope", "scopes", multiple=True, help="Replace the scopes (repeatable).")
    @click.option("--audience", "audiences", multiple=True, help="Replace the audiences.")
    @click.option("--valid-for", default=None, help="Validity from now (default: as before).")
    @owner_key_option
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def reinstate(
        name: str,
        scopes: tuple[str, ...],
        audiences: tuple[str, ...],
        valid_for: str | None,
        owner_key: Path | None,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Re-approve NAME after a lifted lockdown: a new owner-signed charter, same key."""
        async with await open_home(home) as h:
            info = await lockdown.reinstate_agent(
                h,
                name,
                scopes=list(scopes) or None,
                audiences=list(audiences) or None,
                valid_for=identity.parse_duration(valid_for) if valid_for else None,
                passphrase=(pp := owner_passphrase(h, passphrase_file)),
                by=await owners.acting_owner(h, owner_key=owner_key, passphrase=pp),
            )
        _emit_agent(info, as_json)
