"""Alembic migrations: shipped in the package, agree with the models, backups, newer schemas refused."""

import hashlib
import shutil
import sqlite3
import textwrap

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import storage.migrations as migrations
import storage.store as store_mod
from storage import MigrationError, NewerSchemaError, SessionStore
from storage.models import Base, include_name


def test_known_revisions_match_alembic_scripts():
    script = ScriptDirectory.from_config(migrations.alembic_config())
    ordered = [s.revision for s in reversed(list(script.walk_revisions()))]
    assert tuple(ordered) == migrations.KNOWN_REVISIONS
    assert script.get_current_head() == migrations.HEAD_REVISION


def test_migrations_produce_exactly_the_models(store):
    with store._writer.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_fts_table_and_trigger_exist(store):
    with store._writer.connect() as conn:
        names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    assert {"run_search", "runs_search_delete", "alembic_version"} <= names


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_newer_schema_is_refused_and_left_unchanged(tmp_path, record):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        record(s)
    raw = sqlite3.connect(folder / "session.db")
    raw.execute("UPDATE alembic_version SET version_num = '9999_future'")
    raw.commit()
    raw.close()
    before = _sha(folder / "session.db")
    with pytest.raises(NewerSchemaError, match="newer version of Implicit Studio.*9999_future"):
        SessionStore.open(folder)
    with pytest.raises(NewerSchemaError):
        SessionStore.open(folder, readonly=True)
    assert _sha(folder / "session.db") == before


HEAD = migrations.HEAD_REVISION
NEXT = f"{int(HEAD) + 1:04d}"  # a revision after the shipped head, made by the tests below


def _extra_revision(tmp_path, monkeypatch, body):
    scripts = tmp_path / "migs"
    shutil.copytree(migrations.SCRIPT_LOCATION, scripts,
                    ignore=shutil.ignore_patterns("__pycache__"))
    header = (
        "import sqlalchemy as sa\nfrom alembic import op\n"
        f"revision = '{NEXT}'\ndown_revision = '{HEAD}'\nbranch_labels = None\ndepends_on = None\n"
        "def downgrade():\n    pass\n"
        "def upgrade():\n"
    )
    upgrade = textwrap.indent(textwrap.dedent(body).strip() + "\n", "    ")
    (scripts / "versions" / f"{NEXT}_test.py").write_text(header + upgrade)
    monkeypatch.setattr(migrations, "SCRIPT_LOCATION", scripts)
    monkeypatch.setattr(store_mod, "KNOWN_REVISIONS", (*migrations.KNOWN_REVISIONS, NEXT))
    monkeypatch.setattr(store_mod, "HEAD_REVISION", NEXT)
    monkeypatch.setattr(store_mod, "READABLE_REVISIONS", frozenset({NEXT}))


def test_older_session_is_backed_up_then_migrated(tmp_path, monkeypatch, record):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        rid = record(s)
    _extra_revision(tmp_path, monkeypatch, '''
        with op.batch_alter_table("runs") as b:
            b.add_column(sa.Column("favourite", sa.Integer(), nullable=True))
    ''')
    with SessionStore.open(folder) as s:
        assert s.info().schema_revision == NEXT
        assert s.get_run(rid).params["prompt"] == "a red circle"
        with s._writer.connect() as c:
            cols = [r[1] for r in c.exec_driver_sql("PRAGMA table_info(runs)")]
        assert "favourite" in cols
    (backup,) = (folder / "backups").iterdir()
    old = sqlite3.connect(backup)
    assert old.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD
    assert old.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    old.close()


def test_failed_migration_keeps_data_and_backup(tmp_path, monkeypatch, record):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        rid = record(s)
    _extra_revision(tmp_path, monkeypatch, '''
        op.add_column("runs", sa.Column("favourite", sa.Integer(), nullable=True))
        raise RuntimeError("simulated bug in a migration")
    ''')
    with pytest.raises(MigrationError, match="simulated bug.*copy made before migrating"):
        SessionStore.open(folder)
    assert len(list((folder / "backups").iterdir())) == 1
    monkeypatch.undo()
    with SessionStore.open(folder) as s:  # transactional DDL: still a valid session of the head
        assert s.info().schema_revision == HEAD
        assert s.get_run(rid).status == "ok"


# ------------------------------------------------------- 0002: runs record their dtype
def _as_revision_0001(folder):
    """Make the session in ``folder`` what revision 0001 wrote: runs without the dtype column."""
    raw = sqlite3.connect(folder / "session.db")
    raw.execute("ALTER TABLE runs DROP COLUMN dtype")
    raw.execute("UPDATE alembic_version SET version_num = '0001'")
    raw.commit()
    raw.close()


def test_a_0001_session_reads_read_only_unchanged_then_upgrades_and_records_dtypes(tmp_path, record):
    folder = tmp_path / "s"
    with SessionStore.open(folder) as s:
        old_id = record(s)
    _as_revision_0001(folder)
    before = _sha(folder / "session.db")
    # history, check and backup open read-only: a 0001 session reads (dtype not recorded), unchanged
    with SessionStore.open(folder, readonly=True) as s:
        run = s.get_run(old_id)
        assert run.dtype is None and run.device == "cpu" and run.params["prompt"] == "a red circle"
        assert [r.id for r in s.list_runs()] == [old_id]
    assert _sha(folder / "session.db") == before
    with SessionStore.open(folder) as s:  # opened for writing: backed up, then upgraded to 0002
        assert s.info().schema_revision == HEAD == "0002"
        assert s.get_run(old_id).dtype is None
        new_id = record(s, device="cuda:0", dtype="bfloat16")
        running = s.begin_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1, dtype="float16")
        s.finish_run(running, "ok")
    with SessionStore.open(folder, readonly=True) as s:
        assert (s.get_run(new_id).device, s.get_run(new_id).dtype) == ("cuda:0", "bfloat16")
        assert s.get_run(running).dtype == "float16"
    (backup,) = (folder / "backups").iterdir()
    assert sqlite3.connect(backup).execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"


def test_repair_copies_a_0001_session_and_keeps_recorded_dtypes(tmp_path, record):
    from storage.maintenance import repair_session

    old = tmp_path / "old"
    with SessionStore.open(old) as s:
        rid = record(s)
    _as_revision_0001(old)
    report = repair_session(old, tmp_path / "old-repaired")
    assert report.runs_copied == 1
    with SessionStore.open(tmp_path / "old-repaired", readonly=True) as s:
        assert s.get_run(rid).dtype is None and s.get_run(rid).params["prompt"] == "a red circle"
    new = tmp_path / "new"
    with SessionStore.open(new) as s:
        rid = record(s, dtype="float16", device="cuda")
    repair_session(new, tmp_path / "new-repaired")
    with SessionStore.open(tmp_path / "new-repaired", readonly=True) as s:
        assert s.get_run(rid).dtype == "float16"
