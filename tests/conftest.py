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
import sys
import tempfile
from pathlib import Path

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


def pytest_configure(config) -> None:
    try:
        from PySide6.QtCore import QCoreApplication, Qt
    except ImportError:  # no Qt: the tests that need it skip or fail on their own
        return
    if QCoreApplication.instance() is None:
        QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts, True)
