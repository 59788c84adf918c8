"""``charter doctor``: check a home and the installation, and say what to fix."""

from __future__ import annotations

import stat
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import click
from rich.table import Table

from charter.cli._common import console, emit_json, home_option, json_option, run_async, settings
from charter.config import HomeLayout
from charter.errors import CharterError
from charter.home import Home
from charter.keys import FileSigner, KeyHandle, Pkcs11Signer, agent_ref
from charter.storage.health import MailSummary
from charter.storage.ports import Tx
from charter.storage.vault import Block
from charter.storage.vault_hosts import is_legacy
from charter.tools import witnesses


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_sdk() -> Check:
    """The installed MCP SDK is a 2.x at least 2.3."""
    try:
        version = metadata.version("mcp")
    except metadata.PackageNotFoundError:
        return Check("mcp sdk", "fail", "not installed", "pip install 'mcp>=2.3,<3'")
    major, minor = (int(p) for p in version.split(".")[:2])
    if major != 2 or minor < 3:
        return Check("mcp sdk", "fail", f"mcp {version}", "pip install 'mcp>=2.3,<3'")
    return Check("mcp sdk", "ok", f"mcp {version} on Python {sys.version.split()[0]}")


def check_permissions(layout: HomeLayout) -> list[Check]:
    """The home and keys folder are 0700 and every key file 0600."""
    out = []
    for folder in (layout.root, layout.keys):
        mode = _mode(folder)
        if mode & 0o077:
            out.append(
                Check(
                    f"permissions {folder.name}/", "fail", f"mode {mode:o}", f"chmod 700 {folder}"
                )
            )
        else:
            out.append(Check(f"permissions {folder.name}/", "ok", f"mode {mode:o}"))
    loose = [p for p in layout.keys.rglob("*.key") if _mode(p) & 0o077]
    if loose:
        out.append(
            Check(
                "key file modes",
                "fail",
                ", ".join(p.name for p in loose),
                "chmod 600 " + " ".join(str(p) for p in loose),
            )
        )
    else:
        out.append(Check("key file modes", "ok", "all 0600"))
    return out


@dataclass(frozen=True)
class Facts:
    """What the checks read from the database, in one snapshot."""

    agent_kids: list[tuple[str, str]]
    integrity: str
    mail: MailSummary | None
    allowed_hosts: list[tuple[str, tuple[str, ...]]]
    blocks: list[Block]


def read_facts(tx: Tx) -> Facts:
    """The database facts of every check (a unit of work)."""
    return Facts(
        agent_kids=tx.health.active_agent_kids(),
        integrity=tx.health.integrity_check(),
        mail=tx.health.mail_summary(),
        allowed_hosts=tx.vault.list_allowed_hosts(),
        blocks=tx.vault.list_blocks(),
    )


def check_key_store(home: Home, facts: Facts) -> list[Check]:
    """How the keys are kept: in a PKCS#11 token (and all there), or in files (sealed or not)."""
    if isinstance(home.signer, Pkcs11Signer):
        return _token_checks(home, home.signer, facts)
    return [_file_store_check(home)]


def _token_checks(home: Home, signer: Pkcs11Signer, facts: Facts) -> list[Check]:
    """Keys in a PKCS#11 token: which token, and that the home's keys are all in it."""
    out = [Check("key store", "ok", signer.describe())]
    try:
        labels = set(signer.labels())
        wanted = {"owner", "log", f"issuer:{home.meta.get('issuer_kid', '')}"}
        wanted |= {agent_ref(name) for name, _ in facts.agent_kids}
        missing = sorted(wanted - labels)
        if missing:
            detail = "missing: " + ", ".join(missing)
            out.append(Check("keys in token", "fail", detail, "restore the token"))
        else:
            detail = f"{len(wanted)} present: " + ", ".join(sorted(wanted))
            out.append(Check("keys in token", "ok", detail))
    except CharterError as exc:
        out.append(Check("keys in token", "fail", exc.public_message, "check the token and PIN"))
    return out


