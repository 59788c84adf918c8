"""Regenerate the example exports that AUDIT-FORMAT.md quotes, and the values it quotes.

    /work/venv/bin/python docs/make_examples.py            # rewrite docs/example-* and the doc
    /work/venv/bin/python docs/make_examples.py --out DIR  # write DIR/example-* only

Both examples are real: a new home of owner ``alice@example.com`` (frozen clock), one agent
``research-assistant`` (scope ``audit:read``, audience ``https://api.example.com``) calling
tools through an in-process MCP client, then ``charter audit export``:

- ``example-export/`` (§9): one ``identity_whoami`` call;
- ``example-transparency/`` (§8): ``identity_whoami``, ``audit_checkpoint`` (which signs the
  checkpoint of 3 entries), ``identity_whoami``; plus the inclusion proof of entry 2 in the
  tree of 5 and the consistency proof from 3 to 5.

Keys, ids and the origin are random, so every run writes new bytes. When rewriting ``docs/``,
every value AUDIT-FORMAT.md quotes from the old examples (hashes, keys, lines, notes, proofs,
byte counts) is replaced by the same value of the new ones. If the examples change shape (more
entries, other actions), fix the prose by hand: ``tests/test_audit_format.py`` and
``tests/test_transparency_doc.py`` name every quoted value that no longer matches.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client

from charter.evidence.canonical import canonical_json
from charter.evidence.jwk import public_key_from_jwk, thumbprint
from charter.testing import FrozenClock, make_home, server_for
from charter.tools import audit, identity, tlog

DOCS = Path(__file__).resolve().parent
DOC = DOCS.parent / "AUDIT-FORMAT.md"
AGENT = "research-assistant"


def make_example(folder: Path, tools: list[str]) -> None:
    """A new home, the agent calling ``tools`` one second apart, exported to ``folder``."""
    anyio.run(_make_example, folder, tools)


async def _make_example(folder: Path, tools: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = FrozenClock()
        home = await make_home(Path(tmp) / "home", owner="alice@example.com", clock=clock)
        try:
            clock.advance(seconds=30)
            await identity.add_agent(
                home, AGENT, scopes=["audit:read"], audiences=["https://api.example.com"]
            )
            clock.advance(seconds=29)
            async with Client(await server_for(home, AGENT)) as client:
                for tool in tools:
                    clock.advance(seconds=1)
                    result = await client.call_tool(tool, {})
                    assert not result.is_error, result
            await audit.export(home, folder)
            if len(tools) > 1:
                size = await home.read(lambda tx: tx.queries.size())
                proof = (await tlog.prove(home, 2, size)).tlog_proof
                (folder / f"proof-2-in-{size}.tlog-proof").write_text(proof)
                steps = (await tlog.consistency(home, 3, size)).proof
                (folder / f"consistency-3-{size}.txt").write_text("".join(f"{s}\n" for s in steps))
        finally:
            await home.close()


def quoted(export: Path, transparency: Path) -> dict[str, str]:
    """Every value AUDIT-FORMAT.md may quote from the examples, by a stable name."""
    values: dict[str, str] = {}
    m = json.loads((export / "ledger.json").read_text())
    lines = (export / "entries.jsonl").read_bytes().splitlines()
    genesis = {k: m[k] for k in ("log_key", "origin", "owner", "owner_key")}
    values |= {"genesis.jcs": canonical_json(genesis).decode(), "genesis": m["genesis"]}
    values |= {"export.origin": m["origin"], "export.head": m["head"]}
    values |= {"export.log.x": m["log_key"]["x"], "export.owner.x": m["owner_key"]["x"]}
    values["owner.kid"] = thumbprint(public_key_from_jwk(m["owner_key"]))
    for i, line in enumerate(lines):
        values[f"export.entry.{i}"] = hashlib.sha256(line).hexdigest()
    call = json.loads(lines[2])
    unsigned = b"charter.ledger.entry.v1\x00" + canonical_json(
        {k: v for k, v in call.items() if k != "sig"}
    )
    values |= {"export.line.2": lines[2].decode(), "export.charter": call["charter"]}
    values |= {"agent.kid": call["kid"], "signing.sha256": hashlib.sha256(unsigned).hexdigest()}
    values["signing.bytes"] = f"{len(unsigned)} bytes"
    for path in sorted(export.glob("checkpoints/*.note")):
        values[f"export.note.{path.stem}"] = path.read_text()
    leaves = [hashlib.sha256(b"\x00" + line).digest() for line in lines]
    values["export.mth.hex"] = _mth(leaves).hex()

    m = json.loads((transparency / "ledger.json").read_text())
    entries = (transparency / "entries.jsonl").read_bytes().splitlines()
    leaves = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    values |= {"tlog.origin": m["origin"], "tlog.log.x": m["log_key"]["x"]}
    vkey = (transparency / "log.vkey").read_text().strip()
    values |= {"tlog.vkey": vkey, "tlog.key_id": vkey.split("+")[1]}
    values["tlog.key_id.spaced"] = " ".join(re.findall("..", values["tlog.key_id"]))
    nodes = {f"leaf.{i}": leaf for i, leaf in enumerate(leaves)}
    for size in range(2, len(leaves) + 1):
        nodes[f"mth.{size}"] = _mth(leaves[:size])
    for level, width in ((1, 2), (2, 4)):
        for idx in range(len(leaves) // width):
            nodes[f"node.{level}.{idx}"] = _mth(leaves[idx * width : (idx + 1) * width])
    for name, node in nodes.items():
        values |= {f"{name}.hex": node.hex(), f"{name}.b64": base64.b64encode(node).decode()}
    for path in sorted(transparency.glob("checkpoints/*.note")):
        values[f"tlog.note.{path.stem}"] = path.read_text()
    for path in sorted(transparency.glob("proof-*.tlog-proof")):
        values["tlog.inclusion"] = path.read_text()
    for path in sorted(transparency.glob("consistency-*.txt")):
        values["tlog.consistency"] = path.read_text()
    return values


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def update_doc(doc: str, old: dict[str, str], new: dict[str, str], leaf_sizes: list[int]) -> str:
    """Replace every old quoted value by the new one (longest first: lines and notes before
    the hashes and origins they contain), and the leaf table's byte counts."""
    for name in sorted(old.keys() & new.keys(), key=lambda n: -len(old[n])):
        doc = doc.replace(old[name], new[name])
    for i, size in enumerate(leaf_sizes):
        row = re.compile(rf"^(\| {i} \| [^|]+\| )\d+( \|)", re.MULTILINE)
        doc = row.sub(rf"\g<1>{size}\g<2>", doc)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the examples here, not into docs/")
    args = parser.parse_args()
    root: Path = args.out or DOCS
    export, transparency = root / "example-export", root / "example-transparency"
    old = quoted(export, transparency) if args.out is None else {}
    for folder in (export, transparency):
        shutil.rmtree(folder, ignore_errors=True)
    make_example(export, ["identity_whoami"])
    make_example(transparency, ["identity_whoami", "audit_checkpoint", "identity_whoami"])
    for folder in (export, transparency):
        audit.verify_export(folder)
    if args.out is None:
        sizes = [len(e) for e in (transparency / "entries.jsonl").read_bytes().splitlines()]
        DOC.write_text(update_doc(DOC.read_text(), old, quoted(export, transparency), sizes))
    sys.stdout.write(f"wrote {export} and {transparency}\n")


if __name__ == "__main__":
    main()
