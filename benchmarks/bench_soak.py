#!/usr/bin/env python
"""Soak test of issue 27's field test: the studio under kills, damaged databases, misbehaving
plugins and long steps. Prints a markdown table; exit status 1 when a run was lost, a session
made unusable or something hung.

Probes (each also runs in a fast form in the test suite, tests/app/test_app_field_probes.py):

* ``kills``: a child process runs tools through the job runner, recording each run in a session,
  and is killed with SIGKILL at a random moment; after every kill the session is opened as the
  studio opens it (interrupted runs recovered). Lost: a run the child saw finish that is not ``ok``
  with every result readable. Also: no run left "running", integrity check with hashes, no lock
  file of a dead process left.
* ``creation``: a child creates sessions one after another and is killed at a random moment;
  every folder it leaves must open for writing and reading.
* ``flips``: one random bit of a session database flipped (a fresh copy each time). The session
  must either open and list every run (a damaged row listed as damaged), or be refused with a
  message and repaired by ``session repair`` into a session that opens. Unusable: neither. Runs
  whose own row was on the page hit and cannot be read back are damaged data, not runs the studio
  lost: they are counted apart.
* ``plugins``: plugins that call sys.exit / raise KeyboardInterrupt at import, in a hook and in a
  run, and os.abort() in a run: the command line goes on (or the run fails) with the plugin named,
  and after the native crash the next start names it.
* ``hangs``: a 2048x2048 text-to-image step on a tiny model cancelled in the middle of the step
  (in-process and by Ctrl-C on the command line) must end within a second; 8192x8192 under an
  8 GB address-space cap must be refused before any step.

Usage: python benchmarks/bench_soak.py [--kills 100] [--creations 100] [--flips 200]
       [--hang-rounds 3] [--only kills,flips,...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURES = REPO / "tests" / "plugins_fixture"
GiB = 1024**3


def _env(**extra: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


@dataclass
class Probe:
    name: str
    trials: int = 0
    lost: int = 0  # runs lost
    unusable: int = 0  # sessions made unusable
    hangs: int = 0
    failures: list[str] = field(default_factory=list)  # anything else that went wrong
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unusable or self.hangs or self.failures)


# ---------------------------------------------------------------------- kill -9 during runs
RUN_CHILD = r'''
import random, sys, time
import numpy as np
from app import api
from app.jobs import JobRunner, JobState, open_session

def noise(ctx, size=32, steps=4, seed=0):
    rng = ctx.numpy_rng()
    img = np.zeros((size, size, 3), np.uint8)
    for i in range(steps):
        img = np.clip(img.astype(int) + rng.integers(0, 60, img.shape), 0, 255).astype(np.uint8)
        time.sleep(0.01)
        ctx.progress(i + 1, steps)
    return [api.ImageResult(image=img), api.TableResult(columns=("k",), rows=[(size,)])]

tool = api.ToolSpec(id="soak-noise", title="soak", run="__main__:noise", plugin="soak",
                    params=(api.IntParam(name="size", default=32, min=4, max=256),
                            api.IntParam(name="steps", default=4, min=1, max=50), api.SeedParam(name="seed")))
store = open_session(sys.argv[1])
runner = JobRunner(None, store)
rng = random.Random(int(sys.argv[2]))
print("ready", flush=True)
while True:
    job = runner.run_job(runner.prepare(tool, {"size": rng.choice([8, 32, 96]), "steps": rng.randint(1, 6)}))
    if job.state is JobState.FINISHED:
        print("finished", job.run_id, len(job.result_ids), flush=True)
    else:
        print("job failed:", job.error, file=sys.stderr, flush=True)
        sys.exit(3)
'''


def probe_kills(n: int, work: Path, seed: int = 27) -> Probe:
    from app.jobs import open_session

    p = Probe("kill -9 during runs")
    folder = work / "kills"
    rng = random.Random(seed)
    finished: dict[int, int] = {}
    for i in range(n):
        child = subprocess.Popen([sys.executable, "-c", RUN_CHILD, str(folder), str(i)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        try:
            if child.stdout.readline() != b"ready\n":
                p.failures.append(f"child {i} did not start: {child.stderr.read()[-500:]!r}")
                continue
            time.sleep(rng.uniform(0.05, 0.8))
            if child.poll() is not None:
                p.failures.append(f"child {i} ended by itself: {child.stderr.read()[-500:]!r}")
                continue
            os.kill(child.pid, signal.SIGKILL)
            out, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        p.trials += 1
        for line in out.split(b"\n"):  # a half-written last line has no newline and is dropped
            if line.startswith(b"finished "):
                _, rid, count = line.split()
                finished[int(rid)] = int(count)
        store = open_session(folder)  # as the next start does: recovery of the dead child's run
        try:
            for rid, count in finished.items():
                run = store.get_run(rid)
                if run.status != "ok" or len(run.results) != count:
                    p.lost += 1
                    continue
                for res in run.results:
                    store.read_result(res.id)
            if store.list_runs(status="running"):
                p.failures.append(f"kill {i}: a run is still marked running")
            report = store.integrity_check(verify_hashes=True)
            if not report.ok:
                p.unusable += 1
                p.failures.append(f"kill {i}: {report.problems[0]}")
        finally:
            store.close()
        left = list((folder / "running").glob("*.lock")) if (folder / "running").is_dir() else []
        if left:
            p.failures.append(f"kill {i}: lock files of dead processes left: {[x.name for x in left]}")
    p.notes["runs finished before a kill"] = len(finished)
    return p


# ---------------------------------------------------------------------- kill -9 during creation
CREATE_CHILD = r'''
import sys
from storage import SessionStore
SessionStore.open(f"{sys.argv[1]}/warm-up").close()  # imports done: kills land in creations
print("ready", flush=True)
i = 0
while True:
    SessionStore.open(f"{sys.argv[1]}/s{i}").close()
    i += 1
'''


def probe_creation(n: int, work: Path, seed: int = 28) -> Probe:
    from storage import SessionStore, StorageError

    p = Probe("kill -9 during the first creation of a session")
    rng = random.Random(seed)
    folders = 0
    for k in range(n):
        base = work / "creation" / f"b{k}"
        child = subprocess.Popen([sys.executable, "-c", CREATE_CHILD, str(base)], stdout=subprocess.PIPE,
                                 env=_env())
        try:
            if child.stdout.readline() != b"ready\n":
                p.failures.append(f"child {k} did not start")
                continue
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        p.trials += 1
        for folder in sorted(base.iterdir()) if base.is_dir() else []:
            folders += 1
            try:
                with SessionStore.open(folder) as s:
                    s.record_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1)
                with SessionStore.open(folder, readonly=True) as s:
                    s.list_runs()
            except StorageError as exc:
                p.unusable += 1
                p.failures.append(f"{folder.name}: {exc}")
    p.notes["sessions left by the kills"] = folders
    return p


# ---------------------------------------------------------------------- random bit flips
def _build_session(folder: Path, runs: int) -> None:
    import io

    from PIL import Image

    from storage import SessionStore

    with SessionStore.open(folder) as s:
        prev: list[int] = []
        for i in range(runs):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (i % 256, 40, 90)).save(buf, format="PNG")
            rid = s.record_run(tool_id="text-to-image", plugin="text_to_image", plugin_version="0.1.0",
                               params={"prompt": f"a red circle number {i}", "steps": 10 + i % 7,
                                       "guidance": 5.0, "nested": {"k": [i, i + 1]}},
                               seed=i, inputs=prev[-1:],
                               results=[{"kind": "image", "data": buf.getvalue(), "ext": "png",
                                         "width": 8, "height": 8, "metadata": {"label": f"seed {i}"}}])
            prev = [s.get_run(rid).results[0].id]
            if i % 4 == 0:
                s.add_tag(rid, "keep")
                s.set_note(rid, f"note {i}")
        s.push_canvas_edit("mask", b"stroke 1")
        s.push_canvas_edit("mask", b"stroke 2")


def _list_all(store) -> tuple[int, int]:
    listed = damaged = 0
    offset = 0
    while batch := store.list_runs(limit=200, offset=offset):
        listed += len(batch)
        damaged += sum(r.damaged for r in batch)
        offset += 200
    return listed, damaged


def probe_flips(n: int, work: Path, runs: int = 60, seed: int = 29) -> Probe:
    from storage import SessionStore, StorageError
    from storage.maintenance import repair_session

    p = Probe("one random bit flipped in the session database")
    base = work / "flips" / "base"
    _build_session(base, runs)
    size = (base / "session.db").stat().st_size
    rng = random.Random(seed)
    counts = {"listed every run as is": 0, "damaged rows shown": 0, "refused with a message": 0,
              "repaired": 0, "runs recovered by repair": 0, "runs unreadable after repair (their page was hit)": 0}
    for k in range(n):
        copy = work / "flips" / f"f{k}"
        shutil.copytree(base, copy)
        db = copy / "session.db"
        data = bytearray(db.read_bytes())
        at = rng.randrange(size)
        data[at] ^= 1 << rng.randrange(8)
        db.write_bytes(bytes(data))
        p.trials += 1
        listed = 0
        try:
            with SessionStore.open(copy) as store:
                listed, damaged = _list_all(store)
                counts["damaged rows shown"] += damaged
                whole = listed == runs and not store.damage
        except StorageError:
            counts["refused with a message"] += 1
            whole = False
        except Exception as exc:  # noqa: BLE001 - anything else is a bug to report
            p.failures.append(f"flip {k} (byte {at}): {type(exc).__name__}: {exc}")
            whole = False
        if whole:
            counts["listed every run as is"] += 1
            continue
        try:  # the way out the messages point to
            repair_session(copy, work / "flips" / f"r{k}")
            with SessionStore.open(work / "flips" / f"r{k}") as fixed:
                recovered, _ = _list_all(fixed)
                fixed.record_run(tool_id="t", plugin="p", plugin_version="1", params={}, seed=1)
            counts["repaired"] += 1
            counts["runs recovered by repair"] += recovered
            # rows whose own bytes were hit: damaged data, not runs the studio lost (kept apart)
            counts["runs unreadable after repair (their page was hit)"] += max(0, runs - max(recovered, listed))
        except Exception as exc:  # noqa: BLE001
            p.unusable += 1
            p.failures.append(f"flip {k} (byte {at}): repair failed: {type(exc).__name__}: {exc}")
    p.notes.update(counts)
    return p


# ---------------------------------------------------------------------- misbehaving plugins
EVIL = {"exit_import": "studio_exit_import", "interrupt_import": "studio_interrupt_import",
        "exit_hook": "studio_exit_hook", "interrupt_hook": "studio_interrupt_hook",
        "evil": "studio_evil.plugin"}


def probe_plugins(work: Path) -> Probe:
    from app.testing import install_plugin_dist

    p = Probe("plugins that exit, interrupt or abort")
    site = work / "plugins" / "site"
    install_plugin_dist(site, "studio-evil", EVIL, version="6.6.6")
    env = _env(IMPLICIT_STUDIO_LOAD_PLUGINS=",".join(EVIL), IMPLICIT_STUDIO_CONFIG_DIR=str(work / "plugins" / "cfg"),
               IMPLICIT_STUDIO_DATA_DIR=str(work / "plugins" / "data"),
               IMPLICIT_STUDIO_LOG_DIR=str(work / "plugins" / "log"))
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(FIXTURES), env["PYTHONPATH"]])
    session = work / "plugins" / "session"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300)

    cases = [
        (("plugins",), 0, ["SystemExit(3)", "KeyboardInterrupt raised by the plugin's own code", "SystemExit(4)"]),
        (("run", "abort-tool", "--session", session), -signal.SIGABRT, []),
        (("run", "exit-tool", "--session", session), 1,  # this start also names the plugin that crashed
         ["crashed (Fatal Python error: Aborted) while tool 'abort-tool' of plugin 'evil'",
          "of plugin 'evil' failed: SystemExit(0)"]),
        (("run", "interrupt-tool", "--session", session), 1, ["of plugin 'evil' failed: KeyboardInterrupt"]),
        (("plugins", "disable", "evil"), 0, ["evil: disabled"]),
    ]
    for args, code, needles in cases:
        p.trials += 1
        out = cli(*args)
        text = out.stdout + out.stderr
        if out.returncode != code and not (code == -signal.SIGABRT and out.returncode == 134):
            p.failures.append(f"{' '.join(map(str, args[:2]))}: exit {out.returncode}, expected {code}")
        missing = [n for n in needles if n not in text]
        if missing:
            p.failures.append(f"{' '.join(map(str, args[:2]))}: the output does not say {missing}")
    from storage import SessionStore

    with SessionStore.open(session, readonly=True) as s:
        if s.list_runs(status="running"):
            p.failures.append("a run of a misbehaving plugin is still marked running")
    return p


# ---------------------------------------------------------------------- hangs
def _tiny_model(work: Path) -> Path:
    from plugins.diffusion_common.tiny import build_tiny_pipeline

    folder = work / "tiny-model"
    if not (folder / "model_index.json").is_file():
        build_tiny_pipeline(folder, seed=0)
    return folder


def probe_hangs(rounds: int, work: Path) -> Probe:
    from app.api import Cancelled
    from plugins.text_to_image import compute

    p = Probe("cancel and Ctrl-C inside one long step; memory bombs")
    model = _tiny_model(work)
    latencies = []
    for r in range(rounds):  # in-process cancel in the middle of a 2048x2048 step
        p.trials += 1
        cancel, messages, end = threading.Event(), [], {}

        def work_():
            try:
                compute.generate(compute.GenerationParams(prompt="a red circle", steps=1, width=2048, height=2048,
                                                          seed=r), str(model), record_trajectory=False,
                                 is_cancelled=cancel.is_set, on_progress=lambda i, n, m: messages.append(m))
            except Cancelled:
                end["at"] = time.monotonic()

        thread = threading.Thread(target=work_, daemon=True)
        thread.start()
        deadline = time.monotonic() + 300
        while not any("working" in m for m in messages) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0 + r)  # further into the step each round
        asked = time.monotonic()
        cancel.set()
        thread.join(60)
        if "at" not in end or end["at"] - asked > 1.0:
            p.hangs += 1
        else:
            latencies.append(end["at"] - asked)
    env = _env(IMPLICIT_STUDIO_NO_PLUGINS="1", IMPLICIT_STUDIO_CONFIG_DIR=str(work / "hangs" / "cfg"),
               IMPLICIT_STUDIO_LOG_DIR=str(work / "hangs" / "log"), IMPLICIT_STUDIO_DATA_DIR=str(work / "hangs" / "d"))
    ctrl_c = []
    for r in range(rounds):  # Ctrl-C on the command line
        p.trials += 1
        proc = subprocess.Popen([sys.executable, "-m", "app", "run", "text-to-image", "--model", str(model), "--width",
                                 "2048", "--height", "2048", "--steps", "1", "--session", str(work / "hangs" / "s"),
                                 "--device", "cpu"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                env=env)
        took = None
        try:
            for line in proc.stderr:
                if "working" in line:
                    break
            time.sleep(1.0 + r)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            for line in proc.stderr:
                if "was cancelled" in line:
                    took = time.monotonic() - t0
                    break
            proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if took is None or took > 1.0 or proc.returncode != 130:
            p.hangs += 1
        else:
            ctrl_c.append(took)
    p.trials += 1  # 8192x8192 under an 8 GB cap: refused before any step

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (8 * GiB, resource.getrlimit(resource.RLIMIT_AS)[1]))

    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "app", "run", "text-to-image", "--width", "8192", "--height", "8192",
                          "--steps", "1", "--no-session", "--device", "cpu"], capture_output=True, text=True, env=env,
                         preexec_fn=cap, timeout=600)
    refused = time.monotonic() - t0
    if out.returncode != 2 or "needs about" not in out.stderr:
        p.failures.append(f"8192x8192 under 8 GB: exit {out.returncode}: {out.stderr[-300:]}")
    if latencies:
        p.notes["cancel latency inside a step, worst (s)"] = max(latencies)
    if ctrl_c:
        p.notes["Ctrl-C to 'cancelled', worst (s)"] = max(ctrl_c)
    p.notes["8192x8192 under 8 GB refused after (s, incl. start-up)"] = refused
    return p


# ---------------------------------------------------------------------- main
PROBES = ("kills", "creation", "flips", "plugins", "hangs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--creations", type=int, default=100)
    ap.add_argument("--flips", type=int, default=200)
    ap.add_argument("--hang-rounds", type=int, default=3)
    ap.add_argument("--only", default=",".join(PROBES), help="comma-separated probes to run")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    work = args.keep or Path(tempfile.mkdtemp(prefix="implicit-studio-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results = []
    try:
        for name in only:
            started = time.monotonic()
            if name == "kills":
                probe = probe_kills(args.kills, work)
            elif name == "creation":
                probe = probe_creation(args.creations, work)
            elif name == "flips":
                probe = probe_flips(args.flips, work)
            elif name == "plugins":
                probe = probe_plugins(work)
            elif name == "hangs":
                probe = probe_hangs(args.hang_rounds, work)
            else:
                raise SystemExit(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
            probe.notes["seconds"] = time.monotonic() - started
            results.append(probe)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"Soak ({time.monotonic() - t0:.0f} s, {os.cpu_count()} CPUs)\n")
    print("| Probe | Trials | Runs lost | Sessions made unusable | Hangs | Other failures |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | {r.trials} | {r.lost} | {r.unusable} | {r.hangs} | {len(r.failures)} |")
    for r in results:
        details = ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in r.notes.items())
        print(f"\n{r.name}: {details}")
        for f in r.failures[:10]:
            print(f"  FAILURE: {f}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
