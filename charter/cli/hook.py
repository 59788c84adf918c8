"""``charter hook claude-code --agent NAME``: a Claude Code command hook (issue 23).

Reads one hook event on stdin, records it in the ledger signed by the agent
(:mod:`charter.tools.hooks.record`) and answers Claude Code on stdout / with its exit code.
Self-contained (``charter.cli._SELF_CONTAINED``): running it imports this module only, not
the rest of the CLI, because Claude Code starts it before and after every tool call. The
usual spelling runs without click (:func:`fast_main`, from :func:`charter.cli.main`), and for
a SQLite home without asyncio or aiosqlite either: the home's units of work run inline
(:mod:`charter.storage.inline`) and the coroutine is stepped to its end (:func:`_step`).
Together they were about half of the hook's start-up.
"""

from __future__ import annotations

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


async def _run(
    agent: str, home: Path | None, raw: bytes, *, inline: bool = False
) -> output.HookResponse:
    from charter.config import Settings
    from charter.errors import CharterError
    from charter.home import Home
    from charter.tools.hooks import record

    try:  # as charter.cli._common.open_home(home), without importing click
        settings = Settings.from_env(os.environ, home=home)
        async with await Home.open(settings, inline=inline) as h:
            return await record.handle(
                h, agent, raw, project_dir=os.environ.get("CLAUDE_PROJECT_DIR")
            )
    except CharterError as exc:  # the home cannot be opened: nothing can be recorded
        return output.fail_closed(
            f"Charter could not record this: {exc.public_message}", record.event_name(raw)
        )


Runner = Callable[[Coroutine[Any, Any, output.HookResponse]], output.HookResponse]


def _answer(agent: str, home: Path | None, run: Runner, *, inline: bool = False) -> int:
    """Run the hook (``run``: how to run a coroutine), write its answer; its exit code."""
    try:
        answer = run(_run(agent, home, _read_stdin(), inline=inline))
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
    loaded = sys.modules.get("asyncio")  # not imported for this: it is what we avoid
    if loaded is not None:
        try:
            loaded.get_running_loop()
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
    if _sqlite_home(home):
        return _answer(found["--agent"], home, _step, inline=True)
    import asyncio

    return _answer(found["--agent"], home, asyncio.run)


def _sqlite_home(home: Path | None) -> bool:
    """Whether the home's database is its SQLite file (no PostgreSQL URL in the environment
    or the home's config); False when that cannot be told (the usual path reports why)."""
    from charter.config import Settings, read_database_url
    from charter.errors import CharterError

    try:
        settings = Settings.from_env(os.environ, home=home)
        return settings.database_url is None and read_database_url(settings.layout.root) is None
    except CharterError:
        return False


def _step(coro: Coroutine[Any, Any, output.HookResponse]) -> output.HookResponse:
    """Run a coroutine that never suspends (its awaits all complete at once: the inline
    store) to its end without an event loop.

    Raises:
        RuntimeError: it suspended (it awaited real I/O): it is closed, and the hook fails
            closed (nothing it did is half-committed: each unit of work is one transaction).
    """
    try:
        coro.send(None)
    except StopIteration as done:
        result: output.HookResponse = done.value
        return result
    coro.close()
    raise RuntimeError("the hook's work suspended without an event loop")


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
