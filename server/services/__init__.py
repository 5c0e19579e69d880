"""The use cases: what the product does, whichever front end asked (REST, the console, the CLI, MCP).

A use case takes typed services and a principal, never a request, and refuses
with a ``server.services.errors.ServiceError``. Each front end translates that
error into its own protocol (an HTTP status, a console page, a CLI line).
"""
