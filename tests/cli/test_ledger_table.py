"""The owner's ledger table shows recorded text as written: it is never read as rich markup."""

from __future__ import annotations

from rich.console import Console

from charter.cli.audit import ledger_table
from charter.tools.audit import EntryOut


def test_recorded_text_is_shown_as_written_not_as_markup() -> None:
    entry = EntryOut(
        seq=7,
        ts="2026-01-02T03:04:05.678Z",
        hash="0" * 64,
        actor="[bold red]x@example.com",
        action="[blink]agent.register",
        phase="event",
        outcome="ok",
        reason=None,
        call=None,
        charter=None,
        args={},
        args_hash=None,
        result_hash=None,
        kid="abcdefgh12345678",
    )
    console = Console(record=True, width=200, color_system=None)
    console.print(ledger_table([entry]))
    text = console.export_text()
    assert "[bold red]x@example.com" in text
    assert "[blink]agent.register" in text
