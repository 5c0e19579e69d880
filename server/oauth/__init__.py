"""The OAuth 2.1 authorization server's endpoints: metadata (RFC 8414), authorize, token, registration (RFC 7591)
and revocation (RFC 7009).

They are the ``mcp`` SDK's handlers, which parse and check each request, with Companion's provider behind them
(``provider``) and the few things the SDK leaves out added around them (``endpoints``). The consent page the
authorization endpoint sends people to is the console's (``server/web/consent.py``).
"""

from server.oauth.endpoints import routes

__all__ = ["routes"]
