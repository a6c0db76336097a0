"""Runs record the dtype they computed in (float32, float16, bfloat16), beside their device.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01

A nullable column: runs recorded before it read as NULL ("not recorded"), and this version reads a
0001 session opened read-only without upgrading it (``storage.store.READABLE_REVISIONS``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("dtype", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("dtype")
