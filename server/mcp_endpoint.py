"""The MCP protocol layer: a thin translation from MCP requests onto the gateway.

The same low-level SDK server answers Streamable HTTP (both protocol eras)
and stdio. Only how the caller is identified differs: over HTTP the bearer
token was already verified by the SDK's auth middleware; over stdio the key
comes from the environment and is checked again on every request, so a key
revoked while a local assistant runs stops working at once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict

from server.gateway import UNKNOWN_TOOL, BoundTool, CallResult, ToolGateway
from store.principal import Principal

SERVER_NAME = "harmony-companion"
TOOLS_SCOPE = "tools"

PrincipalSource = Callable[[], Awaitable[Principal | None]]


class PrincipalToken(AccessToken):
    """An access token that carries the principal its API key resolved to."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    principal: Principal


async def principal_from_bearer() -> Principal | None:
    token = get_access_token()
    return token.principal if isinstance(token, PrincipalToken) else None


def _tool(bound: BoundTool) -> types.Tool:
    annotations = bound.tool.annotations
    return types.Tool(
        name=bound.name,
        title=bound.tool.spec.title,
        description=bound.description,
        input_schema=bound.tool.spec.input_schema,
        output_schema=bound.tool.spec.output_schema,
        annotations=types.ToolAnnotations(
            title=annotations["title"],
            read_only_hint=annotations["readOnlyHint"],
            destructive_hint=annotations["destructiveHint"],
            idempotent_hint=annotations["idempotentHint"],
            open_world_hint=annotations["openWorldHint"],
        ),
    )


def _result(outcome: CallResult) -> types.CallToolResult:
    if outcome.ok:
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(outcome.data, ensure_ascii=False))],
            structured_content=outcome.data,
        )
    return types.CallToolResult(content=[types.TextContent(type="text", text=outcome.message)], is_error=True)


def build_mcp_server(gateway: ToolGateway, principal_source: PrincipalSource, *, version: str) -> Server[Any]:
    async def caller() -> Principal:
        principal = await principal_source()
        if principal is None or TOOLS_SCOPE not in principal.scopes:
            # Reached only when the transport let an unidentified caller through
            # (stdio with a revoked key): refuse rather than guess who it is.
            raise MCPError(code=types.INVALID_REQUEST, message="This API key is not valid for calling tools.")
        return principal

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        principal = await caller()
        tools = [_tool(bound) for bound in await gateway.tools_for(principal)]
        # The list depends on who asks, so no shared cache may keep it.
        return types.ListToolsResult(tools=tools, ttl_ms=0, cache_scope="private")

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        principal = await caller()
        outcome = await gateway.call(principal, params.name, params.arguments)
        if outcome.error_code == UNKNOWN_TOOL:
            # The spec makes an unknown tool a protocol error, not a tool result.
            raise MCPError(code=types.INVALID_PARAMS, message=outcome.message)
        return _result(outcome)

    # Companion offers tools only. These answer truthfully that there are no
    # prompts or resources, as a bare SDK server does, so clients that probe
    # every list get an empty result rather than "method not found".
    async def no_prompts(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[])

    async def no_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[])

    async def no_resource_templates(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[])

    def input_schema(name: str) -> dict[str, Any] | None:
        # Lets the SDK check Mcp-Param headers without running the whole tools/list
        # handler on every call. A suffixed name (a second connection of an app)
        # shares its base tool's schema.
        tool = gateway.registry.tools.get(name.partition("__")[0])
        return tool.spec.input_schema if tool else None

    return Server(
        SERVER_NAME,
        version=version,
        instructions=(
            "Harmony Companion: tools for the apps this workspace and user have connected. "
            "Read tools run at once; tools that write, send or delete need a person's approval."
        ),
        get_tool_input_schema=input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=no_prompts,
        on_list_resources=no_resources,
        on_list_resource_templates=no_resource_templates,
    )
