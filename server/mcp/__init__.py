"""The MCP front end: the protocol over streamable HTTP (``endpoint``) and over stdio (``stdio``).

It translates MCP onto the tool gateway and back, and nothing more; the gateway decides, asks and runs.
"""
