"""Fixtures for the services tests: the toy plugins installed as real distributions."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from app.testing import install_plugin_dist, plugin_dists_on_path

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "plugins_fixture"
TOY_NAMES = ("toy", "broken", "future", "hookfail", "toy_dup", "slow")


def write_toy_dists(site: Path) -> None:
    install_plugin_dist(site, "studio-toy", {"toy": "studio_toy.plugin"}, version="1.2.3", author="Toy Author",
                        summary="Toy tools for tests")
    install_plugin_dist(site, "studio-bad-plugins", {
        "broken": "studio_broken",
        "future": "studio_future",
        "hookfail": "studio_hookfail",
        "toy_dup": "studio_dup",
        "slow": "studio_slow",
    }, version="0.0.1", author="Bad Author")


@pytest.fixture
def toy_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The toy distributions on sys.path for this test (real entry-point discovery; the
    suite-wide IMPLICIT_STUDIO_NO_PLUGINS=1 of tests/conftest.py is lifted for the test)."""
    monkeypatch.delenv("IMPLICIT_STUDIO_NO_PLUGINS", raising=False)
    site = tmp_path / "site"
    write_toy_dists(site)
    with plugin_dists_on_path(site, [FIXTURE_DIR]):
        yield site


@pytest.fixture
def toy_env(toy_site: Path) -> dict:
    """Environment for a manager that sees only the toy plugins."""
    env = dict(os.environ)
    env["IMPLICIT_STUDIO_LOAD_PLUGINS"] = ",".join(TOY_NAMES)
    env.pop("IMPLICIT_STUDIO_NO_PLUGINS", None)
    return env


@pytest.fixture
def settings(tmp_path: Path):
    from app.settings import Settings

    return Settings(tmp_path / "config" / "settings.json")


@pytest.fixture
def manager(toy_env: dict, settings):
    from app.plugins import PluginManager

    return PluginManager(settings, env=toy_env).load()


@pytest.fixture
def cli_env(toy_site: Path, tmp_path: Path) -> dict:
    """Environment for a child ``implicit-studio`` that sees only the toy plugins and keeps its
    settings, data and log in this test's folder."""
    return subprocess_env(toy_site, IMPLICIT_STUDIO_LOAD_PLUGINS=",".join(TOY_NAMES),
                          IMPLICIT_STUDIO_CONFIG_DIR=str(tmp_path / "cfg"),
                          IMPLICIT_STUDIO_DATA_DIR=str(tmp_path / "data"),
                          IMPLICIT_STUDIO_LOG_DIR=str(tmp_path / "log"))


#: Plugins that misbehave on purpose (see tests/plugins_fixture/README.md), with the toy plugin.
EVIL = {"exit_import": "studio_exit_import", "interrupt_import": "studio_interrupt_import",
        "exit_hook": "studio_exit_hook", "interrupt_hook": "studio_interrupt_hook",
        "evil": "studio_evil.plugin", "toy": "studio_toy.plugin"}


@pytest.fixture
def evil_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("IMPLICIT_STUDIO_NO_PLUGINS", raising=False)
    site = tmp_path / "site"
    install_plugin_dist(site, "studio-evil", EVIL, version="6.6.6", author="Adversary")
    with plugin_dists_on_path(site, [FIXTURE_DIR]):
        yield site


@pytest.fixture
def evil_env(evil_site: Path, tmp_path: Path) -> dict:
    """Environment for a child ``implicit-studio`` (or a manager) that sees the misbehaving
    plugins and the toy plugin."""
    return subprocess_env(evil_site, IMPLICIT_STUDIO_LOAD_PLUGINS=",".join(EVIL),
                          IMPLICIT_STUDIO_CONFIG_DIR=str(tmp_path / "cfg"),
                          IMPLICIT_STUDIO_DATA_DIR=str(tmp_path / "data"),
                          IMPLICIT_STUDIO_LOG_DIR=str(tmp_path / "log"))


@pytest.fixture
def evil_manager(evil_env: dict, tmp_path: Path):
    from app.plugins import PluginManager
    from app.settings import Settings

    return PluginManager(Settings(tmp_path / "cfg" / "settings.json"), env=evil_env).load()


def subprocess_env(site: Path, **extra: str) -> dict:
    """Environment for a child process that discovers the toy plugins."""
    env = dict(os.environ)
    env.pop("IMPLICIT_STUDIO_NO_PLUGINS", None)
    paths = [str(site), str(FIXTURE_DIR), str(Path(__file__).resolve().parents[2])]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


PYTHON = sys.executable


@pytest.fixture
def store(tmp_path):
    """A new session store in the test's folder (closed afterwards)."""
    from storage import SessionStore

    s = SessionStore.open(tmp_path / "session")
    yield s
    s.close()
