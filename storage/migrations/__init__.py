"""Alembic migrations shipped inside the package (no alembic.ini needed).

``KNOWN_REVISIONS`` lists every revision in order, oldest first; the last one is the head.  It lets
``SessionStore.open`` decide without importing Alembic whether a database is current, older (to be
migrated) or newer (refused).  A test checks it against Alembic's own view of ``versions/``.
"""

from pathlib import Path

KNOWN_REVISIONS: tuple[str, ...] = ("0001", "0002")
HEAD_REVISION = KNOWN_REVISIONS[-1]
#: Revisions this version reads without upgrading them (a session opened read-only): they lack only
#: nullable columns of later ones, which read as NULL (0001: ``runs.dtype``).
READABLE_REVISIONS: frozenset[str] = frozenset({"0001", HEAD_REVISION})
SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(connection=None):
    """An Alembic ``Config`` for our scripts; ``connection`` (SQLAlchemy) is used by env.py."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection, target: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), target)
