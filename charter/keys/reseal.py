"""``charter keys passphrase``: re-seal every key of a home under a new passphrase, atomically.

Every key file ``X`` is written again as ``X.reseal``, sealed under a new seal generation; then
``seal.json.reseal`` is renamed over ``seal.json`` (the commit point, one atomic rename); then
each ``X.reseal`` is renamed over ``X``. A crash before the commit leaves the old seal and the
old files (the ``.reseal`` leftovers are ignored, and removed by the next change); a crash after
it leaves the new seal, and each reader takes ``X.reseal`` when ``X`` is of the older generation
(:func:`charter.keys.sealed.current_doc`). The home opens with the old or the new passphrase,
never neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charter.errors import ConfigError
from charter.keys.files import KeyPair, key_from_doc, read_key_doc, write_private_json
from charter.keys.sealed import RESEAL_SUFFIX, SEAL_FILE, Kek, Seal, current_doc, locked_error
from charter.keys.vault_key import read_vault_doc, vault_key_from_doc

#: Called with a label after each step (tests inject a failure there).
Step = Callable[[str], None]


def key_files(keys_dir: Path) -> list[Path]:
    """Every private-key file of a home: owner, log, issuers, agents and the vault key."""
    files = sorted(keys_dir.glob("*.key")) + sorted((keys_dir / "agents").glob("*.key"))
    return [p for p in files if p.is_file()]


def change_passphrase(
    keys_dir: Path,
    old: bytes | None,
    new: bytes,
    *,
    cheap_kdf: bool = False,
    step: Step | None = None,
) -> int:
    """Re-seal every key in ``keys_dir`` under ``new``; return how many files were re-sealed.

    ``old`` opens the current seal (or a legacy owner key); a clear home needs none.

    Raises:
        ConfigError: locked, wrong old passphrase, a pending vault key rotation, or a key
            file that does not open (nothing is changed then).
    """
    if not new:
        raise ConfigError("the new passphrase is empty")
    if (keys_dir / "vault.key.new").exists():
        raise ConfigError(
            "a vault master key rotation is pending: run `charter secret list` (it finishes "
            "it) and try again"
        )
    mark = step or (lambda _label: None)
    seal = Seal.read(keys_dir)
    gen = None if seal is None else seal.gen
    kek: Kek | None = None
    if seal is not None:
        if not old:
            raise locked_error()
        kek = seal.derive(old)
    files = key_files(keys_dir)
    plain = [_open(path, gen, old, kek) for path in files]  # all open, or nothing changes
    for leftover in list(keys_dir.rglob("*" + RESEAL_SUFFIX)):
        leftover.unlink()  # an uncommitted change (a committed one was just rolled forward)
    new_seal, new_kek = Seal.new(new, (gen or 0) + 1, cheap=cheap_kdf)
    for path, doc in zip(files, plain, strict=True):
        write_private_json(_pending(path), _resealed(doc, new_kek))
        mark(f"wrote {path.name}")
    write_private_json(_pending(keys_dir / SEAL_FILE), new_seal.doc())
    _sync_dirs(keys_dir)
    mark("before commit")
    os.replace(_pending(keys_dir / SEAL_FILE), keys_dir / SEAL_FILE)  # the commit point
    _sync_dirs(keys_dir)
    mark("committed")
    for path in files:
        os.replace(_pending(path), path)
        mark(f"renamed {path.name}")
    _sync_dirs(keys_dir)
    return len(files)


def _pending(path: Path) -> Path:
    return path.with_name(path.name + RESEAL_SUFFIX)


def _open(path: Path, gen: int | None, old: bytes | None, kek: Kek | None) -> dict[str, Any]:
    """The document of ``path`` with its secret in the clear (in memory only)."""
    if path.name == "vault.key":
        doc = current_doc(path, gen, read_vault_doc)
        if "kdf" in doc:  # derived from a vault passphrase: holds no key to seal
            return doc
        key = vault_key_from_doc(doc, None, lambda: kek)
        return {k: v for k, v in doc.items() if k not in ("key", "sealed")} | {"_secret": key}
    doc = current_doc(path, gen, read_key_doc)
    pair: KeyPair = key_from_doc(doc, path.name, old, lambda: kek)
    rest = {k: v for k, v in doc.items() if k not in ("d", "enc", "sealed")}
    return rest | {"_secret": bytes(pair.signing_key)}


def _resealed(doc: dict[str, Any], kek: Kek) -> dict[str, Any]:
    if "_secret" not in doc:
        return doc
    rest = {k: v for k, v in doc.items() if k != "_secret"}
    return rest | {"sealed": kek.seal(doc["_secret"])}


def _sync_dirs(keys_dir: Path) -> None:
    for folder in (keys_dir, keys_dir / "agents"):
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
