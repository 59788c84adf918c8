"""``charter daemon install`` and the relay's one-line failures (no OS accounts needed)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from charter.cli import cli


def test_install_prints_a_unit_and_a_plist_for_the_account(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(
        cli,
        [
            "daemon",
            "install",
            "--user",
            "svc-charter",
            "--socket",
            "/run/x/c.sock",
            "--home",
            str(home),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "User=svc-charter" in result.output
    assert f"Environment=CHARTER_HOME={home}" in result.output
    assert "daemon --socket /run/x/c.sock" in result.output
    assert "<key>UserName</key><string>svc-charter</string>" in result.output
    written = CliRunner().invoke(
        cli, ["daemon", "install", "--write", str(tmp_path / "units"), "--home", str(home)]
    )
    assert written.exit_code == 0, written.output
    assert (tmp_path / "units" / "charter.service").read_text().startswith("# /etc/systemd")
    assert "org.charter.daemon" in (tmp_path / "units" / "org.charter.daemon.plist").read_text()


def test_the_daemon_needs_a_socket() -> None:
    result = CliRunner().invoke(cli, ["daemon"])
    assert result.exit_code != 0
    assert "charter daemon --socket PATH" in result.output
    assert "Traceback" not in result.output


def test_a_relay_without_a_daemon_fails_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--agent", "bot", "--connect", str(tmp_path / "none.sock")]
    )
    assert result.exit_code != 0
    assert "cannot reach the Charter daemon" in result.output
    assert "Traceback" not in result.output


def test_a_relay_is_stdio_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--http", "--connect", str(tmp_path / "x.sock")])
    assert result.exit_code != 0 and "cannot be combined with --http" in result.output


def test_charter_connect_in_the_environment_makes_serve_a_relay(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", "--agent", "bot"],
        env={"CHARTER_CONNECT": str(tmp_path / "env.sock")},
    )
    assert result.exit_code != 0
    assert "env.sock" in result.output  # it tried the daemon, not a home
