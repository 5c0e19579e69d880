"""MCP over stdio, for assistants that launch Companion as a local process."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from server.app import Companion
from server.settings import Settings, SettingsError
from store.principal import Principal


async def serve_stdio(settings: Settings, token: str) -> None:
    companion = Companion.build(settings)
    try:
        if await companion.principal_for(token) is None:
            raise SettingsError("COMPANION_API_KEY: not a valid, unrevoked API key for this server")

        async def principal() -> Principal | None:
            # Checked on every request, so revoking the key ends a running session.
            return await companion.principal_for(token)

        server = companion.mcp_server(principal)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await companion.aclose()
