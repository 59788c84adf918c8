"""The owner's command line: ``charter …``."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click

    #: The click group of every command (built on first use: see :func:`_build`).
    cli: click.Group

#: Every command module, each adding its command (group) through ``register(cli)``, in the
#: order they are registered (a module may add subcommands to an earlier one's group).
COMMAND_MODULES = (
    "agent",
    "approvals",
    "audit",
    "console",
    "daemon",
    "db",
    "demo",
    "doctor",
    "hook",
    "init",
    "keys",
    "mail",
    "owner",
    "secret",
    "serve",
    "tlog",
    "token",
    "witness",
)

#: Commands whose module alone defines them completely, so running one imports only that
#: module. ``charter serve`` starts on every agent launch: it must not import the mail,
#: vault or HTTP code the rest of the CLI needs.
_SELF_CONTAINED = {"serve": "serve", "hook": "hook"}


@functools.cache
def _build() -> click.Group:
    """The click group (click is imported here: ``charter hook claude-code`` runs without
    it, see :func:`main`)."""
    import click

    import charter
    from charter.errors import CharterError

    class _LazyCli(click.Group):
        """The modules of :data:`COMMAND_MODULES` are imported when a command needs them, all of
        them for anything but :data:`_SELF_CONTAINED` commands."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._registered: set[str] = set()

        def _register(self, module: str) -> None:
            if module not in self._registered:
                self._registered.add(module)
                importlib.import_module(f"{__name__}.{module}").register(self)

        def load_all(self) -> None:
            """Import and register every command module."""
            for module in COMMAND_MODULES:
                self._register(module)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            if cmd_name in _SELF_CONTAINED:
                self._register(_SELF_CONTAINED[cmd_name])
            else:
                self.load_all()
            return super().get_command(ctx, cmd_name)

        def list_commands(self, ctx: click.Context) -> list[str]:
            self.load_all()
            return super().list_commands(ctx)

        def invoke(self, ctx: click.Context) -> Any:
            """The command line's one error handler: a :class:`CharterError` raised anywhere
            below becomes its public message on stderr and its exit code (``CHARTER_DEBUG=1``
            lets it through with its traceback)."""
            try:
                return super().invoke(ctx)
            except CharterError as exc:
                if os.environ.get("CHARTER_DEBUG"):
                    raise
                click.secho(f"error: {exc.public_message}", fg="red", err=True)
                ctx.exit(exc.exit_code)

    @click.group(cls=_LazyCli, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(charter.__version__, prog_name="charter")
    def cli() -> None:
        """Charter: owner-bound identity, tools and a signed audit ledger for AI agents."""

    return cli


def __getattr__(name: str) -> Any:
    if name == "cli":
        return _build()
    if name == "_LazyCli":
        return type(_build())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``charter`` console script (exits with the command's status).

    ``charter hook claude-code --agent NAME [--home DIR]`` (Claude Code starts it before and
    after every tool call) runs without click (:func:`charter.cli.hook.fast_main`); any other
    spelling of it (``--help``, a missing or repeated option) goes through click as before.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:2] == ["hook", "claude-code"]:
        code = importlib.import_module(f"{__name__}.hook").fast_main(args[2:])
        if code is not None:
            sys.exit(code)
    _build().main(args=argv, prog_name="charter")
