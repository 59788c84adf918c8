"""``charter hook claude-code --agent NAME``: a Claude Code command hook (issue 23).

Reads one hook event on stdin, records it in the ledger signed by the agent
(:mod:`charter.tools.hooks.record`) and answers Claude Code on stdout / with its exit code.
Self-contained (``charter.cli._SELF_CONTAINED``): running it imports this module only, not
the rest of the CLI, because Claude Code starts it before and after every tool call. The
usual spelling runs without click (:func:`fast_main`, from :func:`charter.cli.main`): click
and what it imports cost about a tenth of the hook's round trip.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charter.tools.hooks import output
from charter.tools.hooks.events import MAX_EVENT_BYTES

if TYPE_CHECKING:
    import click

#: The options :func:`fast_main` reads itself; anything else goes through click.
_FAST_OPTIONS = ("--agent", "--home")


def _read_stdin() -> bytes:
    """At most one byte more than a payload may hold (so a huge one is refused, not read)."""
    return sys.stdin.buffer.read(MAX_EVENT_BYTES + 1)


async def _run(agent: str, home: Path | None, raw: bytes) -> output.HookResponse:
    from charter.config import Settings
    from charter.errors import CharterError
    from charter.home import Home
    from charter.tools.hooks import record

    try:  # as charter.cli._common.open_home(home), without importing click
        async with await Home.open(Settings.from_env(os.environ, home=home)) as h:
            return await record.handle(
                h, agent, raw, project_dir=os.environ.get("CLAUDE_PROJECT_DIR")
            )
    except CharterError as exc:  # the home cannot be opened: nothing can be recorded
        return output.fail_closed(
            f"Charter could not record this: {exc.public_message}", record.event_name(raw)
        )


Runner = Callable[[Coroutine[Any, Any, output.HookResponse]], output.HookResponse]


def _answer(agent: str, home: Path | None, run: Runner) -> int:
    """Run the hook (``run``: how to run a coroutine), write its answer; its exit code."""
    try:
        answer = run(_run(agent, home, _read_stdin()))
    except Exception as exc:  # never a traceback on Claude Code's screen; fail closed
        answer = output.fail_closed(f"Charter hook failed: {type(exc).__name__}")
    if answer.stdout:
        sys.stdout.write(answer.stdout)
        sys.stdout.flush()
    if answer.stderr:
        sys.stderr.write(answer.stderr)
        sys.stderr.flush()
    return int(answer.exit_code)


def fast_main(args: list[str]) -> int | None:
    """``charter hook claude-code ARGS`` without click: its exit code, or None when ``args``
    are not exactly ``--agent NAME`` and optionally ``--home DIR`` (either as ``--opt=value``),
    each once, non-empty, ``DIR`` not a file; then click parses them as before (help, usage
    errors). Also None inside a running event loop (a test driving the CLI in-process)."""
    try:
        asyncio.get_running_loop()
        return None
    except RuntimeError:
        pass
    found: dict[str, str] = {}
    rest = list(args)
    while rest:
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name not in _FAST_OPTIONS or name in found:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        found[name] = value
    if "--agent" not in found:
        return None
    home = Path(found["--home"]) if "--home" in found else None
    if home is not None and home.exists() and not home.is_dir():
        return None  # click's "is a file" error
    return _answer(found["--agent"], home, asyncio.run)


def register(cli: click.Group) -> None:
    """Add the command group."""
    import click

    from charter.cli._common import home_option, run_coroutine

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
        code = _answer(agent, home, run_coroutine)
        if code:
            ctx.exit(code)
