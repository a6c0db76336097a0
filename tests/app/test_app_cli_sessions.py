"""The command line on damaged, read-only and full sessions (issue 27): ``history`` and
``export`` read read-only sessions and damaged rows, ``session check|repair|backup``, and a full
``--out`` disk gives a sentence, no leftover file and the run's id."""

from __future__ import annotations

import errno
import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storage import SessionStore


def cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def _session(folder: Path) -> list[int]:
    with SessionStore.open(folder) as s:
        return [s.record_run(tool_id="t", plugin="p", plugin_version="1",
                             params={"prompt": p}, seed=i,
                             results=[{"kind": "image", "data": _png(), "ext": "png"}])
                for i, p in enumerate(["fine", "bell \x07 esc \x1b[2J nul \x00 \ud800", "other"])]


def test_history_and_export_of_a_read_only_session(env_plain, tmp_path, make_read_only):
    folder = tmp_path / "s"
    ids = _session(folder)
    undo = make_read_only(folder)
    try:
        h = cli(["history", "--session", folder], env_plain)
        assert h.returncode == 0, h.stderr
        assert "fine" in h.stdout and "other" in h.stdout
        e = cli(["export", ids[0], "--session", folder, "--out", tmp_path / "out"], env_plain)
        assert e.returncode == 0, e.stderr
        r = cli(["run", "noise-image", "--session", folder], env_plain)
        assert r.returncode == 2 and "readonly=True" not in r.stderr
    finally:
        undo()
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".json", ".png"]


def test_history_survives_a_damaged_row_and_escapes_control_characters(env_plain, tmp_path):
    folder = tmp_path / "s"
    ids = _session(folder)
    conn = sqlite3.connect(folder / "session.db")
    conn.execute("UPDATE runs SET params_json = '{\"prompt\": [' WHERE id = ?", (ids[0],))
    conn.commit()
    conn.close()
    h = subprocess.run([sys.executable, "-m", "app", "history", "--session", str(folder)],
                       capture_output=True, env=env_plain, timeout=120)
    assert h.returncode == 0, h.stderr
    out = h.stdout.decode("utf-8")
    assert "other" in out and "ok*" in out and "parameters: not valid JSON" in out
    assert "\x07" not in out and "\x1b" not in out and "\x00" not in out
    assert "bell \\x07 esc \\x1b[2J nul \\x00 \\ud800" in out
    e = cli(["export", ids[1], "--session", folder, "--out", tmp_path / "out"], env_plain)
    assert e.returncode == 0, e.stderr
    d = cli(["export", ids[0], "--session", folder, "--out", tmp_path / "out2"], env_plain)
    assert d.returncode == 0, d.stderr  # what can be read, with the damage in its record
    assert "not valid JSON" in (tmp_path / "out2" / f"run-{ids[0]}.json").read_text()


def test_session_check_repair_backup_commands(env_plain, tmp_path):
    folder = tmp_path / "s"
    _session(folder)
    ok = cli(["session", "check", "--session", folder], env_plain)
    assert ok.returncode == 0 and "is sound: 3 runs" in ok.stdout, ok.stderr
    b = cli(["--session", str(folder), "session", "backup", "--out", tmp_path / "b.zip"], env_plain)
    assert b.returncode == 0 and (tmp_path / "b.zip").is_file(), b.stderr
    damaged = next(folder.joinpath("files").rglob("*.png"))  # every run shares this picture
    damaged.write_bytes(bytes(b ^ 0xFF for b in damaged.read_bytes()))  # same size, other bytes
    bad = cli(["session", "check", "--session", folder], env_plain)
    assert bad.returncode == 1 and "does not match its hash" in bad.stdout
    r = cli(["session", "repair", "--session", folder, "--out", tmp_path / "fixed"], env_plain)
    assert r.returncode == 0 and "runs copied: 3, results: 0" in r.stdout, r.stderr
    assert cli(["session", "check", "--session", tmp_path / "fixed"], env_plain).returncode == 0
    none = cli(["session", "check", "--session", tmp_path / "nowhere"], env_plain)
    assert none.returncode == 2 and "no session at" in none.stderr


def test_full_disk_in_out_folder_names_it_and_leaves_nothing(studio_cli, toy_site, monkeypatch, tmp_path):
    import storage.filestore as filestore

    monkeypatch.setenv("IMPLICIT_STUDIO_LOAD_PLUGINS", "toy")
    out = tmp_path / "out"
    real = filestore.write_bytes_durably

    def full(path, data, sync=True):
        if Path(path).parent == out:
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, sync)

    monkeypatch.setattr(filestore, "write_bytes_durably", full)
    r = studio_cli("run", "noise-image", "--size", "8", "--steps", "1", "--session", tmp_path / "s",
                   "--out", out)
    assert r.exit_code == 1
    assert "run 1 finished and is recorded in the session" in r.stderr
    assert "The disk is full" in r.stderr and "implicit-studio export 1 --out DIR" in r.stderr
    assert list(out.iterdir()) == []  # no hidden temporary file left


@pytest.fixture
def env_plain(cli_env):
    return cli_env


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB file system (tmpfs), nearly full: a real "No space left on device"."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        (mnt / "filler").write_bytes(b"\0" * 56 * 1024)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_really_full_out_folder(env_plain, tmp_path, tiny_disk):
    out = tiny_disk / "out"
    r = cli(["run", "noise-image", "--size", "128", "--steps", "1", "--session", tmp_path / "s",
             "--out", out], env_plain)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "The disk is full" in r.stderr and "Errno" not in r.stderr
    assert "run 1 finished and is recorded in the session" in r.stderr
    assert [p.name for p in out.iterdir()] == [], "no partial or temporary file is left"
