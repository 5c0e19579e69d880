"""approvals rules and audit chain

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_heads",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id"),
    )
    op.create_table(
        "cap_hits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cap_hits", schema=None) as batch_op:
        batch_op.create_index("ix_cap_hits_rule_user_at", ["rule_id", "user_id", "at"], unique=False)

    op.create_table(
        "approvals",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("api_key_id", sa.String(length=32), nullable=True),
        sa.Column("connection_id", sa.String(length=32), nullable=False),
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column("risk", sa.String(length=16), nullable=False),
        sa.Column("args_digest", sa.String(length=64), nullable=False),
        sa.Column("sealed_arguments", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "approved",
                "denied",
                "expired",
                "cancelled",
                "executing",
                "succeeded",
                "failed",
                name="approval_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("rule_ids", sa.JSON(), nullable=False),
        sa.Column("require_out_of_band", sa.Boolean(), nullable=False),
        sa.Column("admin_may_approve", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_via", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("remember_rule_id", sa.String(length=32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sealed_result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_approvals_binding", ["workspace_id", "user_id", "tool", "args_digest", "created_at"], unique=False
        )
        batch_op.create_index("ix_approvals_status", ["workspace_id", "status", "expires_at"], unique=False)

    op.create_table(
        "rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.create_index("ix_rules_workspace", ["workspace_id", "scope", "user_id"], unique=False)

    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event", sa.String(length=32), nullable=False, server_default="call"))
        batch_op.add_column(sa.Column("actor_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("approval_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("risk", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("connection_scope", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("rule_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("sealed_arguments", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=False, server_default=""))
        batch_op.create_index("ix_audit_approval", ["approval_id"], unique=False)
    _chain_existing_rows()


# Frozen copy of approvals.audit.entry_hash as it was when this migration was
# written, so that rows from before the chain join it and verify.
_HASHED = (
    "at",
    "event",
    "workspace_id",
    "user_id",
    "actor_id",
    "api_key_id",
    "connection_id",
    "approval_id",
    "app",
    "tool",
    "risk",
    "role",
    "connection_scope",
    "args_digest",
    "decision",
    "reasons",
    "rule_ids",
    "outcome",
    "error",
    "duration_ms",
)


def _entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    fields = {name: row[name] for name in _HASHED}
    at = fields["at"]
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    fields["at"] = at.astimezone(UTC).isoformat()
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _chain_existing_rows() -> None:
    bind = op.get_bind()
    audit = sa.table("audit_entries", *[sa.column(n) for n in ("id", "prev_hash", "hash", *_HASHED)])
    heads = sa.table("audit_heads", sa.column("workspace_id"), sa.column("last_hash"))
    last: dict[str, str] = {}
    for row in bind.execute(sa.select(audit).order_by(audit.c.id)).mappings():
        data = dict(row)
        for name in ("reasons", "rule_ids"):
            if isinstance(data[name], str):
                data[name] = json.loads(data[name])
        prev = last.get(data["workspace_id"], "")
        digest = _entry_hash(prev, data)
        bind.execute(sa.update(audit).where(audit.c.id == data["id"]).values(prev_hash=prev, hash=digest))
        last[data["workspace_id"]] = digest
    for workspace_id, last_hash in last.items():
        bind.execute(sa.insert(heads).values(workspace_id=workspace_id, last_hash=last_hash))


def downgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_approval")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("sealed_arguments")
        batch_op.drop_column("rule_ids")
        batch_op.drop_column("connection_scope")
        batch_op.drop_column("role")
        batch_op.drop_column("risk")
        batch_op.drop_column("approval_id")
        batch_op.drop_column("actor_id")
        batch_op.drop_column("event")

    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.drop_index("ix_rules_workspace")

    op.drop_table("rules")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_status")
        batch_op.drop_index("ix_approvals_binding")

    op.drop_table("approvals")
    with op.batch_alter_table("cap_hits", schema=None) as batch_op:
        batch_op.drop_index("ix_cap_hits_rule_user_at")

    op.drop_table("cap_hits")
    op.drop_table("audit_heads")
