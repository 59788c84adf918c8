"""The chain head comes from the last entry's signed bytes, never from its ``hash`` column:
whoever edits that column cannot steer the entries appended after it."""

from __future__ import annotations

import hashlib

import pytest

from charter.errors import LedgerIntegrityError
from charter.home import Home
from charter.storage.db import transaction
from charter.testing import raw_db, raw_tx
from charter.tools import audit


def set_hash_column(home: Home, seq: int, value: str) -> None:
    raw_db(home).execute("DROP TRIGGER IF EXISTS ledger_no_update")
    with transaction(raw_db(home)):
        raw_db(home).execute("UPDATE ledger SET hash = ? WHERE seq = ?", (value, seq))


async def test_an_edited_hash_column_steers_neither_head_nor_the_next_entry(home: Home) -> None:
    await home.record_owner_event("test.event", {"i": 0})
    size, true_head = raw_tx(home).ledger.head()
    last = raw_tx(home).ledger.get(size - 1)
    assert last is not None and true_head == hashlib.sha256(last.body).hexdigest()

    set_hash_column(home, size - 1, "f" * 64)
    assert raw_tx(home).ledger.head() == (size, true_head)
    await home.record_owner_event("test.event", {"i": 1})
    new = raw_tx(home).ledger.get(size)
    assert new is not None and new.fields["prev"] == true_head

    # The edited column itself is still reported...
    with pytest.raises(LedgerIntegrityError, match="hash column") as failed:
        await audit.verify_home(home)
    assert failed.value.seq == size - 1
    # ...and once it is put back, the whole chain, new entry included, verifies.
    set_hash_column(home, size - 1, true_head)
    assert (await audit.verify_home(home)).size == size + 1


async def test_the_database_refuses_an_entry_that_does_not_link_to_the_one_before(
    home: Home,
) -> None:
    """A fork or a gap is refused by the database itself (trigger ledger_links, 0015), even
    from a writer that bypasses Charter: the link is checked against the previous entry's
    bytes, not its ``hash`` column."""
    await home.record_owner_event("test.event", {})
    size, head = raw_tx(home).ledger.head()
    insert = (
        "INSERT INTO ledger(seq, prev, hash, ts, actor, action, phase, body)"
        " VALUES (?, ?, 'h', 't', 'a', 'x', 'call', ?)"
    )
    set_hash_column(home, size - 1, "f" * 64)  # an edited copy does not make a link
    for seq, prev in ((size, "f" * 64), (size + 1, head)):  # a wrong link; a gap
        with pytest.raises(Exception, match="must link"), transaction(raw_db(home)):
            raw_db(home).execute(insert, (seq, prev, b"{}"))
    assert raw_tx(home).ledger.head() == (size, head)
    with transaction(raw_db(home)):
        raw_db(home).execute(insert, (size, head, b"{}"))  # the true link is accepted
