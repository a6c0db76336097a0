"""SQLAlchemy 2.x ORM models of a session database.

The schema is created and changed only by the Alembic migrations in ``storage/migrations``; a test
checks that the migrations and these models agree.  Times are UNIX epoch seconds (UTC, float).
Large data never lives in rows: results and canvas edits point at content-addressed files by
``sha256`` + ``ext`` (see :mod:`storage.filestore`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATUSES = ("running", "ok", "failed", "cancelled")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SessionMeta(Base):
    __tablename__ = "session_meta"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    app_version: Mapped[str | None] = mapped_column(Text)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'ok', 'failed', 'cancelled')", name="status_known"
        ),
        CheckConstraint("rating IS NULL OR (rating BETWEEN 0 AND 5)", name="rating_range"),
        Index("ix_runs_tool_id", "tool_id"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_parent_run_id", "parent_run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tool_id: Mapped[str] = mapped_column(Text, nullable=False)
    plugin: Mapped[str] = mapped_column(Text, nullable=False)
    plugin_version: Mapped[str] = mapped_column(Text, nullable=False)
    params_json: Mapped[str] = mapped_column(Text, nullable=False)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    model_ref: Mapped[str | None] = mapped_column(Text)
    model_hash: Mapped[str | None] = mapped_column(Text)
    device: Mapped[str] = mapped_column(Text, nullable=False)
    dtype: Mapped[str | None] = mapped_column(Text)  # float32/float16/bfloat16; NULL before 0002
    backend: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[float] = mapped_column(Float, nullable=False)
    finished_at: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    parent_run_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("runs.id", ondelete="SET NULL")
    )
    rating: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (
        Index("ix_results_run_id", "run_id"),
        Index("ix_results_sha256_ext", "sha256", "ext"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    ext: Mapped[str] = mapped_column(String(16), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    shape_json: Mapped[str | None] = mapped_column(Text)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class RunInput(Base):
    """Lineage: the results a run took as inputs, in order (position 0 is the primary input)."""

    __tablename__ = "run_inputs"
    __table_args__ = (Index("ix_run_inputs_result_id", "result_id"),)

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("results.id", ondelete="SET NULL")
    )


class RunTag(Base):
    __tablename__ = "run_tags"
    __table_args__ = (Index("ix_run_tags_tag", "tag"),)

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(Text, primary_key=True)


class CanvasHistory(Base):
    """Undo pointer of one canvas: ``position`` edits (seq 0..position-1) are applied."""

    __tablename__ = "canvas_histories"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)


class CanvasEdit(Base):
    __tablename__ = "canvas_edits"
    __table_args__ = (UniqueConstraint("key", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(
        Text, ForeignKey("canvas_histories.key", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    ext: Mapped[str] = mapped_column(String(16), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


# Full-text index (not an ORM table; created by the migration):
#   run_search(prompt, params, note) USING fts5, rowid = runs.id
FTS_TABLE = "run_search"


def include_name(name, type_, parent_names) -> bool:
    """Alembic autogenerate filter: the FTS table and its shadow tables are managed by hand."""
    if type_ == "table":
        return not (name == FTS_TABLE or name.startswith(FTS_TABLE + "_"))
    return True
