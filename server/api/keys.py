"""API keys over the API: create (the plaintext is shown once), list, revoke and rotate.

People manage keys with a user key: their own, and an admin the workspace's.
How many live keys a person may hold depends on the plan (``store.plans``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from server.api.auth import person_of
from server.api.errors import ApiError
from server.api.router import ApiRouter
from server.api.services import services_of
from store.keys import (
    DEFAULT_SCOPES,
    PERSON_FACING_WARNING,
    KeyRequestError,
    create_key,
    live,
    revoke_key,
    rotate_key,
    set_person_facing,
)
from store.models import ApiKey, KeyKind, User
from store.plans import RULES
from store.principal import Principal

api = ApiRouter("API keys")


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    kind: Literal["agent", "user"] = Field(
        default="agent", description="agent: for an assistant (tools and API); user: acts for you (API, approvals)"
    )
    scopes: list[Literal["api", "tools"]] | None = Field(default=None, description="Default: by kind")
    person_facing: bool = Field(default=False, description=f"Agent keys only. {PERSON_FACING_WARNING}")


class KeyChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_facing: bool = Field(description=PERSON_FACING_WARNING)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(
        default=0, ge=0, le=7 * 86400, description="How long the old key keeps working, so you can swap it in"
    )


class KeyOut(BaseModel):
    id: str
    prefix: str = Field(description="The first characters, to recognise the key")
    name: str
    kind: KeyKind
    scopes: list[str]
    person_facing: bool = Field(description="Its owner said its host shows approval forms to them, not to the model")
    owner: str = Field(description="The owner's e-mail")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None = Field(description="In the future while a rotated key's grace period runs")


class NewKey(KeyOut):
    token: str = Field(description="The key itself. It is shown this once and never again.")


class KeyList(BaseModel):
    data: list[KeyOut]


def _out(key: ApiKey, owner: str) -> KeyOut:
    return KeyOut(
        id=key.id, prefix=key.prefix, name=key.name, kind=key.kind, scopes=list(key.scopes),
        person_facing=key.person_facing, owner=owner,
        created_at=key.created_at, last_used_at=key.last_used_at, revoked_at=key.revoked_at,
    )  # fmt: skip


async def _live_keys_of(session: AsyncSession, person: Principal) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.user_id == person.user_id,
                ApiKey.workspace_id == person.workspace_id,
                live(),
            )
        )
        or 0
    )


async def _check_room(session: AsyncSession, person: Principal) -> None:
    """A plan's key limit counts every live key, a rotated one in its grace period too."""
    rules = RULES[person.plan]
    if rules.keys_per_person is not None and await _live_keys_of(session, person) >= rules.keys_per_person:
        raise ApiError(
            403,
            f"The {person.plan.value} plan allows {rules.keys_per_person} live keys per person; revoke one first.",
            details={"plan": person.plan.value, "limit": rules.keys_per_person},
        )


async def _managed_key(session: AsyncSession, person: Principal, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if (
        key is None
        or key.workspace_id != person.workspace_id
        or (key.user_id != person.user_id and not person.is_admin)
    ):
        raise ApiError(404, "API key not found")
    return key


def _refused(exc: KeyRequestError) -> ApiError:
    field, _, message = str(exc).partition(": ")
    return ApiError(422, f"Invalid request: {exc}", details={"fields": {field: message}})


@api.post("/keys", body=KeyIn, response=NewKey, status=201, errors=(403, 422), summary="Create an API key")
async def create(request: Request, body: KeyIn) -> NewKey:
    """A new key for you. Its plaintext is in this answer only; Companion keeps just its SHA-256."""
    person = person_of(request)
    kind = KeyKind(body.kind)
    scopes = body.scopes if body.scopes is not None else DEFAULT_SCOPES[kind]
    async with services_of(request).db.transaction() as session:
        await _check_room(session, person)
        try:
            issued = await create_key(
                session, workspace_id=person.workspace_id, user_id=person.user_id, name=body.name, kind=kind,
                scopes=list(scopes), person_facing=body.person_facing,
            )  # fmt: skip
        except KeyRequestError as exc:
            raise _refused(exc) from None
        return NewKey(**_out(issued.key, person.email).model_dump(), token=issued.token)


@api.get("/keys", response=KeyList, summary="List API keys")
async def list_keys(request: Request) -> KeyList:
    """Your keys; an admin sees every key of the workspace. Revoked keys are listed with their revocation time."""
    person = person_of(request)
    query = (
        select(ApiKey, User.email)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.workspace_id == person.workspace_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    if not person.is_admin:
        query = query.where(ApiKey.user_id == person.user_id)
    async with services_of(request).db.session() as session:
        rows = (await session.execute(query)).all()
        return KeyList(data=[_out(key, email) for key, email in rows])


@api.delete("/keys/{id}", status=204, errors=(404,), summary="Revoke an API key")
async def revoke(request: Request) -> None:
    """Revoke at once (within the servers' cache time). A rotated key in its grace period stops too."""
    person = person_of(request)
    services = services_of(request)
    async with services.db.transaction() as session:
        key = await _managed_key(session, person, request.path_params["id"])
        if not await revoke_key(session, key.id):
            raise ApiError(404, "API key not found")


@api.patch("/keys/{id}", body=KeyChange, response=KeyOut, errors=(404, 422), summary="Change an API key")
async def change(request: Request, body: KeyChange) -> KeyOut:
    """Mark your own agent key as used by a person-facing host, or not. Only the key's owner may."""
    person = person_of(request)
    async with services_of(request).db.transaction() as session:
        key = await _managed_key(session, person, request.path_params["id"])
        if key.revoked_at is not None or key.user_id != person.user_id:
            raise ApiError(404, "API key not found")
        try:
            await set_person_facing(session, key, body.person_facing)
        except KeyRequestError as exc:
            raise _refused(exc) from None
        return _out(key, person.email)


@api.post("/keys/{id}/rotate", body=RotateIn, response=NewKey, status=201, errors=(404,), summary="Rotate an API key")
async def rotate(request: Request, body: RotateIn) -> NewKey:
    """A new key with the same owner, name, kind and scopes; the old one works for ``grace_seconds`` more."""
    person = person_of(request)
    async with services_of(request).db.transaction() as session:
        key = await _managed_key(session, person, request.path_params["id"])
        # Only the owner rotates: the new key's plaintext goes to whoever asks, and it acts as its owner.
        if key.revoked_at is not None or key.user_id != person.user_id:
            raise ApiError(404, "API key not found")
        if body.grace_seconds:
            await _check_room(session, person)
        owner = await session.scalar(select(User.email).where(User.id == key.user_id))
        issued = await rotate_key(session, key, grace=timedelta(seconds=body.grace_seconds))
        return NewKey(**_out(issued.key, owner or "").model_dump(), token=issued.token)
