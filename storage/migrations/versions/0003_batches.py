"""Batches: a batch record (its plan, engine, state) and one row per finished item, linked to its run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

``batch_items`` has one row per item key of a batch: a second recording of the same item is
refused by the primary key, so an item is never written twice. Deleting an item's run deletes its
row (the item is then left to do again); deleting a batch deletes its rows, never its runs.

New tables only: this version reads a 0001 or 0002 session opened read-only without upgrading it
(it has no batches then; ``storage.batches`` reads that as none).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("tool_id", sa.Text(), nullable=False),
        sa.Column("plan_json", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("engine", sa.Text(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("driver_pid", sa.Integer(), nullable=True),
        sa.Column("driver_host", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'cancelling', 'cancelled', 'done', 'stopped')",
                           name=op.f("ck_batches_status_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=False),
        sa.CheckConstraint("status IN ('ok', 'failed')", name=op.f("ck_batch_items_status_known")),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_batch_items_batch_id_batches"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_batch_items_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "key", name=op.f("pk_batch_items")),
    )
    op.create_index("ix_batch_items_run_id", "batch_items", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_batch_items_run_id", table_name="batch_items")
    op.drop_table("batch_items")
    op.drop_table("batches")
