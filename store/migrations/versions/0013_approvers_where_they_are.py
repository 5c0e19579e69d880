"""Approvers where they are: Slack and push channels per person, Slack approvals and e-mail link policy per
workspace, edits and several approvers on approvals, votes, notices to update, single-use links, push
subscriptions, and signed requests already seen

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("notify_slack", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("notify_push", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("workspaces") as batch_op:
        batch_op.add_column(sa.Column("slack_approvals", sa.Boolean(), nullable=False, server_default=sa.false()))
        # Existing workspaces keep today's behaviour: an e-mailed link only opens the page, where one signs in.
        batch_op.add_column(sa.Column("email_link_max_risk", sa.String(16), nullable=False, server_default="none"))
    with op.batch_alter_table("approvals") as batch_op:
        batch_op.add_column(sa.Column("sealed_original_arguments", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("original_digest", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("edited_by", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("approvers", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("no_self_approval", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("escalate_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "approval_votes",
        sa.Column("approval_id", sa.String(32), sa.ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("approve", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "approval_notices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("approval_id", sa.String(32), sa.ForeignKey("approvals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("ref", sa.JSON(), nullable=False),
        sa.Column("shown_status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_approval_notices_approval", "approval_notices", ["approval_id"])
    op.create_table(
        "approval_links",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("approval_id", sa.String(32), sa.ForeignKey("approvals.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_approval_links_approval_id", "approval_links", ["approval_id"])
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False, unique=True),
        sa.Column("p256dh", sa.String(200), nullable=False),
        sa.Column("auth", sa.String(100), nullable=False),
        sa.Column("user_agent", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_push_subscriptions_user_id", "push_subscriptions", ["user_id"])
    op.create_table(
        "seen_requests",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_seen_requests_seen_at", "seen_requests", ["seen_at"])


def downgrade() -> None:
    op.drop_table("seen_requests")
    op.drop_table("push_subscriptions")
    op.drop_table("approval_links")
    op.drop_table("approval_notices")
    op.drop_table("approval_votes")
    with op.batch_alter_table("approvals") as batch_op:
        for column in (
            "escalated_at", "escalate_at", "no_self_approval", "approvers", "edited_by", "original_digest",
            "sealed_original_arguments",
        ):  # fmt: skip
            batch_op.drop_column(column)
    with op.batch_alter_table("workspaces") as batch_op:
        batch_op.drop_column("email_link_max_risk")
        batch_op.drop_column("slack_approvals")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("notify_push")
        batch_op.drop_column("notify_slack")
