"""app.selftest from the source tree (no bundle): it passes on a complete installation and
fails, naming the step and the reason, when the model is missing or a plugin is broken."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(resources: Path, tmp_path: Path, *args: str, extra_env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("IMPLICIT_STUDIO_NO_PLUGINS", None)  # the self-test checks every discovered plugin
    env.update({"IMPLICIT_STUDIO_RESOURCES": str(resources), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
                "QT_QPA_PLATFORM": "offscreen"})
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "app.selftest", "--threads", "1", "--json", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _report(proc: subprocess.CompletedProcess) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON report:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


def test_self_test_passes_and_keeps_its_session(test_resources, tmp_path):
    keep = tmp_path / "kept"
    proc = _run(test_resources, tmp_path, "--keep", str(keep))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = _report(proc)
    assert report["ok"] is True
    assert [s["name"] for s in report["steps"]] == ["resources", "plugins", "generate", "session"]
    assert all(s["ok"] for s in report["steps"])
    plugins = report["steps"][1]["detail"]
    for name in ("text_to_image", "h_edit", "inpaint", "inr", "rl"):
        assert name in plugins
    assert "self-test passed" in proc.stdout
    # the kept session really holds the generated image
    from storage import SessionStore

    with SessionStore.open(keep / "session", readonly=True) as store:
        runs = store.list_runs()
        assert [r.tool_id for r in runs] == ["text-to-image"]
        image = [r for r in store.get_run(runs[0].id).results if r.kind == "image"][0]
        assert store.read_result(image.id)[:8] == b"\x89PNG\r\n\x1a\n"


def test_self_test_fails_without_the_bundled_model(tmp_path):
    res = tmp_path / "res"
    shutil.copytree(REPO / "resources" / "icons", res / "icons")
    proc = _run(res, tmp_path)
    assert proc.returncode == 1
    report = _report(proc)
    assert report["ok"] is False
    assert report["steps"][-1]["name"] == "resources"
    assert "bundled model is missing" in report["steps"][-1]["detail"]
    assert "self-test: resources FAILED" in proc.stdout


def test_self_test_names_a_broken_plugin(test_resources, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "studio_selftest_broken.py").write_text(
        "from app.api import hookimpl\nraise ImportError('needs the package nothing-here')\n")
    proc = _run(test_resources, tmp_path, extra_env={"IMPLICIT_STUDIO_PLUGINS_DIR": str(plugins)})
    assert proc.returncode == 1
    step = _report(proc)["steps"][-1]
    assert step["name"] == "plugins" and not step["ok"]
    assert "studio_selftest_broken" in step["detail"] and "nothing-here" in step["detail"]


def test_self_test_rejects_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "app.selftest", "--steps", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--steps must be at least 1" in proc.stderr
