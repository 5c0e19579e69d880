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
from typing import Any, Literal

import mcp_types as types
from mcp.server import ServerRequestContext
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import RequestStateBoundary, RequestStateSecurity
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from server.bearer import PrincipalToken
from server.services.call_result import CallResult
from server.services.confirmation import IN_CHAT_REMEMBER, Answer, Channel, Prompt
from server.services.tool_gateway import (
    GET_APPROVAL,
    GET_APPROVAL_INPUT,
    GET_APPROVAL_OUTPUT,
    UNKNOWN_TOOL,
    BoundTool,
    ToolGateway,
)
from store.principal import Principal

SERVER_NAME = "harmony-companion"
TOOLS_SCOPE = "tools"
INPUT_KEY = "approval"

PrincipalSource = Callable[[], Awaitable[Principal | None]]


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
        output_schema=bound.output_schema,
        annotations=types.ToolAnnotations(
            title=annotations["title"],
            read_only_hint=annotations["readOnlyHint"],
            destructive_hint=annotations["destructiveHint"],
            idempotent_hint=annotations["idempotentHint"],
            open_world_hint=annotations["openWorldHint"],
        ),
    )


GET_APPROVAL_TOOL = types.Tool(
    name=GET_APPROVAL,
    title="Get an approval",
    description=(
        "The state of an approval a tool call is waiting for. Once a person has approved it, this runs the "
        "call (once) and returns its result; later calls return the same result."
    ),
    input_schema=GET_APPROVAL_INPUT,
    output_schema=GET_APPROVAL_OUTPUT,
    annotations=types.ToolAnnotations(
        title="Get an approval",
        read_only_hint=False,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    ),
)


def _result(outcome: CallResult) -> types.CallToolResult | types.InputRequiredResult:
    if outcome.prompt is not None:
        return _input_required(outcome.prompt)
    if outcome.ok:
        text = outcome.message or json.dumps(outcome.data, ensure_ascii=False)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=outcome.data
        )
    return types.CallToolResult(content=[types.TextContent(type="text", text=outcome.message)], is_error=True)


def confirm_schema(prompt: Prompt) -> dict[str, Any]:
    """The in-chat form: approve or deny, a reason, and "remember" for at most an hour, said in plain words."""
    return {
        "type": "object",
        "properties": {
            "decision": {
                "type": "string",
                "title": "Decision",
                "enum": ["approve", "deny"],
                "enumNames": ["Approve", "Deny"],
            },
            "remember": {
                "type": "string",
                "title": "Remember this choice for 1 hour",
                "description": prompt.remember_scope or "",
                "enum": ["no", IN_CHAT_REMEMBER],
                "enumNames": ["No, ask every time", "For 1 hour"],
                "default": "no",
            },
            "reason": {"type": "string", "title": "Reason (if you deny)", "maxLength": 500},
        },
        "required": ["decision"],
    }


def _answer_of(prompt_of: tuple[str, str, Literal["form", "url"]], reply: types.ElicitResult) -> Answer:
    """The client's reply in the flow's words. Only strings are read from the form: it is the client's to fill."""
    approval_id, nonce, kind = prompt_of
    content = dict(reply.content) if reply.content else {}
    decision = content.get("decision")
    remember = content.get("remember")
    reason = content.get("reason")
    return Answer(
        approval_id,
        nonce,
        kind,
        reply.action,
        decision="approve" if decision == "approve" else "deny" if decision == "deny" else None,
        remember=remember if isinstance(remember, str) else None,
        reason=reason[:500] if isinstance(reason, str) else None,
    )


def _input_required(prompt: Prompt) -> types.InputRequiredResult:
    if prompt.kind == "form":
        params: types.ElicitRequestParams = types.ElicitRequestFormParams(
            message=prompt.message, requested_schema=confirm_schema(prompt)
        )
    else:
        params = types.ElicitRequestURLParams(message=prompt.message, url=prompt.url)
    state = {"approval_id": prompt.approval_id, "nonce": prompt.nonce, "kind": prompt.kind}
    return types.InputRequiredResult(
        input_requests={INPUT_KEY: types.ElicitRequest(params=params)}, request_state=json.dumps(state)
    )


