"""Issue 3: a plugin that is slow at start-up (a registration hook or its import over 100 ms)
is reported in the log with its name; fast plugins are not. The toy plugins are real
distributions found through the entry-point group, like any third-party plugin."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest

SLOW_HOOK = '''
import time
from app.api import ToolSpec, hookimpl

@hookimpl
def studio_tools():
    time.sleep(0.15)          # deliberately slow registration hook
    return [ToolSpec(id="kit-slow-hook", title="Slow hook", run="kit_slow_hook:run", results=())]

def run(ctx):
    return None
'''

SLOW_IMPORT = '''
import time
time.sleep(0.15)              # deliberately slow import of the entry module
from app.api import ToolSpec, hookimpl

@hookimpl
def studio_tools():
    return [ToolSpec(id="kit-slow-import", title="Slow import", run="kit_slow_import:run", results=())]

def run(ctx):
    return None
'''

FAST = '''
from app.api import ToolSpec, hookimpl

@hookimpl
def studio_tools():
    return [ToolSpec(id="kit-fast", title="Fast", run="kit_fast:run", results=())]

def run(ctx):
    return None
'''

TOYS = {"kit_slow_hook": SLOW_HOOK, "kit_slow_import": SLOW_IMPORT, "kit_fast": FAST}


@pytest.fixture
def toy_site(tmp_path: Path, monkeypatch) -> Path:
    """A folder holding the three toy modules and a dist-info (with the entry point) for each."""
    from app.testing import install_plugin_dist

    site = tmp_path / "site"
    site.mkdir()
    for name, source in TOYS.items():
        (site / f"{name}.py").write_text(source)
        install_plugin_dist(site, name.replace("_", "-"), {name: name})
    # only the toys: the real discovery path, without the other installed plugins' noise
    monkeypatch.setenv("IMPLICIT_STUDIO_LOAD_PLUGINS", ",".join(TOYS))
    monkeypatch.delenv("IMPLICIT_STUDIO_NO_PLUGINS", raising=False)
    return site


def test_slow_hook_and_slow_import_are_logged_with_the_plugin_name(toy_site, studio_env, caplog):
    from app.plugins import PluginManager
    from app.testing import plugin_dists_on_path

    caplog.set_level(logging.WARNING, logger="implicit_studio.plugins")
    with plugin_dists_on_path(toy_site):
        manager = PluginManager().load()
    assert {n for n, r in manager.records.items() if r.ok} == set(TOYS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    slow_hook = [m for m in warnings if "'kit_slow_hook'" in m]
    slow_import = [m for m in warnings if "'kit_slow_import'" in m]
    assert len(slow_hook) == 1 and "studio_tools" in slow_hook[0] and " ms" in slow_hook[0], warnings
    assert len(slow_import) == 1 and "import" in slow_import[0], warnings
    assert not [m for m in warnings if "'kit_fast'" in m], warnings
    assert manager.records["kit_slow_hook"].hook_ms["studio_tools"] >= 100
    assert manager.records["kit_fast"].hook_ms["studio_tools"] < 100
    # slow is reported, not punished: the tools are there
    assert {"kit-slow-hook", "kit-slow-import", "kit-fast"} <= set(manager.tools)


def test_slow_hook_reaches_the_log_file(toy_site, kit, tmp_path):
    """End to end: `implicit-studio plugins` in a fresh process writes the warning to its log file."""
    log_dir = tmp_path / "log"
    env = kit.env(IMPLICIT_STUDIO_LOG_DIR=str(log_dir), IMPLICIT_STUDIO_LOAD_PLUGINS=",".join(TOYS),
                  PYTHONPATH=os.pathsep.join([str(toy_site), str(kit.repo)]))
    proc = subprocess.run([kit.python, "-m", "app", "plugins"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("kit_")}
    assert set(listed) == set(TOYS) and all(" loaded " in line for line in listed.values()), proc.stdout
    text = "\n".join(p.read_text() for p in log_dir.glob("*.log*"))
    lines = [ln for ln in text.splitlines() if "WARNING" in ln and "'kit_slow_hook'" in ln]
    assert lines and "studio_tools" in lines[0], text[-3000:]
    assert not [ln for ln in text.splitlines() if "WARNING" in ln and "'kit_fast'" in ln]
