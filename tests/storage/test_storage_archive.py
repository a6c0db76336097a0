"""Portable session archives: round trip and every refusal of an unsafe archive."""

import io
import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from storage import ArchiveError, SessionStore


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory):
    """An exported archive of a small session with a tree, tags and a canvas history."""
    root = tmp_path_factory.mktemp("arch")
    with SessionStore.open(root / "s", name="to send") as s:
        a = s.record_run(tool_id="text-to-image", plugin="p", plugin_version="1",
                         params={"prompt": "red circle"}, seed=1,
                         results=[{"kind": "image", "data": b"png-a" * 100, "ext": "png"}])
        res = s.get_run(a).results[0].id
        s.record_run(tool_id="h-edit", plugin="p", plugin_version="1",
                     params={"prompt": "blue"}, seed=2, inputs=[res],
                     results=[{"kind": "mask", "data": b"mask" * 50, "ext": "png"},
                              {"kind": "array", "data": b"\x00" * 4000, "ext": "npy"}])
        s.add_tag(a, "keep")
        s.push_canvas_edit("result:1", b"stroke")
        # an orphan file must not travel
        s.files.put(b"orphan", "bin")
        out = s.export_archive(root / "session.zip")
    return out.read_bytes()


def _write(tmp_path, data, name="a.zip"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_round_trip(tmp_path, archive_bytes):
    arch = _write(tmp_path, archive_bytes)
    with zipfile.ZipFile(arch) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert names[:2] == ["manifest.json", "session.db"]
    assert manifest["format"] == "implicit-studio-session" and manifest["file_count"] == 4
    assert not any(n.endswith(".bin") for n in names)  # orphans are left out
    with SessionStore.import_archive(arch, tmp_path / "imported") as s:
        runs = s.list_runs()
        assert [r.tool_id for r in runs] == ["h-edit", "text-to-image"]
        assert runs[0].parent_run_id == runs[1].id and runs[1].tags == ("keep",)
        assert s.read_result(runs[1].results[0].id) == b"png-a" * 100
        assert s.canvas_history("result:1").edits == (b"stroke",)
        assert s.info().name == "to send"
        assert s.integrity_check(verify_hashes=True).ok
        assert [r.id for r in s.list_runs(text="circle")] == [runs[1].id]


def _rebuild(archive_bytes, extra=(), drop=(), replace=None):
    """A copy of the archive with members dropped/added/replaced (name, data[, ZipInfo tweaks])."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            data = src.read(info)
            if replace and info.filename in replace:
                data = replace[info.filename]
            dst.writestr(info.filename, data)
        for item in extra:
            if isinstance(item, zipfile.ZipInfo):
                dst.writestr(item, b"payload")
            else:
                dst.writestr(zipfile.ZipInfo(item), b"payload")
    return buf.getvalue()


@pytest.mark.parametrize("bad", ["../evil.txt", "files/../../evil", "/etc/evil", "C:/evil",
                                 "files\\..\\evil", "a//b", "x/../../y"])
def test_unsafe_member_names_are_refused(tmp_path, archive_bytes, bad):
    (tmp_path / "in").mkdir()
    arch = _write(tmp_path / "in", _rebuild(archive_bytes, extra=[bad]))
    target = tmp_path / "box" / "target"
    with pytest.raises(ArchiveError, match="refused"):
        SessionStore.import_archive(arch, target)
    assert not (tmp_path / "box").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.zip", "in"]


def test_symlink_member_is_refused(tmp_path, archive_bytes):
    link = zipfile.ZipInfo("files/ab/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    arch = _write(tmp_path, _rebuild(archive_bytes, extra=[link]))
    with pytest.raises(ArchiveError, match="symbolic link"):
        SessionStore.import_archive(arch, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_size_limits(tmp_path, archive_bytes):
    arch = _write(tmp_path, archive_bytes)
    with pytest.raises(ArchiveError, match="over the limit"):
        SessionStore.import_archive(arch, tmp_path / "t", max_bytes=len(archive_bytes) - 1)
    # a zip bomb: tiny compressed, large uncompressed
    bomb = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as src, zipfile.ZipFile(
            bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("files/00/" + "0" * 64 + ".bin", b"\x00" * 5_000_000)
    bomb_path = _write(tmp_path, bomb.getvalue(), "bomb.zip")
    assert bomb_path.stat().st_size < 100_000
    with pytest.raises(ArchiveError, match="unpacks to more than"):
        SessionStore.import_archive(bomb_path, tmp_path / "t", max_bytes=1_000_000)
    assert not (tmp_path / "t").exists()


def test_damaged_file_member_is_refused(tmp_path, archive_bytes):
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
        name = next(n for n in zf.namelist() if n.startswith("files/"))
    arch = _write(tmp_path, _rebuild(archive_bytes, replace={name: b"tampered"}))
    with pytest.raises(ArchiveError, match="damaged"):
        SessionStore.import_archive(arch, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_missing_file_member_fails_integrity(tmp_path, archive_bytes):
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as zf:
        name = next(n for n in zf.namelist() if n.startswith("files/"))
    arch = _write(tmp_path, _rebuild(archive_bytes, drop={name}))
    with pytest.raises(ArchiveError, match="integrity check.*missing"):
        SessionStore.import_archive(arch, tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_not_an_archive_and_non_empty_target(tmp_path, archive_bytes):
    junk = _write(tmp_path, b"not a zip at all", "junk.zip")
    with pytest.raises(ArchiveError, match="not a readable session archive"):
        SessionStore.import_archive(junk, tmp_path / "t")
    other = _write(tmp_path, _rebuild(archive_bytes, drop={"manifest.json"}), "nomani.zip")
    with pytest.raises(ArchiveError, match="not an Implicit Studio session archive"):
        SessionStore.import_archive(other, tmp_path / "t")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ArchiveError, match="not an empty folder"):
        SessionStore.import_archive(_write(tmp_path, archive_bytes), busy)
    assert (busy / "keep.txt").read_text() == "mine"
    with pytest.raises(ArchiveError, match="no archive file"):
        SessionStore.import_archive(tmp_path / "nothing.zip", tmp_path / "t")


_NAME_PARTS = st.sampled_from(["..", ".", "", "files", "ab", "session.db", "manifest.json",
                               "é", "a:b", "C:", "\\", "..\\..", "x" * 3, "~", " "])


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(st.one_of(
    st.lists(_NAME_PARTS, min_size=1, max_size=5).map("/".join),
    st.lists(_NAME_PARTS, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
    st.text(min_size=1, max_size=30)), min_size=1, max_size=4))
@example(names=["../escape"])
@example(names=["files/ab/../../../escape"])
@example(names=["/tmp/escape"])
@example(names=["session.db/../../escape"])
def test_random_member_names_never_escape_target(archive_bytes, names):
    with tempfile.TemporaryDirectory() as td:
        box = Path(td)
        arch = box / "in.zip"
        try:
            data = _rebuild(archive_bytes, extra=names)
        except (ValueError, zipfile.BadZipFile, UnicodeEncodeError):
            return  # zipfile itself cannot write this name
        arch.write_bytes(data)
        target = box / "sandbox" / "target"
        try:
            s = SessionStore.import_archive(arch, target)
        except ArchiveError:
            assert not target.exists()
        else:
            s.close()
            assert (target / "session.db").is_file()
        for dirpath, dirnames, filenames in os.walk(box):
            for fn in filenames + dirnames:
                p = Path(dirpath) / fn
                assert p == arch or p == box / "sandbox" or target in p.parents or p == target, p
