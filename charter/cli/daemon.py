"""``charter daemon``: serve agents of this home to other OS accounts through a Unix socket."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from charter.cli._common import common_options, run_async, settings
from charter.errors import ConfigError
from charter.home import Home

#: The account the units run the daemon as (created by the administrator).
DEFAULT_ACCOUNT = "charter"
DEFAULT_SOCKET = Path("/run/charter/charter.sock")

_SYSTEMD = """\
# /etc/systemd/system/charter.service: Charter as its own account ({user}).
# The home ({home}) must belong to {user}, mode 0700. The agent's account reaches it only
# through the socket: `charter serve --agent NAME --connect {socket}`.
[Unit]
Description=Charter accountability daemon
After=network.target

[Service]
User={user}
Environment=CHARTER_HOME={home}
# With a sealed home: the passphrase as a credential, never in the environment.
# LoadCredential=charter-passphrase:/etc/charter/passphrase
# Environment=CHARTER_PASSPHRASE_FILE=%d/charter-passphrase
RuntimeDirectory=charter
RuntimeDirectoryMode=0755
ExecStart={charter} daemon --socket {socket}
Restart=on-failure
NoNewPrivileges=true
ProtectSystem=strict
ReadWritePaths={home}
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""

_LAUNCHD = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- /Library/LaunchDaemons/org.charter.daemon.plist: Charter as its own account ({user}). -->
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>org.charter.daemon</string>
  <key>UserName</key><string>{user}</string>
  <key>EnvironmentVariables</key>
  <dict><key>CHARTER_HOME</key><string>{home}</string></dict>
  <key>ProgramArguments</key>
  <array>
    <string>{charter}</string><string>daemon</string>
    <string>--socket</string><string>{socket}</string>
  </array>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><true/>
</dict>
</plist>
"""


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.group("daemon", invoke_without_command=True)
    @click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="The Unix socket to listen on (its folder must exist).",
    )
    @click.option(
        "--log-level",
        default="INFO",
        show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    )
    @common_options()
    @click.pass_context
    @run_async
    async def daemon(
        ctx: click.Context, socket_path: Path | None, log_level: str, home: Path | None
    ) -> None:
        """Run Charter as this OS account and serve agents to the accounts the owner bound to
        them (`charter agent add NAME --os-user USER`), through a Unix socket. Run it as a
        dedicated account that owns the home; see `charter daemon install`."""
        if ctx.invoked_subcommand is not None:
            return
        if socket_path is None:
            raise ConfigError("name the socket: charter daemon --socket PATH")
        from charter.server.daemon import Daemon

        logging.basicConfig(
            stream=sys.stderr,
            level=log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        async with await Home.open(settings(home)) as h:
            h.check_unlocked()  # a sealed home unlocks now, or the daemon does not start
            await Daemon(h).serve(socket_path)

    @daemon.command("install")
    @click.option("--user", default=DEFAULT_ACCOUNT, show_default=True, help="Its OS account.")
    @click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_SOCKET,
        show_default=True,
    )
    @click.option(
        "--write",
        "write_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Write charter.service and org.charter.daemon.plist into this folder.",
    )
    @common_options()
    def install(user: str, socket_path: Path, write_dir: Path | None, home: Path | None) -> None:
        """Print (or write) a systemd unit and a launchd plist that run the daemon as USER."""
        values = {
            "user": user,
            "home": settings(home).home,
            "socket": socket_path,
            "charter": Path(sys.argv[0]).resolve() if sys.argv[0] else "charter",
        }
        unit, plist = _SYSTEMD.format(**values), _LAUNCHD.format(**values)
        if write_dir is None:
            click.echo(unit)
            click.echo(plist, nl=False)
            return
        write_dir.mkdir(parents=True, exist_ok=True)
        (write_dir / "charter.service").write_text(unit)
        (write_dir / "org.charter.daemon.plist").write_text(plist)
        click.echo(
            f"wrote {write_dir / 'charter.service'} and {write_dir / 'org.charter.daemon.plist'}"
        )
