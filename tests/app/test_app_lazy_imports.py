"""Start-up stays light: registering every installed plugin (the five built-ins included) and
listing their tools imports none of torch, diffusers, transformers, onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from app.plugins import PluginManager
from app.settings import Settings
m = PluginManager(Settings()).load()
ms = (time.perf_counter() - t0) * 1000
for t in m.tools.values():
    t.defaults(); [p.describe() for p in t.params]
heavy = [h for h in ("torch", "diffusers", "transformers", "onnxruntime") if h in sys.modules]
print(json.dumps({"heavy": heavy, "ms": ms, "tools": sorted(m.tools),
                  "records": {r.name: [r.status, r.builtin, r.error] for r in m.records.values()}}))
"""


def test_registering_builtin_plugins_imports_nothing_heavy():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [], out
    builtins = {name: rec for name, rec in out["records"].items() if rec[1]}
    assert {"text_to_image", "h_edit", "inpaint", "inr", "rl"} <= set(builtins)
    assert all(rec[0] == "loaded" for rec in builtins.values()), builtins
    assert len(out["tools"]) >= 5


def test_cli_tools_listing_imports_nothing_heavy(tmp_path):
    code = ("import sys, io, contextlib; from app import cli\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf): rc = cli.main(['tools'])\n"
            "print([h for h in ('torch','diffusers','transformers','onnxruntime') if h in sys.modules], rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[] 0"
