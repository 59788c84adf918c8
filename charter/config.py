"""Settings, read once at the edge into a frozen object, and the layout of a Charter home."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from charter.errors import ConfigError

ENV_HOME = "CHARTER_HOME"
ENV_AGENT = "CHARTER_AGENT"
ENV_CHECKPOINT_EVERY = "CHARTER_CHECKPOINT_EVERY"
#: A file holding the passphrase that seals every key of the home (systemd LoadCredential).
ENV_PASSPHRASE_FILE = "CHARTER_PASSPHRASE_FILE"  # noqa: S105 (a variable name)
#: A server signs a checkpoint each time the ledger grows past a multiple of this many entries.
DEFAULT_CHECKPOINT_EVERY = 1000


def default_home() -> Path:
    """The platform's user data dir for Charter (used when ``CHARTER_HOME`` is not set)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("charter", appauthor=False))


@dataclass(frozen=True, slots=True)
class HomeLayout:
    """Where everything lives inside a Charter home."""

    root: Path

    @property
    def db(self) -> Path:
        """The SQLite database (ledger, agents, vault rows)."""
        return self.root / "charter.db"

    @property
    def keys(self) -> Path:
        """Folder of key files (0700)."""
        return self.root / "keys"

    @property
    def owner_key(self) -> Path:
        """The owner's signing key (optionally passphrase-protected)."""
        return self.keys / "owner.key"

    @property
    def log_key(self) -> Path:
        """The key that signs checkpoints and the server's own refusals."""
        return self.keys / "log.key"

    @property
    def key_store(self) -> Path:
        """Names the PKCS#11 token holding the keys, when they are not files (one URI line)."""
        return self.root / "key-store"

    def issuer_key(self, kid: str) -> Path:
        """An issuer (token-signing) key, by key id."""
        return self.keys / f"issuer-{kid}.key"

    def agent_key(self, name: str) -> Path:
        """An agent's signing key."""
        return self.keys / "agents" / f"{name}.key"

    def check(self) -> None:
        """Refuse a home that is missing or readable by others.

        Raises:
            ConfigError: with what to do next.
        """
        if not self.db.exists():
            raise ConfigError(
                f"no Charter home at {self.root}: run `charter init --owner YOU@EXAMPLE.COM` "
                f"(or set {ENV_HOME} to an existing home)"
            )
        for folder in (self.root, self.keys):
            try:
                mode = stat.S_IMODE(folder.stat().st_mode)
            except OSError as exc:
                raise ConfigError(f"cannot read {folder}: {exc.strerror}") from exc
            if mode & 0o077:
                raise ConfigError(
                    f"{folder} is accessible to other users (mode {mode:o}); "
                    f"run `chmod 700 {folder}` and try again"
                )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything Charter reads from flags and the environment, resolved once."""

    home: Path
    agent: str | None = None
    #: Entries between periodic signed checkpoints; 0 turns periodic checkpoints off.
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    #: The passphrase file (``--passphrase-file`` or ``CHARTER_PASSPHRASE_FILE``); read only
    #: when a sealed key is first needed.
    passphrase_file: Path | None = None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        home: Path | str | None = None,
        agent: str | None = None,
        passphrase_file: Path | None = None,
    ) -> Settings:
        """Resolve settings: CLI flags win, then ``CHARTER_*`` variables, then defaults.

        Raises:
            ConfigError: if ``CHARTER_CHECKPOINT_EVERY`` is not a non-negative integer.
        """
        home_value = home or environ.get(ENV_HOME) or default_home()
        every = environ.get(ENV_CHECKPOINT_EVERY, str(DEFAULT_CHECKPOINT_EVERY)).strip()
        if not every.isdigit() or len(every) > 12:
            raise ConfigError(f"{ENV_CHECKPOINT_EVERY} must be a whole number of entries (0: off)")
        return cls(
            home=Path(os.path.expanduser(str(home_value))).resolve(),
            agent=agent or environ.get(ENV_AGENT) or None,
            checkpoint_every=int(every),
            passphrase_file=passphrase_file
            or (Path(environ[ENV_PASSPHRASE_FILE]) if environ.get(ENV_PASSPHRASE_FILE) else None),
        )

    @property
    def layout(self) -> HomeLayout:
        """The home's file layout."""
        return HomeLayout(self.home)
