"""``charter hook claude-code --agent NAME``: a Claude Code command hook (issue 23).

Reads one hook event on stdin, records it in the ledger signed by the agent
(:mod:`charter.tools.hooks.record`) and answers Claude Code on stdout / with its exit code.
Self-contained (``charter.cli._SELF_CONTAINED``): running it imports this module only, not
the rest of the CLI, because Claude Code starts it before and after every tool call.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from charter.cli._common import home_option, open_home, run_coroutine
from charter.tools.hooks import output
from charter.tools.hooks.events import MAX_EVENT_BYTES


def _read_stdin() -> bytes:
    """At most one byte more than a payload may hold (so a huge one is refused, not read)."""
    return sys.stdin.buffer.read(MAX_EVENT_BYTES + 1)


async def _run(agent: str, home: Path | None, raw: bytes) -> output.HookResponse:
    from charter.errors import CharterError
    from charter.tools.hooks import record

    try:
        async with await open_home(home) as h:
            return await record.handle(
                h, agent, raw, project_dir=os.environ.get("CLAUDE_PROJECT_DIR")
            )
    except CharterError as exc:  # the home cannot be opened: nothing can be recorded
        return output.fail_closed(
            f"Charter could not record this: {exc.public_message}", record.event_name(raw)
        )


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("hook")
    def hook() -> None:
        """Hooks that record an agent's actions in the ledger (Claude Code)."""

    @hook.command("claude-code")
    @click.option("--agent", required=True, help="The agent whose key signs the entries.")
    @home_option
    @click.pass_context
    def claude_code(ctx: click.Context, agent: str, home: Path | None) -> None:
        """Record one Claude Code hook event read on stdin, signed by AGENT.

        PreToolUse: a signed intent before the tool runs, then the owner's rules
        (`charter agent update NAME --hook-deny RULE`); if the intent cannot be recorded the
        tool is blocked (exit 2). See README, "Claude Code".
        """
        try:
            answer = run_coroutine(_run(agent, home, _read_stdin()))
        except Exception as exc:  # never a traceback on Claude Code's screen; fail closed
            answer = output.fail_closed(f"Charter hook failed: {type(exc).__name__}")
        if answer.stdout:
            sys.stdout.write(answer.stdout)
            sys.stdout.flush()
        if answer.stderr:
            sys.stderr.write(answer.stderr)
            sys.stderr.flush()
        if answer.exit_code:
            ctx.exit(answer.exit_code)