def _answer(params: types.CallToolRequestParams) -> Answer | None:
    """The person's reply carried by a 2026-07-28 retry, if it is one.

    The SDK has already unsealed and checked ``request_state`` (expiry, tool,
    arguments and caller); what is inside is the state this server issued.
    """
    if not params.request_state or not params.input_responses:
        return None
    try:
        state = json.loads(params.request_state)
        reply = params.input_responses[INPUT_KEY]
    except (ValueError, KeyError):
        return None
    if not isinstance(state, dict) or not isinstance(reply, types.ElicitResult):
        return None
    kind: Literal["form", "url"] = "url" if state.get("kind") == "url" else "form"
    return _answer_of((str(state.get("approval_id", "")), str(state.get("nonce", "")), kind), reply)


def _channel(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Channel:
    """What this client can be asked through, from the capabilities it declared."""
    declared = ctx.session.client_capabilities
    elicitation = declared.elicitation if declared else None
    if elicitation is None:
        return Channel()
    # A bare {"elicitation": {}} is the 2025-06 way of saying "form".
    form = elicitation.form is not None or elicitation.url is None
    url = elicitation.url is not None
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return Channel(form=form, url=url, answer=_answer(params))
    if not ctx.session.can_send_request:
        return Channel()

    async def ask(prompt: Prompt) -> Answer:
        if prompt.kind == "form":
            reply = await ctx.session.elicit_form(
                prompt.message, confirm_schema(prompt), related_request_id=ctx.request_id
            )
        else:
            reply = await ctx.session.elicit_url(
                prompt.message, prompt.url, elicitation_id=prompt.approval_id, related_request_id=ctx.request_id
            )
        return _answer_of((prompt.approval_id, prompt.nonce, prompt.kind), reply)

    return Channel(form=form, url=url, ask_inline=ask)


def build_mcp_server(
    gateway: ToolGateway, principal_source: PrincipalSource, *, version: str, state_key: bytes, state_ttl: float
) -> Server[Any]:
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
        tools = [_tool(bound) for bound in await gateway.tools_for(principal)] + [GET_APPROVAL_TOOL]
        # The list depends on who asks, so no shared cache may keep it.
        return types.ListToolsResult(tools=tools, ttl_ms=0, cache_scope="private")

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        principal = await caller()
        outcome = await gateway.call(principal, params.name, params.arguments, _channel(ctx, params))
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

    # Listing resources declares the resources capability, and a server that
    # declares it answers reads. With none to offer, every URI is one that does
    # not exist: -32602 naming the URI (SEP-2164), not "method not found", which
    # would contradict the capability just declared.
    async def no_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        raise MCPError(code=types.INVALID_PARAMS, message="Resource not found", data={"uri": params.uri})

    def input_schema(name: str) -> dict[str, Any] | None:
        # Lets the SDK check Mcp-Param headers without running the whole tools/list
        # handler on every call. A suffixed name (a second connection of an app)
        # shares its base tool's schema.
        if name == GET_APPROVAL:
            return GET_APPROVAL_INPUT
        tool = gateway.registry.tools.get(name.partition("__")[0])
        return tool.spec.input_schema if tool else None

    server: Server[Any] = Server(
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
        on_read_resource=no_resource,
    )
    # Confirmation prompts on 2026-07-28 carry their state through the client; the
    # SDK seals it (AES-GCM under a key derived from the server secret, bound to
    # the tool, the arguments and the caller, with an expiry), so every replica
    # can open it and no client can forge or alter it.
    server.middleware.append(
        RequestStateBoundary(RequestStateSecurity(keys=[state_key], ttl=state_ttl), default_audience=SERVER_NAME)
    )
    return server
