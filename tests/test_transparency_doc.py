"""AUDIT-FORMAT.md §8 is true: its example export (docs/example-transparency) is recomputed here
from the document alone (RFC 9162 recursion, C2SP note parsing, ``hashlib`` and PyNaCl; none of
Charter's code), every hash §8 quotes is one of the recomputed values, and Charter verifies the
example."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import nacl.signing

from charter.evidence.auditor import Trust
from charter.tools import audit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "example-transparency"


def section_8() -> str:
    """AUDIT-FORMAT.md §8, up to §9."""
    doc = (ROOT / "AUDIT-FORMAT.md").read_text(encoding="utf-8")
    return doc[doc.index("## 8. Transparency") : doc.index("## 9. ")]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 over leaf *hashes*."""
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    if m == len(leaves):
        return [] if b else [mth(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def open_note(note: str, vkey: str) -> list[str]:
    """C2SP signed-note with one Ed25519 vkey; returns the text lines."""
    name, key_id, encoded = vkey.split("+", 2)
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01
    assert sha(name.encode() + b"\n" + raw).hex()[:8] == key_id
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    good = 0
    for line in signatures.rstrip("\n").split("\n"):
        assert line.startswith("\u2014 ")
        signer, payload = line[2:].rsplit(" ", 1)
        blob = base64.b64decode(payload)
        if signer == name and blob[:4].hex() == key_id:
            nacl.signing.VerifyKey(raw[1:]).verify(text.encode(), blob[4:])
            good += 1
    assert good == 1
    return text.split("\n")[:-1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_example_recomputes_from_the_document() -> None:
    entries = (EXAMPLE / "entries.jsonl").read_bytes().split(b"\n")[:-1]
    leaves = [sha(b"\x00" + e) for e in entries]
    manifest = json.loads((EXAMPLE / "ledger.json").read_text())
    vkey = (EXAMPLE / "log.vkey").read_text().strip()
    name, _, encoded = vkey.split("+", 2)
    log_key = base64.b64decode(encoded)[1:]
    assert name == manifest["origin"]
    assert base64.urlsafe_b64encode(log_key).rstrip(b"=").decode() == manifest["log_key"]["x"]
    notes = {int(p.stem): p.read_text() for p in (EXAMPLE / "checkpoints").iterdir()}
    assert sorted(notes) == [3, manifest["size"]] == [3, 5]
    for size, note in notes.items():
        assert open_note(note, vkey) == [manifest["origin"], str(size), b64(mth(leaves[:size]))]

    head, _, checkpoint = (EXAMPLE / "proof-2-in-5.tlog-proof").read_text().partition("\n\n")
    assert checkpoint == notes[5]
    assert head.split("\n") == ["c2sp.org/tlog-proof@v1", "index 2", *map(b64, path(2, leaves))]
    consistency = (EXAMPLE / "consistency-3-5.txt").read_text().split()
    assert consistency == [b64(h) for h in subproof(3, leaves, True)]

    known_hex = {h.hex() for h in leaves}
    known_hex |= {mth(leaves[i : i + w]).hex() for w in (1, 2, 4) for i in range(0, 5 - w + 1, w)}
    known_hex |= {mth(leaves[:n]).hex() for n in range(6)}
    doc = section_8()
    quoted_hex = set(re.findall(r"\b[0-9a-f]{64}\b", doc))
    assert len(quoted_hex) >= 10 and quoted_hex <= known_hex
    quoted_b64 = set(re.findall(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{43}=(?![A-Za-z0-9+/=])", doc))
    assert len(quoted_b64) >= 5 and quoted_b64 <= {b64(bytes.fromhex(h)) for h in known_hex}
    assert vkey in doc and manifest["log_key"]["x"] in doc
    assert notes[5] in doc.replace("```\n", "")
    rows = re.findall(r"^\| (\d) \| .* \| (\d+) \| `([0-9a-f]{64})` \|$", doc, re.MULTILINE)
    assert rows == [(str(i), str(len(e)), leaves[i].hex()) for i, e in enumerate(entries)]


def test_charter_verifies_the_example_against_its_earlier_checkpoint() -> None:
    report = audit.verify_export(
        EXAMPLE, trust=Trust(kept=(EXAMPLE / "checkpoints/3.note").read_text())
    )
    assert (report.size, report.checkpoint_size, report.kept_size) == (5, 5, 3)
