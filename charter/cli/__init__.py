"""The owner's command line: ``charter …``."""

from __future__ import annotations

import importlib
import pkgutil

import click

import charter
from charter import cli as _pkg


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(charter.__version__, prog_name="charter")
def cli() -> None:
    """Charter: owner-bound identity, tools and a signed audit ledger for AI agents."""


# Each public module of this package adds its command (group) through ``register(cli)``.
for _info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}").register(cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``charter`` console script (exits with the command's status)."""
    cli.main(args=argv, prog_name="charter")
