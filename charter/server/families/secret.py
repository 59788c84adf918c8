"""``secret_*`` tools: use a secret without seeing it, or (rarely) read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from mcp.types import ToolAnnotations
from pydantic import Field

from charter.server.app import READ_ONLY
from charter.server.calls import current_call
from charter.storage.vault import Vault
from charter.tools.vault import (
    HttpResponseOut,
    Method,
    SecretListOut,
    SecretOut,
    http_request_plan,
    placeholder_names,
    reveal_plan,
    vault_of,
    visible_secrets,
)

if TYPE_CHECKING:
    from charter.server.app import CharterServer

SecretName = Annotated[str, Field(min_length=1, max_length=100, description="The secret's name.")]

REVEAL = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
OUTBOUND = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)


def register(server: CharterServer) -> None:
    """Register the secret tools."""
    cache: dict[str, Vault] = {}

    def vault() -> Vault:
        # One Vault per server: it caches the decrypted master key between calls.
        if "vault" not in cache:
            cache["vault"] = vault_of(server.deps.home)
        return cache["vault"]

    @server.charter_tool("secret_list", annotations=READ_ONLY, title="List my secrets")
    async def secret_list() -> SecretListOut:
        """List the secrets this agent may use or read: names, descriptions, allowed hosts.

        Never returns values. To use one, put `{{secret:NAME}}` in a `secret_http_request`.
        Needs no scope (shows only what `secret:use:*` / `secret:read:*` grants allow). No side
        effects.
        """
        return await visible_secrets(server.deps.home, vault(), current_call().allows)

    @server.charter_tool(
        "secret_http_request",
        annotations=OUTBOUND,
        title="HTTP request using a secret",
        visible_args=("method",),
    )
    async def secret_http_request(
        method: Annotated[Method, Field(description="HTTP method.")],
        url: Annotated[
            str,
            Field(
                max_length=8192,
                description="https URL; `{{secret:NAME}}` allowed in the path and query "
                "(percent-encoded when injected), never in the host.",
            ),
        ],
        headers: Annotated[
            dict[str, Annotated[str, Field(max_length=8192)]] | None,
            Field(
                max_length=50,
                description='Request headers, e.g. {"Authorization": "Bearer {{secret:API_KEY}}"}.',
            ),
        ] = None,
        # NOTE: plain `str` (not Optional): the SDK would parse a JSON-looking Optional body.
        body: Annotated[
            str,
            Field(
                max_length=1024 * 1024,
                description="Request body (text); may hold placeholders. Empty: no body.",
            ),
        ] = "",
    ) -> HttpResponseOut:
        """Send an HTTP request with secrets injected server-side, without you seeing them.

        This is the default way to use a credential. Write `{{secret:NAME}}` where the value
        goes: in a header value, the body, or the URL's path or query. Each secret needs the
        scope `secret:use:NAME`, and the URL's scheme, host and port must be one of that
        secret's allowed hosts (see `secret_list`); https only, except for loopback hosts.
        Never write a secret's value yourself: a request holding it outside a placeholder is
        refused and blocks you from that secret. Each secret may be used a limited number of
        times per minute (default 60). Redirects are followed (at most 5) only while they
        stay on hosts every injected secret allows; otherwise the 3xx response is returned
        with `redirect_refused` set. The response
        comes back with every occurrence of a secret replaced by `[REDACTED:NAME]`, the body
        capped at 1 MiB (`truncated`), the whole exchange bounded to 30 s. Side effects:
        whatever the remote request does; the secret names, versions, method, scheme, host
        and port are recorded in the audit ledger before it is sent (never the values).
        """
        call = current_call()
        # Scope checks go through the gate (token narrowing, approval policy); the service
        # checks the charter again and the hosts.
        for secret_name in placeholder_names(url, *(headers or {}).values(), body):
            call.require(f"secret:use:{secret_name}")
        plan = await http_request_plan(
            server.deps.home,
            vault(),
            call.agent.charter.scopes,
            agent=call.agent.name,
            method=method,
            url=url,
            headers=headers,
            body=body or None,
        )
        return (await call.run(plan)).response

    @server.charter_tool(
        "secret_get",
        annotations=REVEAL,
        title="Read a secret's value",
        action="secret.read",
        visible_args=("name",),
        hash_result=False,  # the result is the secret: not even its hash goes in the ledger
        precheck=False,  # a local effect: its intent's transaction checks revocation
    )
    async def secret_get(name: SecretName) -> SecretOut:
        """Return a secret's value. Prefer `secret_http_request`, which never reveals it.

        Use only for a credential that cannot travel in an HTTP request (e.g. a database
        password for a local tool). Needs the scope `secret:read:NAME`. Side effect: the read
        (name and version, never the value) is recorded in the audit ledger before the value
        is returned. Never repeat the value in chat, files or logs.
        """
        call = current_call()
        call.require(f"secret:read:{name}")
        return await call.run(
            await reveal_plan(server.deps.home, vault(), call.agent.charter.scopes, name)
        )
