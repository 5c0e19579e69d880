"""The MCP conformance suite from npm, an independent client, against the real server on 127.0.0.1.

The suite sends no credentials, so it talks to an authenticating proxy that
adds a real API key; the server's own authentication stays as it is.

A few of ``server-stateless``'s checks probe the transport through diagnostic
tools it calls by fixed names (``test_missing_capability``,
``test_streaming_elicitation``, ``test_logging_tool``), as the SDK's own
conformance server provides them. No product tool has those names or needs
sampling or logging, so the server under test here is the real app with those
three tools added through the SDK's public handler registry: everything else
the suite sees, tools and approvals included, is Companion as shipped. The
same rules for Companion's own tools are checked on the wire in
``tests/test_mcp_protocol.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import mcp_types as types
import pytest
import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from server.app import Companion, create_app
from server.mcp.endpoint import PrincipalSource
from server.settings import Settings
from tests.auth_proxy import AuthProxy
from tests.conftest import free_port, serving
from tests.node import CONFORMANCE_CLI, NODE
from tests.oauth_browser import consent

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.conformance,
    # test_logging_tool logs through the SDK's logging API on purpose: its per-request gate is what is checked.
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]

SCENARIOS = [
    "server-initialize",
    "server-session-lifecycle",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
    "server-stateless",
    "sep-2164-resource-not-found",
    "server-sse-multiple-streams",
]

Diagnostic = Callable[[ServerRequestContext[Any, Any], types.CallToolRequestParams], Awaitable[Any]]
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def _require(missing: bool, required: types.ClientCapabilities) -> None:
    if missing:
        data = types.MissingRequiredClientCapabilityErrorData(required_capabilities=required)
        raise MCPError(
            code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="The client did not declare a capability this tool needs",
            data=data.model_dump(by_alias=True, mode="json", exclude_none=True),
        )


def _text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def needs_sampling(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
    declared = ctx.session.client_capabilities
    _require(
        declared is None or declared.sampling is None, types.ClientCapabilities(sampling=types.SamplingCapability())
    )
    return _text("The client declared sampling.")


async def asks_a_question(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
    declared = ctx.session.client_capabilities
    elicitation = declared.elicitation if declared else None
    # A bare {"elicitation": {}} is the 2025-06 way of saying "form".
    no_form = elicitation is None or (elicitation.form is None and elicitation.url is not None)
    form = types.ElicitationCapability(form=types.FormElicitationCapability())
    _require(no_form, types.ClientCapabilities(elicitation=form))
    message, schema = "Continue?", {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        if isinstance(reply := (params.input_responses or {}).get("question"), types.ElicitResult):
            return _text(f"Answered: {reply.action}")
        question = types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))
        return types.InputRequiredResult(input_requests={"question": question})
    reply = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
    return _text(f"Answered: {reply.action}")


async def logs(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
    # The SDK's own gate decides what reaches the client: on 2026-07-28 nothing
    # unless this request's _meta asked for a log level, and then only from it up.
    for level in ("debug", "info", "error"):
        await ctx.session.send_log_message(level, f"a {level} entry", related_request_id=ctx.request_id)
    return _text("Logged at debug, info and error.")


DIAGNOSTICS: dict[str, tuple[str, Diagnostic]] = {
    "test_missing_capability": ("Needs the client's sampling capability.", needs_sampling),
    "test_streaming_elicitation": ("Asks the person a question through form elicitation.", asks_a_question),
    "test_logging_tool": ("Sends log messages at three levels.", logs),
}


def with_diagnostics(server: Server[Any]) -> Server[Any]:
    """``server`` with the suite's diagnostic tools beside its own, through the SDK's public handler registry."""
    listing, calling = server.get_request_handler("tools/list"), server.get_request_handler("tools/call")
    assert listing is not None and calling is not None
    extra = [
        types.Tool(name=name, description=description, input_schema=NO_ARGUMENTS)
        for name, (description, _) in DIAGNOSTICS.items()
    ]

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams) -> Any:
        result = await listing.handler(ctx, params)
        return result.model_copy(update={"tools": [*result.tools, *extra]})

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        if params.name in DIAGNOSTICS:
            return await DIAGNOSTICS[params.name][1](ctx, params)
        return await calling.handler(ctx, params)

    server.add_request_handler("tools/list", listing.params_type, list_tools)
    server.add_request_handler("tools/call", calling.params_type, call_tool)
    return server


class DiagnosedCompanion(Companion):
    """The real server, whose MCP endpoint also offers the suite's diagnostic tools."""

    def mcp_server(self, principal_source: PrincipalSource) -> Server[Any]:
        return with_diagnostics(super().mcp_server(principal_source))


