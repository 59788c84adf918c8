"""``token_*`` tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from mcp.types import ToolAnnotations
from pydantic import Field

from charter.server.calls import current_call
from charter.tools import tokens
from charter.tools.tokens.outbound import TokenHttpResponseOut, token_request_plan
from charter.tools.vault import Method

if TYPE_CHECKING:
    from charter.server.app import CharterServer

ISSUES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
OUTBOUND = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)


def register(server: CharterServer) -> None:
    """Register the token tools."""

    @server.charter_tool(
        "token_issue",
        annotations=ISSUES,
        title="Issue a scoped token",
        visible_args=("audience", "scopes", "ttl_seconds", "dpop_jwk"),
        precheck=False,  # a local effect: its intent's transaction checks revocation
    )
    async def token_issue(
        audience: Annotated[
            str,
            Field(
                min_length=1,
                max_length=512,
                description="The service the token is for; one of your charter's audiences.",
            ),
        ],
        scopes: Annotated[
            list[Annotated[str, Field(max_length=256)]] | None,
            Field(
                max_length=32,
                description="Scopes to put in the token, each within your charter. Omit for "
                "all of your scopes except token:issue; ask for as few as the task needs.",
            ),
        ] = None,
        ttl_seconds: Annotated[
            int,
            Field(ge=1, le=tokens.MAX_TTL_SECONDS, description="Lifetime in seconds (max 3600)."),
        ] = tokens.DEFAULT_TTL_SECONDS,
        dpop_jwk: Annotated[
            dict[str, Any] | None,
            Field(
                description="A client's public JWK (EC P-256 or OKP Ed25519) to bind the "
                "token to (DPoP, RFC 9449): it then works only with a DPoP proof signed by "
                "that key. Omit for a bearer token."
            ),
        ] = None,
    ) -> tokens.IssuedToken:
        """Get a short-lived bearer token (EdDSA JWT) for one service, in your owner's name.

        Use it when a service asks for a Charter token: request that service as `audience`,
        only the scopes the task needs, and a short lifetime. Send the token as
        `Authorization: Bearer <token>`; the service verifies it with Charter's published keys.
        Needs scope `token:issue`. Side effect: a token is issued and recorded in the audit
        ledger (its id, audience, scopes and expiry; never the token). The owner can revoke it
        by its `jti`. Keep the token to yourself: do not print it or put it in email.
        """
        call = current_call()
        call.require("token:issue")
        agent = call.agent
        request = tokens.prepare(
            call.deps.home,
            agent.name,
            agent.charter,
            audience=audience,
            scopes=scopes,
            ttl_seconds=ttl_seconds,
            limit=agent.token_scopes,
            dpop_jwk=dpop_jwk,
        )
        return await call.run(tokens.issue_plan(call.deps.home, request))

    @server.charter_tool(
        "token_http_request",
        annotations=OUTBOUND,
        title="HTTP request with a fresh DPoP token",
        visible_args=("audience", "method", "scopes"),
    )
    async def token_http_request(
        audience: Annotated[
            str,
            Field(
                min_length=1,
                max_length=512,
                description="The service to call; one of your charter's audiences (a URL).",
            ),
        ],
        method: Annotated[Method, Field(description="HTTP method.")],
        url: Annotated[
            str,
            Field(
                max_length=8192,
                description="The URL to call: on the audience's scheme, host and port, under "
                "its path; https (http only for loopback hosts).",
            ),
        ],
        headers: Annotated[
            dict[str, Annotated[str, Field(max_length=8192)]] | None,
            Field(
                max_length=50,
                description="Extra request headers (not Authorization or DPoP: Charter sets them).",
            ),
        ] = None,
        # NOTE: plain `str` (not Optional): the SDK would parse a JSON-looking Optional body.
        body: Annotated[
            str,
            Field(max_length=1024 * 1024, description="Request body (text). Empty: no body."),
        ] = "",
        scopes: Annotated[
            list[Annotated[str, Field(max_length=256)]] | None,
            Field(
                max_length=32,
                description="Scopes for the token, each within your charter. Omit for all of "
                "your scopes except token:issue; ask for as few as the task needs.",
            ),
        ] = None,
    ) -> TokenHttpResponseOut:
        """Call a service that accepts Charter tokens, without ever handling the token.

        Prefer this to `token_issue` when you only need to make a request: Charter mints a
        short-lived (60 s) token for `audience`, bound to your own key (DPoP, RFC 9449, so it
        is useless if copied), signs the DPoP proof for this request with your key, sends
        `Authorization: DPoP <token>` and `DPoP: <proof>`, and returns the response. You never
        see the token or the proof: wherever the service echoes them they read
        `[REDACTED:token]` / `[REDACTED:dpop_proof]`. No redirect is followed (a 3xx comes
        back as is); the body is capped at 1 MiB (`truncated`), the exchange at 30 s.
        Needs scope `token:issue`. Side effects: whatever the request does, and a token
        issued; its id, audience, scopes and the method, scheme, host and port are recorded
        in the audit ledger before the request is sent (never the token or the proof).
        """
        call = current_call()
        call.require("token:issue")
        plan = await token_request_plan(
            call.deps.home,
            call.agent,
            audience=audience,
            method=method,
            url=url,
            headers=headers,
            body=body or None,
            scopes=scopes,
        )
        return await call.run(plan)
