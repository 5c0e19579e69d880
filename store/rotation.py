"""Re-encrypting every sealed value under the current key, so an old key can be retired.

Rotation needs no downtime: while it runs, servers hold the old key in
``COMPANION_OLD_SECRET_KEYS`` and open values sealed under either key. Each
batch is re-sealed in its own transaction and only if the value did not change
meanwhile, so a token refreshed during the rotation is never overwritten with
its older self. Audit rows keep their hash: sealed arguments are not part of
the chain, precisely so that this is possible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute

from store.crypto import SecretBox
from store.db import Database
from store.models import Approval, AuditEntry, Connection, OAuthFlow, WebhookEndpoint, WorkspaceSignIn
from store.sealing import (
    approval_arguments_context,
    approval_original_arguments_context,
    approval_result_context,
    approval_summary_context,
    audit_arguments_context,
    credentials_context,
    oauth_flow_context,
    sign_in_secret_context,
    webhook_secret_context,
)


@dataclass(frozen=True)
class Sealed:
    """A column of sealed values and the context each value is bound to."""

    name: str
    key: InstrumentedAttribute[Any]
    column: InstrumentedAttribute[Any]
    context: Callable[[Any], str]
    extra: tuple[InstrumentedAttribute[Any], ...] = ()


SEALED: tuple[Sealed, ...] = (
    Sealed("connections.credentials", Connection.id, Connection.credentials, lambda r: credentials_context(r.id)),
    Sealed("oauth_flows.sealed_secrets", OAuthFlow.id, OAuthFlow.sealed_secrets, lambda r: oauth_flow_context(r.id)),
    Sealed(
        "approvals.sealed_arguments", Approval.id, Approval.sealed_arguments, lambda r: approval_arguments_context(r.id)
    ),
    Sealed(
        "approvals.sealed_original_arguments",
        Approval.id,
        Approval.sealed_original_arguments,
        lambda r: approval_original_arguments_context(r.id),
    ),
    Sealed("approvals.sealed_result", Approval.id, Approval.sealed_result, lambda r: approval_result_context(r.id)),
    Sealed("approvals.sealed_summary", Approval.id, Approval.sealed_summary, lambda r: approval_summary_context(r.id)),
    Sealed(
        "webhook_endpoints.sealed_secret",
        WebhookEndpoint.id,
        WebhookEndpoint.sealed_secret,
        lambda r: webhook_secret_context(r.id),
    ),
    Sealed(
        "audit_entries.sealed_arguments",
        AuditEntry.id,
        AuditEntry.sealed_arguments,
        lambda r: audit_arguments_context(r.args_digest),
        extra=(AuditEntry.args_digest,),
    ),
    Sealed(
        "workspace_sign_in.sealed_client_secret",
        WorkspaceSignIn.workspace_id,
        WorkspaceSignIn.sealed_client_secret,
        lambda r: sign_in_secret_context(r.workspace_id),
    ),
)


async def key_usage(db: Database, box: SecretBox) -> dict[str, dict[str, int]]:
    """For each sealed column, how many values each key id sealed."""
    usage: dict[str, dict[str, int]] = {}
    async with db.session() as session:
        for sealed in SEALED:
            counts: dict[str, int] = {}
            for value in await session.scalars(select(sealed.column).where(sealed.column.is_not(None))):
                if value:
                    key_id = box.key_id_of(value)
                    counts[key_id] = counts.get(key_id, 0) + 1
            usage[sealed.name] = counts
    return usage


async def rotate(db: Database, box: SecretBox, *, batch: int = 200) -> dict[str, int]:
    """Re-seal every value not sealed under the current key; returns how many per column."""
    done: dict[str, int] = {}
    for sealed in SEALED:
        done[sealed.name] = 0
        after: Any = None
        while True:
            async with db.transaction() as session:
                query = select(sealed.key, sealed.column, *sealed.extra).where(sealed.column.is_not(None))
                if after is not None:
                    query = query.where(sealed.key > after)
                rows = (await session.execute(query.order_by(sealed.key).limit(batch))).all()
                for row in rows:
                    value = getattr(row, sealed.column.key)
                    if not value or box.is_current(value):
                        continue
                    context = sealed.context(row)
                    resealed = box.seal(box.open(value, context=context), context=context)
                    result = await session.execute(
                        update(sealed.column.class_)
                        .where(sealed.key == getattr(row, sealed.key.key), sealed.column == value)
                        .values({sealed.column.key: resealed})
                        .execution_options(synchronize_session=False)
                    )
                    done[sealed.name] += getattr(result, "rowcount", 0)
            if len(rows) < batch:
                break
            after = getattr(rows[-1], sealed.key.key)
    return done