def _file_store_check(home: Home) -> Check:
    """How the keys are kept at rest, whether this process could unlock them, and what a copy
    of the home would yield (SECURITY.md, "Keys at rest")."""
    store = home.signer
    state = store.at_rest() if isinstance(store, FileSigner) else "other"
    if state == "clear":
        return Check(
            "key store",
            "warn",
            "keys in the clear (no passphrase): a copy of the home, or any process of your "
            "account, can sign as every agent and open every secret",
            "seal them: charter keys passphrase --new-passphrase-file FILE",
        )
    if state == "legacy":
        return Check(
            "key store",
            "warn",
            "only the owner key is sealed (a home made before every key was): the log, issuer "
            "and agent keys and the vault master key are in the clear",
            "seal them all: charter keys passphrase --passphrase-file OLD --new-passphrase-file "
            "NEW (the same file twice keeps the passphrase)",
        )
    if state != "sealed":
        return Check("key store", "ok", "kept outside the file store")
    try:
        home.check_unlocked()
    except CharterError as exc:
        locked = "locked" in exc.public_message
        return Check(
            "key store",
            "warn" if locked else "fail",
            "sealed (argon2id); "
            + ("locked: no passphrase given" if locked else "wrong passphrase"),
            "set CHARTER_PASSPHRASE_FILE=FILE (or --passphrase-file) to check the keys open",
        )
    return Check(
        "key store",
        "ok",
        "every key sealed (argon2id); unlocked: a copy of the home yields no key without the "
        "passphrase",
    )


def check_keys(home: Home, facts: Facts) -> list[Check]:
    """Every key file loads and matches what the database expects."""
    out = check_key_store(home, facts)
    store = home.signer
    sealed = isinstance(store, FileSigner) and store.sealed
    can_unlock = isinstance(store, FileSigner) and store.has_passphrase()
    if sealed and can_unlock:
        try:
            home.check_unlocked()
        except CharterError:  # reported once, by the key store check
            can_unlock = False
    if isinstance(store, Pkcs11Signer):
        try:
            home.owner_key()
            out.append(Check("owner key", "ok", "in the token, guarded by its PIN"))
        except CharterError as exc:
            out.append(Check("owner key", "fail", exc.public_message, "restore the token"))
    elif home.owner_key_protected() and not (sealed and can_unlock):
        out.append(Check("owner key", "ok", "present, passphrase-protected"))
    else:
        try:
            home.owner_key()
            out.append(
                Check("owner key", "ok", "present, sealed, matches the ledger")
                if sealed
                else Check(
                    "owner key",
                    "warn",
                    "present, no passphrase",
                    "seal every key: charter keys passphrase --new-passphrase-file FILE",
                )
            )
        except CharterError as exc:
            out.append(Check("owner key", "fail", exc.public_message, "restore owner.key"))
    out.append(Check("log key", "ok", f"kid {home.log_key.kid[:12]}…"))
    for name, kid in facts.agent_kids:
        try:
            key = KeyHandle.of(home.signer, agent_ref(name))
            ok = key.kid == kid
            out.append(
                Check(
                    f"agent key {name}",
                    "ok" if ok else "fail",
                    "matches its charter" if ok else "does not match its charter",
                    "" if ok else f"charter agent revoke {name}",
                )
            )
        except CharterError as exc:
            out.append(
                Check(
                    f"agent key {name}",
                    "fail",
                    exc.public_message,
                    f"restore the key or revoke: charter agent revoke {name}",
                )
            )
    return out


async def check_database(home: Home, facts: Facts) -> list[Check]:
    """SQLite integrity, and the whole ledger verifies."""
    from charter.tools import audit

    out = []
    result = facts.integrity
    out.append(
        Check(
            "database integrity",
            "ok" if result == "ok" else "fail",
            result,
            "" if result == "ok" else "restore charter.db from a backup",
        )
    )
    try:
        report = await audit.verify_home(home)
        out.append(Check("ledger", "ok", f"{report.size} entries verify; head {report.head[:16]}…"))
    except CharterError as exc:
        out.append(
            Check(
                "ledger",
                "fail",
                exc.public_message,
                "export it (charter audit export) and investigate the named entry",
            )
        )
    return out


