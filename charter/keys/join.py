"""The key files a second host copies to join a team deployment (``charter init --join``).

Several hosts run Charter servers on one PostgreSQL database (docs/DEPLOY.md). The database
holds no private key; each host's home folder holds the keys its servers sign with:

- ``log.key``: signs checkpoints (every server signs them; the home refuses to open on a
  database whose ledger names another log key);
- ``issuer-*.key``: signs tokens (one issuer: every server's JWKS is the same);
- ``vault.key`` (and ``seal.json`` for a sealed home): the vault's master key, to use secrets;
- ``agents/*.key``: the agents whose entries this host's servers sign;
- ``key-store`` (in the home folder) when the keys live in a PKCS#11 token (the host then
  needs that token too).

``owner.key`` stays on the owner's machine unless asked for: owner actions (agents, charters,
lockdown, secrets) are signed there; a joined host without it refuses them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from charter.config import HomeLayout
from charter.errors import ConfigError

#: Files of a keys folder a joined host needs (besides ``agents/*.key`` and issuer keys).
_SHARED = ("log.key", "vault.key", "seal.json")


def copy_for_join(home: Path, layout: HomeLayout, *, owner: bool = False) -> list[str]:
    """Copy the key files a second host needs from another home folder ``home`` (or a copy
    of it) into ``layout`` (created owner-only); the names copied, relative to the home.

    Raises:
        ConfigError: ``home`` is not a Charter home (no ``keys/log.key`` and no key store),
            or a file cannot be copied.
    """
    theirs = HomeLayout(home.expanduser())
    source = theirs.keys
    if not (source / "log.key").exists() and not theirs.key_store.exists():
        raise ConfigError(f"{theirs.root} is not a Charter home (no keys/log.key)")
    names = [f"keys/{n}" for n in _SHARED if (source / n).exists()]
    names += sorted(f"keys/{p.name}" for p in source.glob("issuer-*.key"))
    names += sorted(f"keys/agents/{p.name}" for p in (source / "agents").glob("*.key"))
    if owner and (source / "owner.key").exists():
        names.append("keys/owner.key")
    if theirs.key_store.exists():
        names.append(theirs.key_store.name)
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(layout.root, 0o700)
    (layout.keys / "agents").mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(layout.keys, 0o700)
    os.chmod(layout.keys / "agents", 0o700)
    try:
        for name in names:
            fd = os.open(layout.root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, (theirs.root / name).open("rb") as src:
                shutil.copyfileobj(src, out)
    except OSError as exc:
        raise ConfigError(f"cannot copy the keys from {theirs.root}: {exc.strerror}") from exc
    return names
