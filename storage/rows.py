"""Turning database rows into records one row at a time, so that one damaged row cannot hide the
others.

A flipped bit, a foreign writer or a bug can leave a row whose parameters are not JSON, whose text
is not UTF-8 or whose number columns hold something else. Such a row is still listed: every field
that can be read is kept, the others get a neutral value, and :attr:`RunInfo.damage` names what was
lost ("parameters: not valid JSON ..."). Nothing here writes to the database.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any, Callable

from .models import RUN_STATUSES
from .types import ResultInfo, RunInfo

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_EXT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,15}$")
_SHOWN = 120  # characters of a damaged value quoted in its damage note


class Undecodable(str):
    """Text from the database that is not valid UTF-8, decoded with backslash escapes."""


def tolerant_text(data: bytes) -> str:
    """An sqlite3 ``text_factory``: UTF-8 text as usual, anything else as :class:`Undecodable`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable(data.decode("utf-8", "backslashreplace"))


def fetch_all(conn: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    """``conn.execute(sql, params).fetchall()``; when a text value is not UTF-8 (which makes the
    sqlite3 module fail the whole query) the query is read again with :func:`tolerant_text`."""
    try:
        return _fetch(conn, sql, params)
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc).lower():
            raise
    old = conn.text_factory
    conn.text_factory = tolerant_text
    try:
        return _fetch(conn, sql, params)
    finally:
        conn.text_factory = old


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    cur = conn.execute(sql, params)
    try:
        return cur.fetchall()
    finally:
        cur.close()


def valid_file_name(sha: Any, ext: Any) -> bool:
    """True for a well-formed content address: 64 lower-case hex digits and a short extension."""
    return isinstance(sha, str) and isinstance(ext, str) and bool(
        _SHA_RE.match(sha) and _EXT_RE.match(ext))


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii")  # control bytes and escapes stay visible
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


class _Reader:
    """Reads the fields of one row, collecting a note for each one that is damaged."""

    def __init__(self, where: str):
        self.where = where
        self.damage: list[str] = []

    def note(self, what: str) -> None:
        self.damage.append(f"{self.where}{what}")

    def text(self, value: Any, what: str, default: str | None = "") -> str | None:
        if value is None and default is None:
            return None
        if isinstance(value, Undecodable):
            self.note(f"{what}: not valid UTF-8 text: {_quote(value)}")
            return str(value)
        if isinstance(value, str):
            return value
        self.note(f"{what}: damaged (found {_quote(value)})")
        return default

    def number(self, value: Any, what: str, kind: Callable = float, optional: bool = True):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                kind is int and not isinstance(value, int)):
            self.note(f"{what}: damaged (found {_quote(value)})")
            return None if optional else kind(0)
        return kind(value)

    def json(self, value: Any, what: str, check: Callable[[Any], bool], default: Any) -> Any:
        if value is None:
            return default
        text = self.text(value, what, None)
        if text is None or isinstance(value, Undecodable):
            return default
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            self.note(f"{what}: not valid JSON ({exc}): {_quote(text)}")
            return default
        if not check(parsed):
            self.note(f"{what}: not of the form expected: {_quote(text)}")
            return default
        return parsed


def run_info(r: tuple, results: list[ResultInfo], inputs: list, tags: list[str],
             damage: list[str]) -> RunInfo:
    """A :class:`RunInfo` from a ``runs`` row (columns as ``SessionStore._RUN_COLS``); ``damage``
    holds the notes already made about this run's results, tags and inputs."""
    rd = _Reader("")
    params = rd.json(r[4], "parameters", lambda v: isinstance(v, dict), {})
    status = rd.text(r[13], "status", "failed")
    if status not in RUN_STATUSES:
        rd.note(f"status: damaged (found {_quote(status)})")
        status = "failed"
    rating = rd.number(r[16], "rating", int)
    if rating is not None and not 0 <= rating <= 5:
        rd.note(f"rating: damaged (found {rating})")
        rating = None
    started = rd.number(r[10], "start time", float, optional=False)
    return RunInfo(
        id=r[0], tool_id=rd.text(r[1], "tool id", "?"), plugin=rd.text(r[2], "plugin name", "?"),
        plugin_version=rd.text(r[3], "plugin version", ""), params=params,
        seed=rd.number(r[5], "seed", int), model_ref=rd.text(r[6], "model", None),
        model_hash=rd.text(r[7], "model hash", None), device=rd.text(r[8], "device", "?"),
        backend=rd.text(r[9], "backend", None), started_at=started,
        finished_at=rd.number(r[11], "finish time"), duration_s=rd.number(r[12], "duration"),
        status=status, error=rd.text(r[14], "error text", None),
        parent_run_id=rd.number(r[15], "parent run", int), rating=rating,
        note=rd.text(r[17], "note", None), tags=tuple(tags), results=tuple(results),
        inputs=tuple(inputs), dtype=rd.text(r[18], "dtype", None) if len(r) > 18 else None,
        damage=tuple(rd.damage + damage))


def result_info(r: tuple, files_root: str, damage: list[str]) -> ResultInfo:
    """A :class:`ResultInfo` from a ``results`` row (columns as ``SessionStore._RES_COLS``);
    notes about damaged fields are appended to ``damage``."""
    rd = _Reader(f"result {r[0]}: ")
    sha = rd.text(r[4], "file hash", "")
    ext = rd.text(r[5], "file extension", "")
    if not valid_file_name(sha, ext):
        if not rd.damage:
            rd.note(f"file name: damaged ({_quote(sha)}.{_quote(ext)})")
        path = Path(files_root) / "damaged-file-name"
    else:
        path = Path(f"{files_root}/{sha[:2]}/{sha}.{ext}")
    shape = rd.json(r[9], "shape", lambda v: isinstance(v, list) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in v), None)
    meta = rd.json(r[10], "metadata", lambda v: isinstance(v, dict), None)
    info = ResultInfo(
        id=r[0], run_id=r[1], position=rd.number(r[2], "position", int, optional=False),
        kind=rd.text(r[3], "kind", "file"), sha256=sha, ext=ext,
        size=rd.number(r[6], "size", int, optional=False), path=path,
        width=rd.number(r[7], "width", int), height=rd.number(r[8], "height", int),
        shape=tuple(shape) if shape is not None else None, metadata=meta or {},
        created_at=rd.number(r[11], "creation time", float, optional=False))
    damage.extend(rd.damage)
    return info
