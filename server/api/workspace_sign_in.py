"""A workspace's identity provider for console sign-in (OpenID Connect), over the API.

Only the workspace's admins, with their own user key, may read or change it. The client secret is accepted and
never returned: answers say only whether one is stored.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.requests import Request

from server.api.auth import person_of
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.oidc.config import MAX_CLIENT_ID, MAX_ISSUER, MAX_SECRET, ConfigChange, SignInConfig
from store.principal import Principal

api = ApiRouter("Sign-in")


class SignInBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(
        max_length=MAX_ISSUER,
        description="The provider's issuer URL; its discovery document is read from "
        "<issuer>/.well-known/openid-configuration.",
    )
    client_id: str = Field(max_length=MAX_CLIENT_ID, description="The client id the provider gave this server.")
    client_secret: SecretStr | None = Field(
        default=None,
        max_length=MAX_SECRET,
        description="The client's secret; write-only. Omit it to keep the stored one, except the first time and "
        "whenever issuer or client_id changes.",
    )
    create_users: bool = Field(
        default=False,
        description="Whether someone the provider vouches for who has no account yet gets one, as a member. Off: "
        "only existing members may sign in.",
    )
    enabled: bool = Field(
        default=True, description="Whether people may sign in this way; the discovery document must answer when on."
    )


class SignInOut(BaseModel):
    configured: bool = Field(description="Whether an identity provider is set for the workspace.")
    issuer: str | None
    client_id: str | None
    client_secret_set: bool = Field(description="Whether a client secret is stored; it is never shown.")
    create_users: bool
    enabled: bool
    redirect_uri: str = Field(description="The redirect URI to register at the provider.")
    updated_at: datetime | None


def _out(request: Request, config: SignInConfig) -> SignInOut:
    return SignInOut(
        configured=config.configured,
        issuer=config.issuer or None,
        client_id=config.client_id or None,
        client_secret_set=config.client_secret_set,
        create_users=config.create_users,
        enabled=config.enabled,
        redirect_uri=services_of(request).company_sign_in.redirect_uri,
        updated_at=config.updated_at,
    )


@api.get(
    "/workspace/sign-in", caller=person_of, response=SignInOut, errors=(403,), summary="Read the identity provider"
)
async def read_sign_in(request: Request, actor: Principal) -> SignInOut:
    """How the workspace's people sign in with its identity provider; admins only, with a user key."""
    return _out(request, await services_of(request).company_sign_in.config(actor))


@api.put(
    "/workspace/sign-in",
    caller=person_of,
    body=SignInBody,
    response=SignInOut,
    errors=(403, 422),
    summary="Set the identity provider",
)
async def set_sign_in(request: Request, actor: Principal, body: SignInBody) -> SignInOut:
    """Admins only, with a user key. With ``enabled``, the provider's discovery document must answer first."""
    change = ConfigChange(
        issuer=body.issuer,
        client_id=body.client_id,
        client_secret=body.client_secret.get_secret_value() if body.client_secret else "",
        create_users=body.create_users,
        enabled=body.enabled,
    )
    return _out(request, await services_of(request).company_sign_in.configure(actor, change))
