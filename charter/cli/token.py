"""``charter token issue|verify|revoke``: the owner's side of scoped agent tokens."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from charter.cli._common import (
    common_options,
    emit_json,
    emit_result,
    open_home,
    owner_passphrase,
    reason_option,
    run_async,
)
from charter.errors import TokenInvalid
from charter.home import Home
from charter.tools import tokens


def register(cli: click.Group) -> None:
    """Add the command group."""

    @cli.group("token")
    def token() -> None:
        """Issue, verify and revoke agents' scoped tokens (EdDSA JWTs)."""

    @token.command("issue")
    @click.option("--agent", "agent_name", required=True, help="The agent the token is for.")
    @click.option("--audience", required=True, help="The service (one of the charter's).")
    @click.option(
        "--scope", "scopes", multiple=True, help="A scope (repeatable; default: the charter's)."
    )
    @click.option(
        "--ttl",
        default=tokens.DEFAULT_TTL_SECONDS,
        show_default=True,
        # Checked here so the error names --ttl (the service's own check names ttl_seconds).
        type=click.IntRange(1, tokens.MAX_TTL_SECONDS),
        help=f"Lifetime in seconds (1 to {tokens.MAX_TTL_SECONDS}).",
    )
    @click.option(
        "--dpop-jwk",
        "dpop_jwk_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Bind the token to this client public key (a JWK file, P-256 or Ed25519): it "
        "then works only with a DPoP proof signed by that key (RFC 9449).",
    )
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def issue(
        agent_name: str,
        audience: str,
        scopes: tuple[str, ...],
        ttl: int,
        dpop_jwk_file: Path | None,
        home: Path | None,
        passphrase_file: Path | None,
        as_json: bool,
    ) -> None:
        """Issue a token for AGENT (e.g. for an MCP client connecting over HTTP).

        The token goes to stdout alone, so `TOKEN=$(charter token issue ...)` works; its id
        and expiry go to stderr. It is shown once and never stored.
        With --dpop-jwk it is a DPoP token, bound to that key.
        """
        dpop_jwk = None if dpop_jwk_file is None else _read_jwk(dpop_jwk_file)
        async with await open_home(home) as h:
            issued = await tokens.issue_for_owner(
                h,
                agent_name,
                audience=audience,
                scopes=list(scopes) or None,
                ttl_seconds=ttl,
                passphrase=owner_passphrase(h, passphrase_file),
                dpop_jwk=dpop_jwk,
            )
        if as_json:
            emit_json(issued.model_dump())
            return
        click.echo(issued.token)
        click.echo(
            f"{issued.token_type} token  jti {issued.jti}  "
            f"scopes {' '.join(issued.scopes) or '(none)'}  "
            f"expires {issued.expires_at}",
            err=True,
        )

    @token.command("verify")
    @click.argument("value", metavar="TOKEN")
    @click.option("--audience", required=True, help="The audience the token must be for.")
    @click.option("--issuer", default=None, help="Expected issuer (default: this home's).")
    @click.option("--dpop", "proof", default=None, help="The request's DPoP proof (RFC 9449).")
    @click.option("--method", default=None, help="With --dpop: the request's HTTP method.")
    @click.option("--url", default=None, help="With --dpop: the request's URL.")
    @common_options(as_json=True)
    @run_async
    async def verify(
        value: str,
        audience: str,
        issuer: str | None,
        proof: str | None,
        method: str | None,
        url: str | None,
        home: Path | None,
        as_json: bool,
    ) -> None:
        """Check TOKEN completely (`-` reads it from stdin) and print its claims or why not.

        Pins EdDSA, the issuer, the audience and every required claim, and checks revocation
        of the token and its agent. With --dpop PROOF --method M --url U, also checks the
        DPoP proof of a request of M to U (RFC 9449) and records its jti as used (a second
        check of the same proof is a replay); a DPoP-bound token needs --dpop. Exits 5 when
        the token is invalid.
        """
        text = sys.stdin.readline().strip() if value == "-" else value.strip()
        if proof is not None and not (method and url):
            raise click.UsageError("--dpop needs --method and --url (the request it came with)")
        if proof is None and (method or url):
            raise click.UsageError("--method and --url go with --dpop")
        if url is not None and tokens.dpop.normalize_htu(url) is None:
            raise click.BadParameter("must be an absolute http(s) URL", param_hint="--url")
        async with await open_home(home) as h:
            try:
                verified = await _verify(h, text, audience, issuer, proof, method, url)
            except TokenInvalid as exc:
                if as_json:
                    emit_json({"valid": False, "error": exc.code, "reason": exc.reason})
                else:
                    click.secho(f"invalid: {exc.reason}", fg="red", err=True)
                sys.exit(exc.exit_code)
        if as_json:
            emit_json({"valid": True, "agent": verified.agent_name, "claims": verified.claims})
            return
        click.echo(f"valid: token {verified.jti} of agent {verified.agent_name}")
        emit_json(verified.claims)

    @token.group("issuer", invoke_without_command=True)
    @common_options()
    @click.pass_context
    @run_async
    async def issuer_group(ctx: click.Context, home: Path | None) -> None:
        """Show this home's token issuer (`iss`); `issuer set URL` changes it."""
        if ctx.invoked_subcommand is not None:
            return
        async with await open_home(home) as h:
            recorded = await tokens.recorded_issuer(h)
        if recorded is None:
            click.echo(f"{tokens.DEFAULT_ISSUER} (default: none set yet)")
        else:
            click.echo(recorded)

    @issuer_group.command("set")
    @click.argument("url")
    @common_options()
    @run_async
    async def issuer_set(url: str, home: Path | None) -> None:
        """Set the issuer to URL, an http(s) origin: the URL clients reach the server at.

        Every outstanding token stops verifying (its `iss` no longer matches); restart any
        running `charter serve --http` so it advertises the new issuer.
        """
        async with await open_home(home) as h:
            previous = await tokens.issuer(h)
            changed = await tokens.set_issuer(h, url)
            current = await tokens.issuer(h)
        if changed:
            click.echo(f"Issuer is now {current} (was {previous}); restart running servers")
        else:
            click.echo(f"Issuer is already {current}")

    @token.command("revoke")
    @click.argument("jti")
    @reason_option
    @common_options(passphrase=True, as_json=True)
    @run_async
    async def revoke(
        jti: str, reason: str, home: Path | None, passphrase_file: Path | None, as_json: bool
    ) -> None:
        """Revoke the token with id JTI: refused everywhere from now on."""
        async with await open_home(home) as h:
            record = await tokens.revoke(
                h, jti, reason=reason, passphrase=owner_passphrase(h, passphrase_file)
            )
        emit_result(
            record, as_json, f"Revoked token {jti} of agent {record.agent} at {record.revoked_at}"
        )


async def _verify(
    h: Home,
    text: str,
    audience: str,
    issuer: str | None,
    proof: str | None,
    method: str | None,
    url: str | None,
) -> tokens.VerifiedToken:
    """``text`` verified, with its DPoP proof when given (a DPoP-bound token needs one)."""
    issuer_url = tokens.normalize_issuer(issuer) if issuer else None
    if proof is None or method is None or url is None:
        verified = await tokens.verify(h, text, audience=audience, issuer_url=issuer_url)
        tokens.require_proof(verified)
        return verified
    return await tokens.verify_with_proof(
        h, text, proof, method=method, url=url, audience=audience, issuer_url=issuer_url
    )


def _read_jwk(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a client's public JWK; checked by the token service)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise click.BadParameter(
            "must be a file holding one JWK (JSON)", param_hint="--dpop-jwk"
        ) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must hold one JWK (a JSON object)", param_hint="--dpop-jwk")
    return value
