"""Helpers for the plugin-kit tests: installing a distribution into this venv for one test
module and always removing it again (even when a test fails or is interrupted)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as md
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
EXAMPLE = REPO / "examples" / "colour-histogram"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "install: pip-installs a distribution into the venv for the test and uninstalls it afterwards")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: this test run's private studio folders, offscreen
    Qt, no plugin switches that would hide third-party plugins."""
    env = dict(os.environ)
    for key in ("IMPLICIT_STUDIO_NO_PLUGINS", "IMPLICIT_STUDIO_LOAD_PLUGINS", "IMPLICIT_STUDIO_STRICT_PLUGINS",
                "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"):
        env.pop(key, None)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["HF_HUB_OFFLINE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.update(extra)
    return env


def is_installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def pip(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pip", *args], capture_output=True, text=True,
                          env=subprocess_env(), timeout=timeout)


@contextlib.contextmanager
def pip_installed(project: Path, dist: str, import_paths: tuple[str, ...] = (), extras: str = "") -> Iterator[None]:
    """``pip install --no-deps --no-build-isolation -e project`` for the block, then uninstall.
    With ``extras`` (``"test"``) it is ``pip install --no-build-isolation -e "project[test]"``, as
    the docs tell an author: the dependencies are resolved (all present here, so nothing is
    downloaded) and what is missing would fail the install.

    If ``dist`` was installed before (a developer's editable install, or CI that installed the
    example on purpose) it is re-installed from ``project`` and left installed afterwards.
    The editable install's ``.pth`` file is processed so this process can import the package too;
    that path and the modules imported from it are forgotten afterwards.
    """
    was_installed = is_installed(dist)
    path_before = list(sys.path)
    modules_before = set(sys.modules)
    try:
        if extras:
            proc = pip("install", "--no-build-isolation", "--no-index", "-e", f"{project}[{extras}]")
        else:
            proc = pip("install", "--no-deps", "--no-build-isolation", "-e", str(project))
        assert proc.returncode == 0, f"pip install -e {project} failed:\n{proc.stdout}\n{proc.stderr}"
        site.addsitedir(sysconfig.get_paths()["purelib"])  # read the new editable .pth now
        importlib.invalidate_caches()
        yield
    finally:
        if not was_installed:
            proc = pip("uninstall", "-y", dist)
            if proc.returncode != 0:  # report, but do not hide the test's own outcome
                print(f"warning: pip uninstall {dist} failed:\n{proc.stdout}\n{proc.stderr}", file=sys.stderr)
        sys.path[:] = path_before
        for name in set(sys.modules) - modules_before:
            if any(name == m or name.startswith(m + ".") for m in import_paths):
                del sys.modules[name]
        importlib.invalidate_caches()


def run_own_tests(project: Path, min_passed: int) -> None:
    """Run a plugin project's own test suite the way its author does (``python -m pytest`` in its
    folder, the plugin installed, the studio's fixtures available) and check it passed."""
    import re

    proc = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                          capture_output=True, text=True, timeout=600, env=subprocess_env())
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= min_passed, tail
    assert " failed" not in proc.stdout and " error" not in proc.stdout, tail


class KitTools:
    """The helpers above, handed to tests through the ``kit`` fixture."""

    python = PYTHON
    repo = REPO
    example = EXAMPLE
    env = staticmethod(subprocess_env)
    is_installed = staticmethod(is_installed)
    pip_installed = staticmethod(pip_installed)
    run_own_tests = staticmethod(run_own_tests)


@pytest.fixture(scope="session")
def kit() -> KitTools:
    return KitTools()


@pytest.fixture(autouse=True)
def third_party_plugins_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about third-party plugins: lift the suite-wide built-ins-only switch
    (IMPLICIT_STUDIO_NO_PLUGINS=1, set by tests/conftest.py) for each of them."""
    monkeypatch.delenv("IMPLICIT_STUDIO_NO_PLUGINS", raising=False)
