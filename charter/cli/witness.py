"""``charter witness …``: run a C2SP witness, and configure the witnesses of a home.

The witness side works on a witness folder (``--home DIR``, or ``$CHARTER_WITNESS_HOME``):
``init --name NAME`` (a new key; prints its vkey), ``add-log VKEY``, ``serve --port P``.
The log side works on a Charter home (``--home``/``$CHARTER_HOME`` as everywhere):
``add URL VKEY``, ``list``, ``submit``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from charter.cli._common import (
    common_options,
    emit_json,
    open_home,
    owner_passphrase,
    run_async,
)
from charter.errors import ConfigError


def _witness_folder(home: Path | None) -> Path:
    if home is not None:
        return home
    env = os.environ.get("CHARTER_WITNESS_HOME")
    if not env:
        raise ConfigError("name the witness folder: --home DIR or CHARTER_WITNESS_HOME")
    return Path(env)


def _witness_home_option(fn: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--home",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Witness folder (default: $CHARTER_WITNESS_HOME).",
    )(fn)


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("witness")
    def witness_group() -> None:
        """Run a C2SP witness, or configure the witnesses that cosign this home's log."""

    @witness_group.command("init")
    @click.option("--name", required=True, help="The witness's key name, e.g. example.org/w1.")
    @_witness_home_option
    def init(name: str, home: Path | None) -> None:
        """Make a witness folder with a new key, and print its vkey (tlog-cosignature/v1)."""
        from charter.witness.core import Witness

        with Witness.init(_witness_folder(home), name) as witness:
            click.echo(witness.verifier.vkey)

    @witness_group.command("add-log")
    @click.argument("vkey")
    @_witness_home_option
    def add_log(vkey: str, home: Path | None) -> None:
        """Witness the log whose checkpoints VKEY signs (e.g. `charter keys log`)."""
        from charter.witness.core import Witness

        with Witness(_witness_folder(home)) as witness:
            origin = witness.add_log(vkey)
        click.echo(f"witnessing {origin}")

    @witness_group.command("serve")
    @click.option("--port", type=click.IntRange(1, 65535), required=True, help="TCP port.")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
    @_witness_home_option
    def serve(port: int, host: str, home: Path | None) -> None:
        """Serve the C2SP tlog-witness protocol: POST /add-checkpoint."""
        from charter.witness.core import Witness
        from charter.witness.http import serve as run

        with Witness(_witness_folder(home)) as witness:
            click.echo(f"witness {witness.verifier.vkey} on http://{host}:{port}", err=True)
            run(witness, host, port)

    @witness_group.command("add")
    @click.argument("url")
    @click.argument("vkey")
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def add(
        url: str, vkey: str, home: Path | None, passphrase_file: Path | None, as_json: bool
    ) -> None:
        """Have the witness at URL (its vkey VKEY) cosign this home's checkpoints."""
        from charter.tools import witnesses

        async with await open_home(home) as h:
            out = await witnesses.add_witness(
                h, url, vkey, passphrase=owner_passphrase(h, passphrase_file)
            )
        if as_json:
            emit_json(out.model_dump())
        else:
            click.echo(f"witness {out.name} added; checkpoints go to {out.url}")

    @witness_group.command("remove")
    @click.argument("name")
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def remove(
        name: str, home: Path | None, passphrase_file: Path | None, as_json: bool
    ) -> None:
        """Stop asking witness NAME to cosign (its cosignatures so far are kept)."""
        from charter.tools import witnesses

        async with await open_home(home) as h:
            out = await witnesses.remove_witness(
                h, name, passphrase=owner_passphrase(h, passphrase_file)
            )
        if as_json:
            emit_json(out.model_dump())
        else:
            click.echo(f"witness {out.name} removed; checkpoints no longer go to {out.url}")

    @witness_group.command("list")
    @common_options(as_json=True)
    @run_async
    async def list_(home: Path | None, as_json: bool) -> None:
        """The configured witnesses and how far each has cosigned."""
        from charter.tools import witnesses

        async with await open_home(home) as h:
            rows = await witnesses.list_witnesses(h)
        if as_json:
            emit_json([r.model_dump() for r in rows])
            return
        for r in rows:
            error = f"  last error: {r.last_error}" if r.last_error else ""
            click.echo(f"{r.name}  {r.url}  cosigned {r.size}{error}")

    @witness_group.command("submit")
    @common_options(as_json=True)
    @run_async
    async def submit(home: Path | None, as_json: bool) -> None:
        """Sign a checkpoint if the ledger grew and submit it to every witness now."""
        from charter.tools import witnesses

        async with await open_home(home) as h:
            await witnesses.checkpoint_witnessed(h)
            results = await witnesses.list_witnesses(h)
            lagging = await witnesses.lagging(h)
        if as_json:
            emit_json({"witnesses": [r.model_dump() for r in results], "lagging": lagging})
            return
        for line in lagging:
            click.echo(line, err=True)
        click.echo(f"{len(results) - len(lagging)} of {len(results)} witnesses current")
        if lagging:
            raise SystemExit(1)