def check_mail(facts: Facts) -> Check:
    """Mail settings: a configured server, or the local transport."""
    mail = facts.mail
    if mail is None:
        return Check(
            "mail",
            "ok",
            "local transport (agents of this home mail each other)",
            "charter mail setup ... to reach other addresses",
        )
    smtp_host, smtp_port, security = mail.smtp_host, mail.smtp_port, mail.smtp_security
    imap_host, username = mail.imap_host, mail.username
    if security == "none":
        return Check(
            "mail",
            "warn",
            f"SMTP {smtp_host}:{smtp_port} without TLS as {username}",
            "use --smtp-security starttls or tls",
        )
    imap = f", IMAP {imap_host}" if imap_host else ", no IMAP (email_list/email_read off)"
    return Check(
        "mail",
        "ok",
        f"SMTP {smtp_host}:{smtp_port} ({security}){imap} as {username}",
        "charter mail test --to YOU@EXAMPLE.COM checks it",
    )


def check_vault(facts: Facts) -> list[Check]:
    """Allowed hosts stored before ports counted, and agents blocked from a secret."""
    out = []
    legacy = [
        f"{name}: {host}"
        for name, hosts in facts.allowed_hosts
        for host in hosts
        if is_legacy(host)
    ]
    if legacy:
        out.append(
            Check(
                "secret hosts",
                "warn",
                f"stored without scheme and port, so https on port 443 only: {', '.join(legacy)}",
                "for another port or scheme: charter secret set NAME --allow-host "
                "https://HOST:PORT (setting it again also stores the explicit form)",
            )
        )
    blocked = [f"{b.agent} from {b.secret} since {b.blocked_at}" for b in facts.blocks]
    if blocked:
        out.append(
            Check(
                "secret blocks",
                "warn",
                "agents that wrote a secret's value themselves (a guess): " + ", ".join(blocked),
                "check the ledger (charter audit tail), then charter secret unblock NAME "
                "--agent AGENT",
            )
        )
    return out


async def run_checks(
    layout: HomeLayout,
    open_home: Callable[[], Awaitable[Home]],
    *,
    database_url: str | None = None,
) -> list[Check]:
    """Every check, in order; later checks are skipped when the home cannot be opened.
    With ``database_url`` (PostgreSQL) the home folder holds no database file."""
    checks = [check_sdk()]
    if database_url is None and not layout.db.exists():
        checks.append(
            Check(
                "home",
                "fail",
                f"no Charter home at {layout.root}",
                "charter init --owner YOU@EXAMPLE.COM",
            )
        )
        return checks
    checks.extend(check_permissions(layout))
    try:
        home = await open_home()
    except CharterError as exc:
        checks.append(Check("home", "fail", exc.public_message, "see the message"))
        return checks
    async with home:
        checks.append(Check("home", "ok", f"{layout.root} (owner {home.owner_id})"))
        facts = await home.read(read_facts)
        checks.extend(check_keys(home, facts))
        checks.extend(await check_database(home, facts))
        checks.append(check_mail(facts))
        checks.extend(check_vault(facts))
        checks.extend(
            Check("witnesses", "warn", line, "charter witness submit")
            for line in await witnesses.lagging(home)
        )
    return checks


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("doctor")
    @home_option
    @json_option
    @run_async
    async def doctor(home: Path | None, as_json: bool) -> None:
        """Check the home's permissions, keys, database, ledger and the MCP SDK; say what to fix."""
        s = settings(home)
        checks = await run_checks(s.layout, lambda: Home.open(s), database_url=s.database_url)
        failed = any(c.status == "fail" for c in checks)
        if as_json:
            emit_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
        else:
            table = Table("check", "status", "detail", "fix")
            colour = {"ok": "green", "warn": "yellow", "fail": "red"}
            for c in checks:
                table.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", c.detail, c.fix)
            console().print(table)
        sys.exit(1 if failed else 0)
