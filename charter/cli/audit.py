"""``charter audit tail|show|verify|export``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from charter.cli._common import common_options, console, emit_json, open_home, run_async
from charter.cli.tlog import load_trust, report_json, report_lines, trust_options
from charter.errors import InvalidInput, LedgerIntegrityError, NotFound
from charter.home import Home
from charter.tools import audit, ocsf
from charter.tools.audit import EntryOut


def ledger_table(entries: list[EntryOut]) -> Table:
    """The ledger as a readable table."""
    table = Table("seq", "time", "actor", "action", "phase", "outcome", "signer")
    for e in entries:
        actor = e.actor.rsplit("/", 1)[-1] if e.actor.startswith("spiffe://") else e.actor
        # Recorded text (an owner's address, a refusal's actor): escaped, shown as written.
        table.add_row(
            str(e.seq), e.ts[11:23], escape(actor), escape(e.action), e.phase, e.outcome or "",
            e.kid[:8],
        )  # fmt: skip
    return table


def session_table(entries: list[EntryOut]) -> Table:
    """A session as a timeline: each prompt, then each tool's intent and outcome."""
    table = Table("seq", "time", "actor", "step", "call", "outcome", "what")
    for e in entries:
        actor = e.actor.rsplit("/", 1)[-1] if e.actor.startswith("spiffe://") else e.actor
        step = f"{e.action} {e.phase}" if e.action == "hook.tool" else e.action
        call = (e.call or "")[:24]
        # Agent-written text: escaped, so it shows as written and cannot restyle the table.
        table.add_row(
            str(e.seq), e.ts[11:23], escape(actor), step, escape(call), e.outcome or "",
            escape(_what(e)),
        )  # fmt: skip
    return table


def _what(e: EntryOut) -> str:
    """One short, already-redacted line on what an entry is about."""
    args = e.args
    if e.action == "hook.prompt":
        return f"prompt sha256:{str(args.get('sha256', ''))[:12]}… ({args.get('chars')} chars)"
    if e.action == "hook.tool":
        if e.phase != "intent":
            status = args.get("exit_status")
            return " ".join(
                x for x in (str(args.get("tool", "")), e.reason or "",
                            "" if status is None else f"exit {status}") if x
            )  # fmt: skip
        summary = args.get("input") if isinstance(args.get("input"), dict) else {}
        assert isinstance(summary, dict)
        first = next(
            (
                summary[k]
                for k in ("command", "file_path", "url", "pattern", "path")
                if k in summary
            ),
            "",
        )
        decision = f" ({args['decision']})" if "decision" in args else ""
        return f"{args.get('tool', '')}: {str(first)[:80]}{decision}"
    details = [f"{k}={v}" for k, v in args.items() if k in ("source", "reason", "agent_type")]
    return " ".join(details) or e.reason or ""


async def _session_entries(h: Home, session: str, start: int) -> list[EntryOut]:
    """Every entry of ``session`` from seq ``start`` on."""
    out: list[EntryOut] = []
    cursor: int | None = start
    while cursor is not None:
        page = await audit.query(h, session=session, cursor=cursor, limit=audit.MAX_QUERY_LIMIT)
        out.extend(page.entries)
        cursor = page.next_cursor
    return out


