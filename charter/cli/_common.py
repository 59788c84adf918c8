"""Shared CLI pieces: the common options, owner passphrase, JSON output, the one error handler."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from charter.config import Settings
from charter.errors import ConfigError
from charter.home import Home, resolve_passphrase

if TYPE_CHECKING:
    from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


def home_option(fn: F) -> F:
    """``--home DIR`` (default: ``CHARTER_HOME`` or the platform data dir)."""
    return click.option(
        "--home",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Charter home folder (default: $CHARTER_HOME or the user data dir).",
    )(fn)


def json_option(fn: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


def file_option(flag: str, help_text: str) -> Callable[[F], F]:
    """An optional ``flag FILE`` option: the command receives a :class:`Path` or None."""
    return click.option(
        flag, type=click.Path(path_type=Path, dir_okay=False), default=None, help=help_text
    )


#: ``--passphrase-file``: the passphrase that seals the home's keys, if it has one.
passphrase_option = file_option(
    "--passphrase-file",
    "File holding the home's passphrase (default: $CHARTER_PASSPHRASE_FILE; else prompted "
    "when needed).",
)
#: ``--vault-passphrase-file``: for a vault whose master key is derived from a passphrase.
vault_passphrase_option = file_option(
    "--vault-passphrase-file",
    "File holding the vault passphrase, when the master key is derived from one.",
)
#: ``--reason``: why the owner did it (recorded in the ledger).
reason_option = click.option("--reason", default="", help="Why (recorded in the ledger).")
#: ``--yes``: skip the confirmation prompt.
yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def settings(
    home: Path | None, agent: str | None = None, passphrase_file: Path | None = None
) -> Settings:
    """Resolve settings from flags and the environment (read here, once)."""
    return Settings.from_env(os.environ, home=home, agent=agent, passphrase_file=passphrase_file)


async def open_home(home: Path | None, passphrase_file: Path | None = None) -> Home:
    """Open the home named by ``--home``/``CHARTER_HOME`` (a sealed home opens locked: its
    passphrase file is read only when a key is first needed)."""
    return await Home.open(settings(home, passphrase_file=passphrase_file))


def run_async(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """Make an ``async def`` command body a click callback: each command runs its coroutine
    to the end on an event loop of its own (the services and storage are async)."""

    @functools.wraps(fn)
    def command(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_coroutine(fn(*args, **kwargs))

    return command


def run_coroutine(coro: Coroutine[Any, Any, R]) -> R:
    """Run ``coro`` on a new event loop; from inside a running loop (a test driving the CLI
    in-process), on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="charter-cli") as pool:
        return pool.submit(asyncio.run, coro).result()


def owner_passphrase(home: Home, path: Path | None) -> bytes | None:
    """The home's passphrase: from ``--passphrase-file``, else ``CHARTER_PASSPHRASE_FILE``,
    else a prompt when the owner key needs one, else None. It also unlocks the home's keys."""
    path = path or home.settings.passphrase_file
    if path is not None:
        passphrase = resolve_passphrase(path)
    elif not home.owner_key_protected():
        return None
    elif not sys.stdin.isatty():
        raise ConfigError(
            "the home's keys are locked (sealed with a passphrase): pass --passphrase-file "
            "FILE or set CHARTER_PASSPHRASE_FILE=FILE"
        )
    else:
        passphrase = click.prompt("Charter passphrase", hide_input=True).encode()
    home.use_passphrase(passphrase)
    return passphrase


def console() -> Any:
    """A rich console for tables: the terminal's width, or 120 columns when piped."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def emit_result(result: BaseModel, as_json: bool, text: str) -> None:
    """Print ``result`` as JSON with ``--json``, else the sentence ``text``."""
    if as_json:
        emit_json(result.model_dump())
    else:
        click.echo(text)


def common_options(*, passphrase: bool = False, as_json: bool = False) -> Callable[[F], F]:
    """What every command ends with: ``--home``, ``--passphrase-file`` (``passphrase``: it
    signs with the owner key) and ``--json`` (``as_json``). Errors are handled once, at the
    top (:class:`charter.cli._LazyCli`)."""

    def decorate(fn: F) -> F:
        if as_json:
            fn = json_option(fn)
        if passphrase:
            fn = passphrase_option(fn)
        return home_option(fn)

    return decorate
