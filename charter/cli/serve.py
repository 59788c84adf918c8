"""``charter serve``: the MCP server over stdio (one agent) or streamable HTTP (many agents)."""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import click

from charter.cli._common import common_options, file_option, run_async, settings
from charter.errors import ConfigError
from charter.home import Home, resolve_passphrase
from charter.scopes import validate_scopes
from charter.tools.identity import AgentContext, load_agent

log = logging.getLogger("charter.serve")


def register(cli: click.Group) -> None:
    """Add the command."""

    @cli.command("serve")
    @click.option(
        "--agent",
        default=None,
        help="The agent this stdio server acts as (default: $CHARTER_AGENT).",
    )
    @click.option(
        "--log-level",
        default="WARNING",
        show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    )
    @click.option("--http", "http", is_flag=True, help="Serve streamable HTTP (bearer tokens).")
    @click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address.")
    @click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
    @click.option(
        "--issuer",
        default=None,
        help="Public origin of the HTTP server, the tokens' `iss`: must be the home's issuer "
        "(default: the home's; if none is set yet, this or http://HOST:PORT is recorded).",
    )
    @click.option(
        "--allow-remote", is_flag=True, help="Allow binding a non-loopback address (HTTP)."
    )
    @file_option(
        "--introspection-secret-file",
        "File holding a secret relying parties present to POST /introspect.",
    )
    @click.option(
        "--require-scope",
        "required_scopes",
        multiple=True,
        help="Admit only tokens carrying this scope (HTTP 403 otherwise; repeatable).",
    )
    @click.option(
        "--dpop-nonce",
        is_flag=True,
        help="HTTP: DPoP proofs must carry a server nonce (RFC 9449 §8), handed out in "
        "DPoP-Nonce; every server of the home accepts the others' nonces.",
    )
    @click.option(
        "--connect",
        "connect",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        envvar="CHARTER_CONNECT",
        help="Relay stdio to a Charter daemon's socket (`charter daemon`): no home needed "
        "(default: $CHARTER_CONNECT).",
    )
    @click.option(
        "--console-url",
        default=None,
        envvar="CHARTER_CONSOLE_URL",
        help="The owner's console (`charter console`), e.g. http://127.0.0.1:8766: clients "
        "that support URL-mode elicitation are sent there for owner approvals (stdio).",
    )
    @common_options()
    @run_async
    async def serve(
        agent: str | None,
        log_level: str,
        http: bool,
        host: str,
        port: int,
        issuer: str | None,
        allow_remote: bool,
        introspection_secret_file: Path | None,
        required_scopes: tuple[str, ...],
        dpop_nonce: bool,
        connect: Path | None,
        console_url: str | None,
        home: Path | None,
    ) -> None:
        """Serve MCP over stdio as one agent (stdout carries only JSON-RPC; logs go to stderr),
        or with --http over streamable HTTP, where each request's bearer token names its agent.
        """
        logging.basicConfig(
            stream=sys.stderr,
            level=log_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if dpop_nonce and not http:
            raise ConfigError("--dpop-nonce is for --http (stdio and --connect take no tokens)")
        if console_url is not None and (http or connect is not None):
            raise ConfigError(
                "--console-url works with a stdio server of a home (not --http or --connect "
                "yet): owner approvals there stay `charter approve ID`"
            )
        if connect is not None:
            await _relay(connect, agent, http=http)
            return
        if http:
            if agent:
                raise ConfigError("--agent is for stdio; over HTTP each token names its agent")
            async with await Home.open(settings(home)) as h:
                h.check_unlocked()  # refuse now, not at the first signature
                await run_http(
                    h,
                    host=host,
                    port=port,
                    issuer=issuer,
                    allow_remote=allow_remote,
                    secret=resolve_passphrase(introspection_secret_file),
                    required_scopes=validate_scopes(required_scopes),
                    log_level=log_level,
                    dpop_nonce=dpop_nonce,
                )
            return
        s = settings(home, agent)
        if not s.agent:
            raise ConfigError("name the agent to serve: --agent NAME or CHARTER_AGENT=NAME")
        async with await Home.open(s) as h:
            # A sealed home is unlocked now (CHARTER_PASSPHRASE_FILE), or the server refuses
            # to start with one line, rather than failing at its first signature.
            h.check_unlocked()
            await run_stdio(h, await load_agent(h, s.agent), console_url=console_url)


async def run_http(
    home: Home,
    *,
    host: str,
    port: int,
    issuer: str | None,
    allow_remote: bool,
    secret: bytes | None,
    required_scopes: list[str],
    log_level: str,
    dpop_nonce: bool = False,
) -> None:
    """Serve streamable HTTP as the home's issuer (tokens must carry it as ``iss``).

    The issuer is set on purpose (``charter init --issuer``, ``charter token issuer set``);
    only when none is set yet does the first server record its own (``--issuer`` or
    ``http://HOST:PORT``). A server never changes it: an ``--issuer`` that differs is
    refused, and a server whose address differs from the recorded issuer warns and keeps
    advertising the recorded one.
    """
    from charter.server.http import serve_http
    from charter.tools import tokens

    loopback = host == "localhost" or _is_loopback_ip(host)
    if not loopback:
        if not allow_remote:
            raise ConfigError(f"{host} is not a loopback address: pass --allow-remote to bind it")
        if issuer is None:
            raise ConfigError("a non-loopback bind needs --issuer (the URL clients reach)")
        log.warning("binding %s: this server is reachable from other machines", host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    own = tokens.normalize_issuer(issuer or f"http://{netloc}")
    recorded = await tokens.recorded_issuer(home)
    if recorded is None:
        await tokens.set_issuer(home, own)
        click.echo(
            f"No issuer was set for this home: recorded {own} "
            "(change it on purpose with `charter token issuer set URL`)",
            err=True,
        )
    elif issuer is not None and own != recorded:
        raise ConfigError(
            f"--issuer {own} is not this home's issuer ({recorded}); change the issuer on "
            "purpose with `charter token issuer set URL` (outstanding tokens stop verifying)"
        )
    elif own != recorded:
        log.warning(
            "this server listens on http://%s but advertises the home's issuer %s: tokens "
            "name %s; set another with `charter token issuer set URL`",
            netloc,
            recorded,
            recorded,
        )
    url = await tokens.issuer(home)
    click.echo(f"Charter MCP at {tokens.resource_url(url)} (issuer {url})", err=True)
    await serve_http(
        home,
        host=host,
        port=port,
        issuer_url=url,
        introspection_secret=secret,
        required_scopes=required_scopes,
        log_level=log_level,
        dpop_nonce=dpop_nonce,
    )


async def _relay(socket_path: Path, agent: str | None, *, http: bool) -> None:
    """``--connect``: relay stdio to the daemon as ``agent`` (on a thread: it blocks)."""
    import asyncio

    from charter.cli._relay import relay

    if http:
        raise ConfigError("--connect relays stdio; it cannot be combined with --http")
    name = agent or settings(None).agent
    if not name:
        raise ConfigError("name the agent to serve: --agent NAME or CHARTER_AGENT=NAME")
    await asyncio.to_thread(relay, socket_path, name)


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def run_stdio(home: Home, agent: AgentContext, *, console_url: str | None = None) -> None:
    """Serve ``agent`` over stdio until the client disconnects.

    ``console_url``: the owner's console, for URL-mode owner approvals (refused if it cannot
    name a local console; a warning if nothing answers there now).
    """
    # NOTE: imported here: every other CLI command loads this module too, and none of them
    # needs the MCP SDK (about 0.35 s of imports).
    from charter.server.deps import Deps
    from charter.server.stdio import serve_stdio
    from charter.server.wiring import build_server

    async def resolve() -> AgentContext:
        return agent

    url = None
    if console_url is not None:
        from charter.server.console_link import check_console_url, console_answers

        url = check_console_url(console_url)
        if not await console_answers(url):
            log.warning(
                "nothing answers at the console URL %s: start `charter console --port %s`; "
                "until then owner approvals stay `charter approve ID`",
                url,
                url.rpartition(":")[2],
            )
    await serve_stdio(build_server(Deps(home=home, resolve_agent=resolve, console_url=url)))
