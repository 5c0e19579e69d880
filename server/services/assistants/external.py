"""Access tokens from an external authorization server (``COMPANION_AUTHORIZATION_SERVERS``).

Companion is then a resource server only: the operator's server signs people in and issues JWT access tokens,
and Companion checks each one it is shown, with joserfc (Authlib's JOSE library since Authlib 1.7):

- the signature, by a key in the issuer's published key set, under an asymmetric algorithm only: never ``none``,
  and never a MAC, which anyone holding the public key could compute;
- ``iss``, exactly the configured issuer; ``exp`` (required), ``nbf`` and ``iat`` with a minute's leeway;
- ``aud``, which must name this server's MCP endpoint, its REST API, or the whole server (its base URL). A token
  naming two of them is one for the whole server, as Companion's own tokens for the base URL are; the bearer
  middleware then holds it to that audience at every path (``server/bearer.py``);
- the scopes, from ``scope`` (space-separated) or ``scp`` (a list, or space-separated), of which only
  Companion's own (``tools``, ``api:read``, ``api:write``, ``approvals``) count;
- the client, from ``client_id`` (RFC 9068) or ``azp``, and the person, from the configured claim.

RFC 9068's ``typ: at+jwt`` is not required: Okta, Entra ID and Auth0 send ``JWT``. An ID token from the same
server cannot pass for an access token anyway, since its ``aud`` is a client's id, not a resource of ours.

A token refused for any reason identifies nobody, as an unknown key does; the reason is logged, never the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError

from server.services.assistants.authorization import SCOPES
from server.services.assistants.issuer_keys import IssuerKeys, IssuerUnavailable
from store import external_tokens
from store.db import Database
from store.directory import EMAIL
from store.principal import Principal

log = logging.getLogger(__name__)

#: Signatures by the server's published keys only (RFC 8725 section 3.1: the algorithms are the verifier's choice).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: Seconds of clock difference allowed between the authorization server and this one.
LEEWAY = 60


class TokenRefused(Exception):
    """A token that does not identify anyone here; the message names the check it failed."""


@dataclass(frozen=True)
class Resources:
    """This server's resources, as a token's ``aud`` may name them."""

    mcp: str
    api: str
    server: str

    def audience_of(self, named: list[str]) -> str | None:
        """The audience a token naming ``named`` has here: the one resource of ours it names, the whole server if it
        names several, None if it names none. A trailing slash does not make another resource."""
        wanted = {name.removesuffix("/") for name in named}
        ours = [resource for resource in (self.mcp, self.api, self.server) if resource in wanted]
        if not ours:
            return None
        return ours[0] if len(ours) == 1 else self.server


@dataclass(frozen=True)
class Claims:
    """What a verified token says, in Companion's terms."""

    client_id: str
    email: str
    workspace_slug: str | None
    scopes: frozenset[str]
    audience: str


@dataclass(frozen=True)
class ExternalTokens:
    issuer: str
    keys: IssuerKeys
    resources: Resources
    db: Database
    user_claim: str
    #: Empty: the person's only workspace.
    workspace_claim: str

    async def principal_for(self, token: str) -> Principal | None:
        """The principal behind an access token, or None if any check fails or it names no member of a workspace."""
        try:
            claims = self._claims_of(await self._verified(token))
        except IssuerUnavailable:
            return None  # logged where the keys are fetched
        except TokenRefused as exc:
            log.info("An access token from %s was refused: %s", self.issuer, exc)
            return None
        async with self.db.session() as session:
            found = await external_tokens.principal(
                session,
                issuer=self.issuer,
                client_id=claims.client_id,
                email=claims.email,
                workspace_slug=claims.workspace_slug,
                scopes=claims.scopes,
                audience=claims.audience,
            )
        if found is None:
            log.info(
                "An access token from %s names %s, who is not a member of one workspace (or its client %s is "
                "blocked there)",
                self.issuer, claims.email, claims.client_id,
            )  # fmt: skip
        return found

    async def _verified(self, token: str) -> dict[str, Any]:
        keys = await self.keys.keys()
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            except InvalidKeyIdError:
                # A key this process has not seen: the server may have rotated its keys since they were fetched.
                decoded = jwt.decode(token, await self.keys.keys(lacking=keys), algorithms=ALGORITHMS)
        except JoseError as exc:
            raise TokenRefused(f"it is not a JWT signed by one of the server's keys ({exc.error})") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise TokenRefused(f"its claims do not hold ({exc.description or exc.error})") from None
        return decoded.claims

    def _claims_of(self, claims: dict[str, Any]) -> Claims:
        """The verified claims in Companion's terms; TokenRefused if one it needs is missing or not ours."""
        aud = claims["aud"]
        audience = self.resources.audience_of([aud] if isinstance(aud, str) else aud)
        if audience is None:
            raise TokenRefused(f"its aud {aud!r} names none of this server's resources")
        client_id = claims.get("client_id") or claims.get("azp")
        if not isinstance(client_id, str):
            raise TokenRefused("it names no client (client_id or azp)")
        email = claims.get(self.user_claim)
        if not isinstance(email, str) or not EMAIL.fullmatch(email):
            raise TokenRefused(f"it has no {self.user_claim} claim naming the person by one e-mail address")
        # Some servers let people type any address into their profile and say so with email_verified: false
        # ("nOAuth"); such a token speaks for no one here.
        if "email_verified" in claims and claims["email_verified"] is not True:
            raise TokenRefused("its e-mail address is not verified")
        slug = claims.get(self.workspace_claim) if self.workspace_claim else None
        if slug is not None and not isinstance(slug, str):
            raise TokenRefused(f"its {self.workspace_claim} claim is not a workspace's slug")
        return Claims(client_id, email, slug, _scopes(claims), audience)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    """Companion's scopes among the token's: ``scope`` is a space-separated string (RFC 9068, RFC 8693), ``scp``
    a list at most servers and a string at some."""
    granted = claims.get("scope", claims.get("scp"))
    if isinstance(granted, str):
        names = granted.split()
    elif isinstance(granted, list):
        names = [name for name in granted if isinstance(name, str)]
    else:
        names = []
    return frozenset(name for name in names if name in SCOPES)
