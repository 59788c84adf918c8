"""``charter audit checkpoint|prove|consistency``, ``charter keys log``, and the transparency
options of ``charter audit verify`` (``--checkpoint``, ``--policy``, ``--state``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from charter.cli._common import common_options, emit_json, open_home, run_async
from charter.errors import ConfigError
from charter.evidence.auditor import AuditReport, Trust
from charter.evidence.c2sp import NoteError, parse_policy
from charter.tools import tlog

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(path_type=Path, dir_okay=False)


def trust_options(fn: F) -> F:
    """``--checkpoint FILE``, ``--policy FILE`` and ``--state FILE`` for ``audit verify``."""
    fn = click.option(
        "--state",
        type=_FILE,
        default=None,
        help="Resume file: verify only what is new since the checkpoint it records, then "
        "record the newest one (created if missing).",
    )(fn)
    fn = click.option(
        "--policy",
        type=_FILE,
        default=None,
        help="C2SP tlog-policy file (log key, witnesses, quorum) the checkpoint must meet.",
    )(fn)
    return click.option(
        "--checkpoint",
        type=_FILE,
        default=None,
        help="A signed checkpoint you kept earlier: the ledger must extend it "
        "(detects truncation and forks).",
    )(fn)


def load_trust(checkpoint: Path | None, policy: Path | None, state: Path | None) -> Trust:
    """Read the files named by :func:`trust_options`.

    Raises:
        ConfigError: a file cannot be read, or the policy is malformed.
    """
    parsed = None
    if policy is not None:
        try:
            parsed = parse_policy(_read(policy))
        except NoteError as exc:
            raise ConfigError(f"policy {policy.name}: {exc.reason}") from exc
    return Trust(kept=None if checkpoint is None else _read(checkpoint), policy=parsed, state=state)


def report_lines(report: AuditReport) -> list[str]:
    """What the transparency checks showed, for people."""
    lines = []
    if report.resumed_from:
        lines.append(f"resumed after entry {report.resumed_from - 1} (your audit state)")
    if report.checkpoint_size is None:
        lines.append(
            "WARNING: no signed checkpoint covers these entries; keep one "
            "(charter audit checkpoint) to detect truncation later"
        )
    else:
        lines.append(
            f"{report.checkpoints} signed checkpoint(s) match the entries; the newest covers "
            f"{report.checkpoint_size}"
        )
    if report.kept_size is not None:
        lines.append(f"extends the checkpoint you kept ({report.kept_size} entries)")
    if report.witnesses:
        lines.append("witnessed by " + ", ".join(report.witnesses))
    if report.state_size is not None:
        lines.append(f"audit state now at {report.state_size} entries")
    return lines


def report_json(report: AuditReport) -> dict[str, Any]:
    """What the transparency checks showed, for ``--json``."""
    return {
        "checkpoint_size": report.checkpoint_size,
        "checkpoints": report.checkpoints,
        "kept_size": report.kept_size,
        "resumed_from": report.resumed_from,
        "witnesses": list(report.witnesses),
        "state_size": report.state_size,
    }


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _write(path: Path | None, text: str) -> None:
    if path is None:
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


def register(cli: click.Group) -> None:
    """Add the commands to the ``audit`` and ``keys`` groups."""
    audit_group = cli.commands["audit"]
    assert isinstance(audit_group, click.Group)
    keys_group = cli.commands["keys"]  # registered before this module (name order)
    assert isinstance(keys_group, click.Group)

    @audit_group.command("checkpoint")
    @click.option("--out", type=_FILE, default=None, help="Also write the signed note to FILE.")
    @common_options(as_json=True)
    @run_async
    async def checkpoint(out: Path | None, home: Path | None, as_json: bool) -> None:
        """Print a checkpoint of the whole ledger signed by the log key (C2SP signed note).

        Signs a new one if the ledger grew since the last, and has the configured witnesses
        cosign it (their lines follow the log's). Keep it: `charter audit verify --checkpoint
        FILE` later shows the ledger still extends it.
        """
        from charter.tools import witnesses

        async with await open_home(home) as h:
            out_ = await witnesses.checkpoint_witnessed(h)
            for line in await witnesses.lagging(h):
                click.echo(f"warning: {line}", err=True)
        _write(out, out_.note)
        if as_json:
            emit_json(out_.model_dump())
        else:
            click.echo(out_.note, nl=False)

    @audit_group.command("prove")
    @click.argument("seq", type=click.IntRange(min=0))
    @click.option(
        "--tree-size",
        type=click.IntRange(min=1),
        default=None,
        help="Prove against the checkpoint of this size (default: the latest).",
    )
    @click.option("--out", type=_FILE, default=None, help="Also write the proof to FILE.")
    @common_options(as_json=True)
    @run_async
    async def prove(
        seq: int, tree_size: int | None, out: Path | None, home: Path | None, as_json: bool
    ) -> None:
        """Print a c2sp.org/tlog-proof@v1 inclusion proof of entry SEQ.

        The proof, the entry's bytes and the log's key let anyone check offline that the entry
        is in a signed checkpoint.
        """
        async with await open_home(home) as h:
            proof = await tlog.prove(h, seq, tree_size)
        _write(out, proof.tlog_proof)
        if as_json:
            emit_json(proof.model_dump())
        else:
            click.echo(proof.tlog_proof, nl=False)

    @audit_group.command("consistency")
    @click.argument("old_size", type=click.IntRange(min=0))
    @click.argument("new_size", type=click.IntRange(min=0))
    @common_options(as_json=True)
    @run_async
    async def consistency(old_size: int, new_size: int, home: Path | None, as_json: bool) -> None:
        """Print the RFC 9162 consistency proof from OLD_SIZE to NEW_SIZE, one base64 hash per
        line: it shows the first OLD_SIZE entries are a prefix of the first NEW_SIZE."""
        async with await open_home(home) as h:
            result = await tlog.consistency(h, old_size, new_size)
        if as_json:
            emit_json(result.model_dump())
        else:
            for line in result.proof:
                click.echo(line)

    @keys_group.command("log")
    @common_options()
    @run_async
    async def log_key(home: Path | None) -> None:
        """Print the log's verifier key (C2SP vkey): what checks this ledger's checkpoints."""
        async with await open_home(home) as h:
            click.echo(tlog.log_verifier(h).vkey)
