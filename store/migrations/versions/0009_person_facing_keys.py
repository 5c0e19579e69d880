"""Person-facing agent keys, each workspace's in-chat approval policy, and who an approved call acts as

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing keys are not person-facing: an in-chat answer through them decides nothing until their owner says so.
    op.add_column("api_keys", sa.Column("person_facing", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("api_keys", sa.Column("last_asked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("workspaces", sa.Column("person_facing_keys", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("workspaces", sa.Column("in_chat_max_risk", sa.String(16), nullable=False, server_default="delete"))
    op.add_column("approvals", sa.Column("sender", sa.Text(), nullable=False, server_default=""))
    op.add_column("approvals", sa.Column("sealed_summary", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("approvals", "sealed_summary")
    op.drop_column("approvals", "sender")
    op.drop_column("workspaces", "in_chat_max_risk")
    op.drop_column("workspaces", "person_facing_keys")
    op.drop_column("api_keys", "last_asked_at")
    op.drop_column("api_keys", "person_facing")