async def _session_start(h: Home, session: str, count: int) -> int:
    """The seq of the ``count``-th last entry of ``session`` (0 if it has fewer)."""
    entries = await _session_entries(h, session, 0)
    return (
        entries[-count].seq
        if len(entries) >= count and count > 0
        else (entries[0].seq if entries else 0)
    )


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("audit")
    def audit_group() -> None:
        """Read, verify and export the signed audit ledger."""

    @audit_group.command("tail")
    @click.option("-n", "count", default=20, show_default=True, help="How many entries.")
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new entries.")
    @click.option(
        "--session",
        default=None,
        help="Only this session's entries (e.g. a Claude Code session id), as a timeline: "
        "prompts, intents, outcomes.",
    )
    @common_options(as_json=True)
    @run_async
    async def tail(
        count: int, follow: bool, session: str | None, home: Path | None, as_json: bool
    ) -> None:
        """Show the last entries."""
        async with await open_home(home) as h:
            size = await h.read(lambda tx: tx.queries.size())
            start = max(0, size - count)
            if session is not None:
                start = await _session_start(h, session, count)
            while True:
                entries = await (
                    audit.entries_from(h, start)
                    if session is None
                    else _session_entries(h, session, start)
                )
                if entries:
                    if as_json:
                        for e in entries:
                            click.echo(e.model_dump_json())
                    else:
                        table = ledger_table if session is None else session_table
                        console().print(table(entries))
                    start = entries[-1].seq + 1
                if not follow:
                    return
                await asyncio.sleep(0.5)

    @audit_group.command("show")
    @click.argument("seq", type=int)
    @common_options()
    @run_async
    async def show(seq: int, home: Path | None) -> None:
        """Print entry SEQ in full."""
        async with await open_home(home) as h:
            entry = await h.read(lambda tx: tx.ledger.get(seq))
        if entry is None:
            raise NotFound(f"no entry {seq}")
        emit_json(entry.fields | {"hash": entry.hash})

    @audit_group.command("verify")
    @click.option(
        "--export",
        "export_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Verify an exported folder instead of the home.",
    )
    @click.option(
        "--owner-key",
        "--org-key",
        "owner_key",
        default=None,
        help="Pin the owner key (JWK thumbprint) when verifying an export; in an organization "
        "ledger, the organization key (owners and charters are checked from it).",
    )
    @trust_options
    @common_options(as_json=True)
    @run_async
    async def verify(
        export_dir: Path | None,
        owner_key: str | None,
        checkpoint: Path | None,
        policy: Path | None,
        state: Path | None,
        home: Path | None,
        as_json: bool,
    ) -> None:
        """Verify every signature, the hash chain, every charter, the Merkle tree and the
        signed checkpoints; exit non-zero if bad."""
        trust = load_trust(checkpoint, policy, state)
        try:
            if export_dir is not None:
                report = audit.verify_export(export_dir, owner_key=owner_key, trust=trust)
            else:
                # A bar only on a terminal: elsewhere rich would still leave a blank line.
                quiet = as_json or not sys.stdout.isatty()
                async with await open_home(home) as h:
                    total = await h.read(lambda tx: tx.queries.size())
                    with Progress(transient=True, disable=quiet) as bar:
                        task = bar.add_task("verifying", total=total)
                        report = await audit.verify_home(
                            h,
                            progress=lambda done, _total: bar.update(task, completed=done),
                            trust=trust,
                            workers=None,  # signatures on every core (large ledgers only)
                        )
        except LedgerIntegrityError as exc:
            if as_json:
                emit_json({"valid": False, "failed_seq": exc.seq, "reason": exc.reason})
            raise
        if as_json:
            emit_json(
                {
                    "valid": True,
                    "size": report.size,
                    "head": report.head,
                    "agents": report.agents,
                    "revoked": report.revoked,
                }
                | report_json(report)
            )
        else:
            click.echo(f"OK: {report.size} entries verified; head {report.head}")
            for line in report_lines(report):
                click.echo(f"  {line}")

    @audit_group.command("export")
    @click.argument("folder", type=click.Path(path_type=Path, file_okay=False, allow_dash=True))
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["charter", "ocsf"]),
        default="charter",
        show_default=True,
        help="charter: the auditor's bundle; ocsf: OCSF API Activity events, one JSON line "
        "per entry, to FOLDER/events.ocsf.jsonl or to stdout with '-' (docs/INTEGRATIONS.md).",
    )
    @common_options(as_json=True)
    @run_async
    async def export(folder: Path, fmt: str, home: Path | None, as_json: bool) -> None:
        """Write an auditor's bundle (entries, keys, charters) to FOLDER."""
        if fmt == "ocsf":
            await export_ocsf(folder, home, as_json)
            return
        if str(folder) == "-":
            raise InvalidInput("the charter format writes a folder: name one ('-' is for ocsf)")
        async with await open_home(home) as h:
            manifest = await audit.export(h, folder)
        if as_json:
            emit_json(manifest)
        else:
            click.echo(f"Exported {manifest['size']} entries to {folder}")
            click.echo(f"Verify with: charter audit verify --export {folder}")


async def export_ocsf(folder: Path, home: Path | None, as_json: bool) -> None:
    """``charter audit export --format ocsf``: to stdout (``-``) or FOLDER/events.ocsf.jsonl."""
    async with await open_home(home) as h:
        if str(folder) == "-":
            count = await ocsf.export(h, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "events.ocsf.jsonl"
        if target.exists():
            raise InvalidInput(f"{target} exists; choose a new folder")
        count = await ocsf.export(h, target)
    if as_json:
        emit_json({"format": "ocsf", "version": ocsf.OCSF_VERSION, "events": count})
    else:
        click.echo(f"Exported {count} OCSF {ocsf.OCSF_VERSION} events to {target}")


__all__ = ["ledger_table", "register"]
