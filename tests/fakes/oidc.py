"""A fake OpenID Connect provider, as a company's identity provider would answer Companion's console sign-in.

It follows OpenID Connect Core 1.0 and Discovery 1.0 for the authorization code flow:

- ``/.well-known/openid-configuration`` describes it, with ``issuer`` equal to the URL it is served from;
- ``/jwks`` publishes the public half of the RSA key it signs ID tokens with;
- ``/authorize`` requires ``response_type=code``, ``openid`` among the scopes, the registered client and
  redirect URI, an S256 PKCE challenge, ``state`` and ``nonce``; it signs one person in at once (as their
  click would) and sends the browser back with the code, the state and its ``iss`` (RFC 9207);
- ``/token`` (the base fake's token endpoint) checks the client's secret, the code, the verifier and the
  redirect URI, and adds an RS256 ID token carrying the authorization's nonce and the access token's
  ``at_hash``.

A test turns knobs: who signs in (``person``), claims to set or leave out of the ID tokens it issues next
(``changes``, None leaves a claim out), and the key it signs with (``sign_with``) beside those it publishes.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.base import CLIENT_ID, ProviderFake

DISCOVERY = "/.well-known/openid-configuration"


@functools.cache
def rsa_key(kid: str, copy: int = 0) -> RSAKey:
    """An RS256 signing key named ``kid``, made once for the whole run (making one takes a moment); another
    ``copy`` is another key under the same name, as a forger would name theirs."""
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


class OidcFake(ProviderFake):
    def __init__(self, redirect_uri: str) -> None:
        super().__init__(
            [Route(DISCOVERY, self.discovery, methods=["GET"]), Route("/jwks", self.jwks, methods=["GET"])],
            authorize_path="/authorize",
            token_path="/token",
            open_paths=(DISCOVERY, "/jwks"),
        )
        self.redirect_uri = redirect_uri
        self.published: list[RSAKey] = [rsa_key("key-1")]
        self.sign_with = self.published[0]
        self.person: dict[str, Any] = {
            "sub": "idp-alice",
            "email": "alice@acme.test",
            "email_verified": True,
            "name": "Alice Example",
        }
        self.changes: dict[str, Any] = {}
        self.nonces: dict[str, str] = {}
        self.id_tokens: list[str] = []

    @property
    def issuer(self) -> str:
        return self.origin

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.origin}{self.authorize_path}",
                "token_endpoint": f"{self.origin}{self.token_path}",
                "jwks_uri": f"{self.origin}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet(list(self.published)).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        """Sign ``person`` in at once and send the browser back, once the request is a valid one."""
        query = request.query_params
        problem = (
            "unknown client" if query.get("client_id") != CLIENT_ID
            else "redirect_uri is not registered" if query.get("redirect_uri") != self.redirect_uri
            else "response_type must be code" if query.get("response_type") != "code"
            else "scope must include openid" if "openid" not in query.get("scope", "").split()
            else "PKCE with S256 is required"
            if query.get("code_challenge_method") != "S256" or not query.get("code_challenge")
            else "nonce is required" if not query.get("nonce")
            else "state is required" if not query.get("state")
            else None
        )  # fmt: skip
        if problem:
            # Not sent back to the redirect URI: it may not be the client's (Core 1.0, section 3.1.2.6).
            return JSONResponse({"error": "invalid_request", "error_description": problem}, status_code=400)
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = {"challenge": query["code_challenge"], "redirect_uri": self.redirect_uri}
        self.nonces[code] = query["nonce"]
        back = {"code": code, "state": query["state"], "iss": self.issuer}
        return RedirectResponse(f"{self.redirect_uri}?{urlencode(back)}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        nonce = self.nonces.pop(str(form.get("code", "")), None)
        answer = await super().token(request)
        if answer.status_code != 200 or nonce is None:
            return answer
        body = json.loads(bytes(answer.body))
        body["id_token"] = self.id_token(nonce, body["access_token"])
        return JSONResponse(body)

    def id_token(self, nonce: str, access_token: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "nonce": nonce,
            "at_hash": create_half_hash(access_token, "RS256").decode(),
            **self.person,
        }
        for name, value in self.changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        token = jwt.encode({"alg": "RS256", "kid": self.sign_with.kid}, claims, self.sign_with)
        self.id_tokens.append(token)
        return token
