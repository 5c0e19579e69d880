"""Checking an ID token (OpenID Connect Core 1.0, section 3.1.3.7), with joserfc and Authlib's claims rules.

The signature must verify with one of the provider's published keys under an algorithm it announced; then
``iss`` must be the discovered issuer, ``aud`` must hold our client id (with ``azp`` when it holds others),
``exp`` must be to come and ``iat`` not, and ``nonce`` must be the one this sign-in sent. Companion then matches
the person by e-mail, so the provider must also say it verified that address.
"""

from __future__ import annotations

from dataclasses import dataclass

from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, InvalidKeyIdError, JoseError, MissingClaimError
from joserfc.jwk import KeySet

from server.services.errors import ServiceError
from server.services.oidc.provider import Provider
from store.directory import EMAIL

#: Seconds of clock difference allowed between the provider and this server.
LEEWAY = 60


class TokenRefused(ServiceError):
    """An ID token that does not sign this person in; the message names the check it failed, never the token."""

    code = "forbidden"


class UnknownKey(TokenRefused):
    """The token names a key the key set does not hold (yet): the provider may have rotated its keys."""


@dataclass(frozen=True)
class Expected:
    """What this sign-in's ID token must say."""

    provider: Provider
    client_id: str
    nonce: str
    #: The access token issued with it, checked against ``at_hash`` when the token carries one.
    access_token: str | None


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    subject: str
    email: str
    name: str


def verified_identity(id_token: str, keys: KeySet, expected: Expected) -> Identity:
    """The person an ID token vouches for, once every check passed; TokenRefused otherwise."""
    try:
        token = jwt.decode(id_token, keys, algorithms=list(expected.provider.algorithms))
    except InvalidKeyIdError:
        raise UnknownKey("The ID token is signed with a key your identity provider does not publish.") from None
    except JoseError as exc:
        raise TokenRefused(f"The ID token's signature does not verify ({exc.error}).") from None
    claims = CodeIDToken(
        token.claims,
        token.header,
        {
            "iss": {"essential": True, "value": expected.provider.issuer},
            "aud": {"essential": True, "value": expected.client_id},
        },
        {"nonce": expected.nonce, "client_id": expected.client_id, "access_token": expected.access_token},
    )
    try:
        claims.validate(leeway=LEEWAY)
    except ExpiredTokenError:
        raise TokenRefused("The ID token has expired.") from None
    except MissingClaimError as exc:
        raise TokenRefused(f"The ID token lacks the claim “{exc.claim}”.") from None
    except ClaimError as exc:
        raise TokenRefused(f"The ID token's claim “{exc.claim}” is not what this sign-in expects.") from None
    except JoseError as exc:
        raise TokenRefused(f"The ID token was refused ({exc.error}).") from None
    email = claims.get("email")
    if not isinstance(email, str) or not EMAIL.match(email):
        raise TokenRefused("Your identity provider did not give your e-mail address (scope email).")
    if claims.get("email_verified") is not True:
        raise TokenRefused(f"Your identity provider has not verified that {email} is yours (email_verified).")
    name = claims.get("name")
    return Identity(subject=str(claims["sub"]), email=email.lower(), name=name if isinstance(name, str) else "")
