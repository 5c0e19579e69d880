"""Who each connection acts as, so a call's summary can name the sending mailbox and it runs only as that

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing connections learn their account when next re-authenticated; until then none is shown.
    op.add_column("connections", sa.Column("account", sa.String(320), nullable=True))
    op.add_column("approvals", sa.Column("account", sa.String(320), nullable=True))


def downgrade() -> None:
    op.drop_column("approvals", "account")
    op.drop_column("connections", "account")
