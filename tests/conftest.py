"""Settings shared by the whole test suite.

- Qt renders offscreen unless the caller chose a platform (``.ci/run`` uses Xvfb + xcb for the
  OpenGL tests).
- The model hubs are offline; the studio's settings, data and logs go to a temporary folder so
  tests never touch the user's real configuration (subprocesses inherit the same environment).
- Only the built-in plugins are loaded (``IMPLICIT_STUDIO_NO_PLUGINS=1``): a third-party plugin
  that happens to be installed (a developer's, or the example plugin while tests/kit has it
  installed) cannot change what the tests see. Tests about third-party discovery clear it
  (tests/kit does for all its tests, the ``plugin_dist`` fixture for its test, the toy fixtures
  of tests/app for theirs).
- Qt OpenGL contexts are shared (``AA_ShareOpenGLContexts``), as in the app: pytest-qt creates
  the QApplication, and the attribute must be set before that.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("IMPLICIT_STUDIO_NO_PLUGINS", "1")

_STUDIO_TMP = Path(tempfile.mkdtemp(prefix="implicit-studio-tests-"))
for _key, _sub in (("IMPLICIT_STUDIO_CONFIG_DIR", "config"), ("IMPLICIT_STUDIO_DATA_DIR", "data"),
                   ("IMPLICIT_STUDIO_LOG_DIR", "log")):
    os.environ.setdefault(_key, str(_STUDIO_TMP / _sub))

#: Folder of the toy plugins used by the services tests.
PLUGINS_FIXTURE = Path(__file__).resolve().parent / "plugins_fixture"

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture
def make_read_only():
    """``make_read_only(folder) -> undo``: make a folder and everything in it really read-only,
    also for root (the immutable attribute; the test is skipped where it cannot be set)."""

    def make(folder: Path):
        paths = [folder, *sorted(folder.rglob("*"))]
        if os.geteuid() != 0:
            modes = {p: p.stat().st_mode for p in paths}
            for p in reversed(paths):
                p.chmod(p.stat().st_mode & ~0o222)
            return lambda: [p.chmod(m) for p, m in modes.items()]
        done = []
        for p in paths:
            r = subprocess.run(["chattr", "+i", str(p)], capture_output=True)
            if r.returncode != 0:
                for q in done:
                    subprocess.run(["chattr", "-i", str(q)])
                pytest.skip(f"cannot make a read-only folder as root here: {r.stderr.decode()}")
            done.append(p)
        return lambda: [subprocess.run(["chattr", "-i", str(q)]) for q in done]

    return make


def pytest_configure(config) -> None:
    try:
        from PySide6.QtCore import QCoreApplication, Qt
    except ImportError:  # no Qt: the tests that need it skip or fail on their own
        return
    if QCoreApplication.instance() is None:
        QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts, True)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say when the OpenGL tests (marked ``gl``) were skipped, and how to run them: a bare ``s``
    in the progress line was easy to miss (issue 28, item 16)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "gl" in getattr(r, "keywords", {})]
    if skipped:
        reason = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else str(skipped[0].longrepr)
        terminalreporter.write_line(
            f"note: {len(skipped)} OpenGL test(s) skipped ({reason.removeprefix('Skipped: ')}); they need an X server "
            "and QT_QPA_PLATFORM=xcb: run .ci/run (it starts Xvfb) to include them", yellow=True)


@pytest.fixture
def torch_ops():
    """``with torch_ops() as ops:`` records the dtype and device of every tensor torch's
    operators make inside the block (a ``TorchDispatchMode``: below autocast, so it sees the
    arithmetic really done). ``ops.dtypes("mm", "addmm")`` -> the set of dtypes those made;
    ``ops.devices()`` -> the set of device types. It observes; it changes nothing."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen: list[tuple[str, object, str]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.seen.append((func.overloadpacket.__name__, t.dtype, t.device.type))
            return out

        def dtypes(self, *names: str) -> set:
            return {d for n, d, _ in self.seen if not names or n in names}

        def devices(self) -> set:
            return {dev for _, _, dev in self.seen}

    return Ops
