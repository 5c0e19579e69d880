"""Companion's own OAuth authorization server: clients, their per-workspace policies, people's grants and tokens;
and the assistant's name on approvals and audit entries

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assistant_clients",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("client_id", sa.String(2048), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("client_uri", sa.String(2048), nullable=True),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("client_metadata", sa.JSON(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=True),
        sa.Column("registered_from", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "assistant_policies",
        sa.Column("workspace_id", sa.String(32), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("client_id", sa.String(2048), primary_key=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("person_facing", sa.String(16), nullable=False),
        sa.Column("may_decide", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "assistant_grants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "client_ref", sa.String(32), sa.ForeignKey("assistant_clients.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("workspace_id", sa.String(32), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("person_facing", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_asked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("client_ref", "user_id", "workspace_id"),
    )
    op.create_index("ix_assistant_grants_user_id", "assistant_grants", ["user_id"])
    op.create_index("ix_assistant_grants_workspace_id", "assistant_grants", ["workspace_id"])
    op.create_table(
        "assistant_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("grant_id", sa.String(32), sa.ForeignKey("assistant_grants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family_id", sa.String(32), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("resource", sa.String(2048), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("redirect_uri", sa.String(2048), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_assistant_tokens_grant_id", "assistant_tokens", ["grant_id"])
    op.create_index("ix_assistant_tokens_family", "assistant_tokens", ["family_id"])
    op.add_column("approvals", sa.Column("assistant", sa.String(200), nullable=False, server_default=""))
    op.add_column("audit_entries", sa.Column("assistant", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_entries", "assistant")
    op.drop_column("approvals", "assistant")
    op.drop_table("assistant_tokens")
    op.drop_table("assistant_grants")
    op.drop_table("assistant_policies")
    op.drop_table("assistant_clients")
