"""The composition root: settings, the Starlette app, the MCP endpoint and the CLI."""