@pytest.fixture
async def proxied_server(settings: Settings, companion: Companion, demo_keys: Any) -> AsyncIterator[str]:
    if not CONFORMANCE_CLI.exists():
        message = "the conformance suite is not installed: run `python -m tests.node` (scripts/test does)"
        if os.environ.get("COMPANION_REQUIRE_CONFORMANCE"):
            pytest.fail(message)
        pytest.skip(message)
    port, proxy_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(
        DiagnosedCompanion.build(settings.model_copy(update={"base_url": base_url}), registry=companion.registry)
    )
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")),
        uvicorn.Server(
            uvicorn.Config(
                AuthProxy(base_url, demo_keys.keys["alice@acme.test"]),
                host="127.0.0.1",
                port=proxy_port,
                log_level="warning",
            )
        ),
    ]
    tasks = []
    for server in servers:
        tasks.append(asyncio.create_task(server.serve()))
        while not server.started:
            if tasks[-1].done():
                tasks[-1].result()
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{proxy_port}/mcp"
    finally:
        for server, task in zip(reversed(servers), reversed(tasks), strict=True):
            server.should_exit = True
            await task


async def test_the_conformance_scenarios_pass(proxied_server, tmp_path):
    failures = []
    for scenario in SCENARIOS:
        process = await asyncio.create_subprocess_exec(
            str(NODE),
            str(CONFORMANCE_CLI),
            "server",
            "--url",
            proxied_server,
            "--scenario",
            scenario,
            "-o",
            str(tmp_path / scenario),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        text = output.decode(errors="replace")
        tally = re.search(r"Passed: (\d+)/(\d+), (\d+) failed, (\d+) warnings", re.sub(r"\x1b\[[0-9;]*m", "", text))
        # A scenario that checked nothing (0/0) proves nothing, so it counts as a failure too. A warning is a
        # SHOULD the server missed: it fails here as it does in the suite's own baselines.
        if process.returncode != 0 or tally is None or int(tally[2]) == 0 or tally[1] != tally[2] or tally[4] != "0":
            failures.append(f"--- {scenario} (exit {process.returncode})\n{text}")
        else:
            print(f"{scenario}: {tally[0]}")
    assert not failures, "\n".join(failures)


@pytest.fixture
async def authorization_server(settings: Settings, companion: Companion, demo_keys: Any) -> AsyncIterator[str]:
    """Companion as shipped on 127.0.0.1, for the suite's authorization-server scenarios; yields its issuer."""
    if not CONFORMANCE_CLI.exists():
        message = "the conformance suite is not installed: run `python -m tests.node` (scripts/test does)"
        if os.environ.get("COMPANION_REQUIRE_CONFORMANCE"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(Companion.build(settings.model_copy(update={"base_url": base_url}), registry=companion.registry))
    async with serving(app, port):
        yield base_url


async def test_the_authorization_scenarios_pass(authorization_server: str, tmp_path: Any) -> None:
    """``authorization-server-metadata-endpoint`` and ``authorization-code-grant``, the suite acting as a public
    client that registered itself; the person's sign-in and consent are form posts driven here."""
    callback_port = free_port()
    redirect = f"http://127.0.0.1:{callback_port}/callback"
    async with httpx2.AsyncClient(base_url=authorization_server) as browser:
        registered = await browser.post(
            "/register",
            json={
                "client_name": "MCP conformance suite",
                "redirect_uris": [redirect],
                "token_endpoint_auth_method": "none",
            },
        )
        assert registered.status_code == 201, registered.text
        process = await asyncio.create_subprocess_exec(
            str(NODE), str(CONFORMANCE_CLI), "authorization", "--url", authorization_server,
            "--client-id", registered.json()["client_id"], "--resource", f"{authorization_server}/mcp",
            "--port", str(callback_port), "-o", str(tmp_path / "authorization"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        assert process.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(120):
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip()
                lines.append(line)
                if line.startswith(f"{authorization_server}/authorize?"):
                    back = await consent(browser, line, email="alice@acme.test")
                    async with httpx2.AsyncClient() as callback:
                        assert (await callback.get(back)).status_code == 200, back
            await process.wait()
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(lines))
    checks = [
        check for found in (tmp_path / "authorization").glob("*/checks.json") for check in json.loads(found.read_text())
    ]
    ran = {path.name.split("-20")[0] for path in (tmp_path / "authorization").iterdir()}
    assert process.returncode == 0, text
    assert ran == {
        "authorization-server-authorization-server-metadata-endpoint",
        "authorization-server-authorization-code-grant",
    }, text
    # Every check succeeded: a warning is a SHOULD the server missed, and a skipped check proves nothing.
    assert checks and all(check["status"] == "SUCCESS" for check in checks), json.dumps(checks, indent=2)
    print(f"authorization: {len(checks)} checks passed")
