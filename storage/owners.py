"""Which process owns a running run: one locked file per run in ``<session>/running/``.

``begin_run`` creates ``running/<run id>.lock`` and holds an exclusive lock on it until
``finish_run`` (or the end of the process: the operating system drops the lock of a process that
exits, is killed or crashes). The file holds a small JSON record: the process id, the tool and
plugin, when it started, and optionally the file where that process writes a fatal error
(``faulthandler``). Start-up recovery marks a run interrupted only when nobody holds its lock, so a
second process's live runs are left alone; the record tells which plugin's tool was running when a
process died.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

RUNNING_DIR = "running"

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        """An exclusive lock on the open file ``fd`` without waiting. ``flock`` locks belong to
        the open file, so even this process's second open of the same file is refused."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False


@dataclass(frozen=True)
class OwnerRecord:
    """What a run's lock file says about the process that ran it."""

    pid: int | None = None
    host: str | None = None
    started_at: float | None = None
    tool_id: str | None = None
    plugin: str | None = None
    fatal_log: str | None = None  # file where that process's faulthandler writes a fatal error

    def fatal_error(self) -> str | None:
        """The first line of the fatal error the process wrote before it died, if it did."""
        if not self.fatal_log:
            return None
        try:
            with open(self.fatal_log, encoding="utf-8", errors="replace") as f:
                text = f.read(4000)
        except OSError:
            return None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[0] if lines else None


class RunLock:
    """The held lock of one running run; :meth:`release` when the run is finished."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """The run finished: remove its file and let go of the lock."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        self.abandon()

    def abandon(self) -> None:
        """Let go of the lock but keep the file (the store closes while the run is still
        running): the next recovery finds the run's owner gone and reads who it was."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RunOwners:
    """The lock files of the runs of one session folder."""

    def __init__(self, folder: Path):
        self.dir = Path(folder) / RUNNING_DIR
        self.fatal_log: str | None = None  # set by the application (see app.jobs)

    def path(self, run_id: int) -> Path:
        return self.dir / f"{int(run_id)}.lock"

    def acquire(self, run_id: int, tool_id: str, plugin: str) -> RunLock:
        """Create and lock the file of a run this process is starting."""
        self.dir.mkdir(exist_ok=True)
        path = self.path(run_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise OSError(f"the lock file {path} of run {run_id} is held by another process")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
                  "tool_id": tool_id, "plugin": plugin, "fatal_log": self.fatal_log}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record, ensure_ascii=True).encode("ascii"))
        return RunLock(path, fd)

    def claim_if_dead(self, run_id: int) -> tuple[bool, OwnerRecord | None]:
        """``(True, record)`` when the run's owner is gone (its lock file is free or missing:
        the file is then removed), ``(False, None)`` while a live process holds it."""
        path = self.path(run_id)
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            return True, None  # begun by a version without lock files, or its file was lost
        except OSError:
            return False, None  # cannot tell: leave it alone
        try:
            if not _try_lock(fd):
                return False, None
            record = _read_record(fd)
            try:
                path.unlink()
            except OSError:
                pass
            return True, record
        finally:
            os.close(fd)


    def remove_logs(self, paths: set[str]) -> None:
        """Delete the fatal-error logs of processes that are gone (only files in this folder)."""
        for p in paths:
            path = Path(p)
            if path.parent.resolve() == self.dir.resolve() and path.name.startswith("fatal-"):
                try:
                    path.unlink()
                except OSError:
                    pass

    def sweep(self, running: set[int]) -> None:
        """Remove lock files left behind by runs that are no longer running and whose lock
        nobody holds (on Windows an open file cannot be deleted when its run finishes)."""
        if not self.dir.is_dir():
            return
        for path in self.dir.glob("*.lock"):
            if path.stem.isdigit() and int(path.stem) not in running:
                self.claim_if_dead(int(path.stem))


def _read_record(fd: int) -> OwnerRecord:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 64 * 1024)
    try:
        data = json.loads(raw.decode("ascii").strip() or "{}")
    except (UnicodeDecodeError, ValueError):
        return OwnerRecord()
    if not isinstance(data, dict):
        return OwnerRecord()

    def pick(key, kind):
        value = data.get(key)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    return OwnerRecord(pid=pick("pid", int), host=pick("host", str),
                       started_at=pick("started_at", (int, float)), tool_id=pick("tool_id", str),
                       plugin=pick("plugin", str), fatal_log=pick("fatal_log", str))
