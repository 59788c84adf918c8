"""A client of Charter written against one agent framework's MCP support, run by the interop
venv's python (made by .ci/install-interop), never by Charter's own: these frameworks are not
Charter's dependencies.

    python client.py FRAMEWORK stdio CHARTER_BIN HOME AGENT AUDIENCE
    python client.py FRAMEWORK http URL TOKEN AUDIENCE

It lists Charter's tools through the framework's own tool objects, calls `identity_whoami`
and `token_issue` (for AUDIENCE, scope `audit:read`) through them, and prints one JSON object:
{"tools": [names], "whoami": {...}, "issued": {...}}. No model is involved. Each `run_*`
function mirrors the README snippet of the same framework (section "From agent frameworks").

mypy checks this file from Charter's venv, which has none of these frameworks on purpose:
their imports are marked `import-not-found`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

Result = dict[str, Any]


def _server(argv: list[str]) -> tuple[str, dict[str, Any], str]:
    """(transport, connection facts, audience) from the command line."""
    transport = argv[0]
    if transport == "stdio":
        charter_bin, home, agent, audience = argv[1:5]
        env = {"CHARTER_HOME": home, "PATH": os.environ.get("PATH", "")}
        return (
            transport,
            {"command": charter_bin, "args": ["serve", "--agent", agent], "env": env},
            audience,
        )
    url, token, audience = argv[1:4]
    return transport, {"url": url, "headers": {"Authorization": f"Bearer {token}"}}, audience


def _issue_args(audience: str) -> dict[str, Any]:
    return {"audience": audience, "scopes": ["audit:read"], "ttl_seconds": 300}


async def run_langchain(transport: str, conn: dict[str, Any], audience: str) -> Result:
    from langchain_mcp_adapters.client import MultiServerMCPClient  # type: ignore[import-not-found]

    config = {**conn, "transport": "stdio" if transport == "stdio" else "streamable_http"}
    client = MultiServerMCPClient({"charter": config})
    tools = {tool.name: tool for tool in await client.get_tools()}  # LangChain StructuredTools

    async def call(name: str, args: dict[str, Any]) -> Any:
        # A tool call the way an agent makes one: the artifact keeps the structured result.
        call = {"type": "tool_call", "id": f"call-{name}", "name": name, "args": args}
        message = await tools[name].ainvoke(call)
        return message.artifact["structured_content"]

    return {
        "tools": sorted(tools),
        "whoami": await call("identity_whoami", {}),
        "issued": await call("token_issue", _issue_args(audience)),
    }


async def run_pydantic_ai(transport: str, conn: dict[str, Any], audience: str) -> Result:
    from fastmcp.client.transports import StdioTransport  # type: ignore[import-not-found]
    from pydantic_ai.mcp import MCPToolset  # type: ignore[import-not-found]

    if transport == "stdio":
        toolset = MCPToolset(StdioTransport(conn["command"], conn["args"], env=conn["env"]))
    else:
        toolset = MCPToolset(conn["url"], headers=conn["headers"])
    async with toolset:
        tools = await toolset.list_tools()
        return {
            "tools": sorted(tool.name for tool in tools),
            "whoami": await toolset.direct_call_tool("identity_whoami", {}),
            "issued": await toolset.direct_call_tool("token_issue", _issue_args(audience)),
        }


async def run_openai_agents(transport: str, conn: dict[str, Any], audience: str) -> Result:
    from agents import Agent, RunContextWrapper  # type: ignore[import-not-found]
    from agents.mcp import MCPServerStdio, MCPServerStreamableHttp  # type: ignore[import-not-found]
    from agents.tool_context import ToolContext  # type: ignore[import-not-found]

    server: MCPServerStdio | MCPServerStreamableHttp
    if transport == "stdio":
        server = MCPServerStdio(params=conn, name="charter")
    else:
        server = MCPServerStreamableHttp(params=conn, name="charter")
    async with server:
        agent = Agent(name="assistant", mcp_servers=[server])  # never run: no model
        context = RunContextWrapper(context=None)
        tools = {tool.name: tool for tool in await agent.get_mcp_tools(context)}  # FunctionTools

        async def call(name: str, args: dict[str, Any]) -> Any:
            arguments = json.dumps(args)
            tool_context = ToolContext(
                context=None, tool_name=name, tool_call_id=f"call-{name}", tool_arguments=arguments
            )
            output = await tools[name].on_invoke_tool(tool_context, arguments)
            return json.loads(output if isinstance(output, str) else output["text"])

        return {
            "tools": sorted(tools),
            "whoami": await call("identity_whoami", {}),
            "issued": await call("token_issue", _issue_args(audience)),
        }


async def run_fastmcp(transport: str, conn: dict[str, Any], audience: str) -> Result:
    from fastmcp import Client  # type: ignore[import-not-found]
    from fastmcp.client import transports  # type: ignore[import-not-found]

    if transport == "stdio":
        client = Client(transports.StdioTransport(conn["command"], conn["args"], env=conn["env"]))
    else:
        client = Client(transports.StreamableHttpTransport(conn["url"], headers=conn["headers"]))
    async with client:
        tools = await client.list_tools()
        whoami = await client.call_tool("identity_whoami", {})
        issued = await client.call_tool("token_issue", _issue_args(audience))
        return {
            "tools": sorted(tool.name for tool in tools),
            "whoami": whoami.structured_content,
            "issued": issued.structured_content,
        }


FRAMEWORKS = {
    "langchain": run_langchain,
    "pydantic_ai": run_pydantic_ai,
    "openai_agents": run_openai_agents,
    "fastmcp": run_fastmcp,
}


def main(argv: list[str]) -> int:
    framework, rest = argv[0], argv[1:]
    transport, conn, audience = _server(rest)
    result = asyncio.run(FRAMEWORKS[framework](transport, conn, audience))
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
