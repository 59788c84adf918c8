"""The owner's command line: ``charter …``."""

from __future__ import annotations

import click

import charter
from charter.cli import agent, audit, demo, init, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(charter.__version__, prog_name="charter")
def cli() -> None:
    """Charter: owner-bound identity, tools and a signed audit ledger for AI agents."""


for module in (init, agent, audit, serve, demo):
    module.register(cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``charter`` console script (exits with the command's status)."""
    cli.main(args=argv, prog_name="charter")
