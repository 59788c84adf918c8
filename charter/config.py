"""Settings, read once at the edge into a frozen object, and the layout of a Charter home."""

from __future__ import annotations

import json
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
#: The home's database when it is not the SQLite file: ``postgresql://…`` (issue 18).
ENV_DATABASE_URL = "CHARTER_DATABASE_URL"
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
    def config(self) -> Path:
        """The home's config file (JSON, owner-only): ``database_url`` when not SQLite."""
        return self.root / "config.json"

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

    def check(self, *, external_db: bool = False) -> None:
        """Refuse a home that is missing or readable by others.

        ``external_db``: the database is not the home's SQLite file (PostgreSQL): the home
        is its keys folder.

        Raises:
            ConfigError: with what to do next.
        """
        if not (self.keys if external_db else self.db).exists():
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
    #: ``postgresql://…``: the home's database (``CHARTER_DATABASE_URL``, else the home's
    #: config file); None: the SQLite file in the home folder.
    database_url: str | None = None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        home: Path | str | None = None,
        agent: str | None = None,
        passphrase_file: Path | None = None,
        database_url: str | None = None,
    ) -> Settings:
        """Resolve settings: CLI flags win, then ``CHARTER_*`` variables, then defaults.

        Raises:
            ConfigError: if ``CHARTER_CHECKPOINT_EVERY`` is not a non-negative integer, or the
                database URL is not a PostgreSQL URL.
        """
        home_value = home or environ.get(ENV_HOME) or default_home()
        every = environ.get(ENV_CHECKPOINT_EVERY, str(DEFAULT_CHECKPOINT_EVERY)).strip()
        if not every.isdigit() or len(every) > 12:
            raise ConfigError(f"{ENV_CHECKPOINT_EVERY} must be a whole number of entries (0: off)")
        root = Path(os.path.expanduser(str(home_value))).resolve()
        url = database_url or environ.get(ENV_DATABASE_URL, "").strip() or None
        return cls(
            home=root,
            database_url=check_database_url(url) if url else read_database_url(root),
            agent=agent or environ.get(ENV_AGENT) or None,
            checkpoint_every=int(every),
            passphrase_file=passphrase_file
            or (Path(environ[ENV_PASSPHRASE_FILE]) if environ.get(ENV_PASSPHRASE_FILE) else None),
        )

    @property
    def layout(self) -> HomeLayout:
        """The home's file layout."""
        return HomeLayout(self.home)


def check_database_url(url: str) -> str:
    """``url`` if it names a PostgreSQL database.

    Raises:
        ConfigError: it does not (the message never repeats the URL: it may hold a password).
    """
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"{ENV_DATABASE_URL} / --database must be a postgresql:// URL"
            " (leave it unset for the home's SQLite file)"
        )
    return url


def read_database_url(root: Path) -> str | None:
    """The ``database_url`` kept in the home's config file, or None.

    Raises:
        ConfigError: the file exists but cannot be read or holds a bad URL.
    """
    path = HomeLayout(root).config
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    url = data.get("database_url") if isinstance(data, dict) else None
    if url is None:
        return None
    if not isinstance(url, str):
        raise ConfigError(f"{path}: database_url must be a string")
    return check_database_url(url)


def write_database_url(root: Path, url: str) -> None:
    """Keep ``url`` in the home's config file (owner-only: it may hold a password)."""
    path = HomeLayout(root).config
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"database_url": url}, handle)
        handle.write("\n")
