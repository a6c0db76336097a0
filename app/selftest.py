"""``implicit-studio --self-test``: a headless check that an installation (a source checkout or a
desktop bundle) is complete and works.

Steps, each printed as one line with its time:

1. ``resources``: the resources folder, the app icon and the bundled default model are present;
2. ``plugins``: every discovered plugin loads (built-in ones must be among them, and the
   ``text-to-image`` tool must be registered), and every lazy reference a plugin declares (tool
   run functions, viewer widgets, readers, writers, reward models, commands) imports; in a
   bundle this is what catches a module PyInstaller left out;
3. ``generate``: one image is generated with the bundled model through the job runner and
   recorded in a fresh session in a temporary folder;
4. ``session``: the session is closed, opened again read-only, and the run, its parameters and
   its image are read back and decoded.

Exit status 0 when every step passes, 1 when one fails (the failing step and the reason are
printed), 2 for bad command-line input. Nothing outside a temporary folder is written (the
settings, the cache and the session are private to the test) unless ``--keep DIR`` is given.

No Qt window is opened; Qt modules are imported only when a plugin's viewer widget is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO

PROG = "implicit-studio --self-test"

#: The tool the generation step runs, and its parameters (few steps: this is a smoke test).
TOOL_ID = "text-to-image"
PROMPT = "a small red circle in the top left on a blue background"
SEED = 1234


class SelfTestFailure(Exception):
    """One step failed; the message says why in a sentence."""


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class Report:
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": round(self.seconds, 3),
                "steps": [{"name": s.name, "ok": s.ok, "seconds": round(s.seconds, 3), "detail": s.detail}
                          for s in self.steps]}


# ---------------------------------------------------------------------------------------------
# the steps
# ---------------------------------------------------------------------------------------------


def check_resources() -> str:
    from app.paths import default_model_dir, resources_dir

    res = resources_dir()
    if not res.is_dir():
        raise SelfTestFailure(f"the resources folder {res} does not exist (set IMPLICIT_STUDIO_RESOURCES "
                              f"or reinstall the app)")
    icon = res / "icons" / "app.svg"
    if not icon.is_file():
        raise SelfTestFailure(f"the app icon {icon} is missing from the resources folder")
    model = default_model_dir()
    index = model / "model_index.json"
    if not index.is_file():
        raise SelfTestFailure(f"the bundled model is missing: {index} does not exist")
    try:
        json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SelfTestFailure(f"the bundled model's {index} cannot be read: {exc}") from None
    unet = list((model / "unet").glob("*.safetensors")) if (model / "unet").is_dir() else []
    if not unet:
        raise SelfTestFailure(f"the bundled model in {model} has no unet/*.safetensors weights")
    return f"resources at {res}; model at {model}"


def _lazy_refs(manager: Any) -> list[tuple[str, str, str]]:
    """Every ``module:attr`` reference the loaded plugins declare: (plugin, what, ref)."""
    refs: list[tuple[str, str, str]] = []
    for t in manager.tools.values():
        refs.append((t.plugin, f"run function of tool {t.id!r}", t.run))
    for v in manager.viewers:
        refs.append((v.plugin, f"widget of viewer {v.id!r}", v.widget))
    for r in manager.readers:
        refs.append((r.plugin, f"reader {r.id!r}", r.read))
    for w in manager.writers:
        refs.append((w.plugin, f"writer {w.id!r}", w.write))
    for rw in manager.rewards.values():
        refs.append((rw.plugin, f"reward model {rw.id!r}", rw.load))
    for c in manager.commands.values():
        refs.append((c.plugin, f"command {c.name!r}", c.main))
    return [(p, what, ref) for p, what, ref in refs if isinstance(ref, str) and ref]


def check_plugins(settings: Any) -> tuple[Any, str]:
    from app.plugins import PluginManager

    manager = PluginManager(settings).load()
    records = list(manager.records.values())
    if not records:
        raise SelfTestFailure("no plugins were found (is the implicit_studio.plugins entry-point metadata "
                              "missing from this installation?)")
    bad = [r for r in records if not r.ok]
    if bad:
        lines = "; ".join(f"{r.name} ({r.status}): {r.error}" for r in bad)
        raise SelfTestFailure(f"{len(bad)} plugin(s) did not load: {lines}")
    if not any(r.builtin for r in records):
        raise SelfTestFailure("no built-in plugins were found (the implicit-studio distribution metadata "
                              "is missing from this installation)")
    if TOOL_ID not in manager.tools:
        raise SelfTestFailure(f"the {TOOL_ID!r} tool is not registered; tools: {', '.join(sorted(manager.tools))}")
    failures = []
    refs = _lazy_refs(manager)
    for plugin, what, ref in refs:
        try:
            manager.resolve(ref, plugin, what)
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            failures.append(f"{plugin}: {what} ({ref}): {exc}")
    if failures:
        raise SelfTestFailure(f"{len(failures)} plugin module(s) cannot be imported: " + "; ".join(failures))
    names = ", ".join(sorted(r.name for r in records))
    return manager, f"{len(records)} plugins loaded ({names}); {len(manager.tools)} tools; {len(refs)} modules imported"


def generate(manager: Any, settings: Any, session_dir: Path, steps: int, device: str) -> tuple[int, str]:
    from app.jobs import JobRunner, JobState
    from storage import SessionStore

    store = SessionStore.open(session_dir, name="self-test")
    try:
        runner = JobRunner(manager, store, settings=settings, device=device)
        params = {"prompt": PROMPT, "seed": SEED, "steps": steps, "model": "default"}
        job = runner.prepare(TOOL_ID, params, device)
        runner.run_job(job)
        if job.state is not JobState.FINISHED:
            raise SelfTestFailure(f"generating an image with the bundled model failed ({job.state.value}): "
                                  f"{job.error or 'no error message'}")
        images = [r for r in job.results if r.kind == "image"]
        if not images:
            raise SelfTestFailure(f"the {TOOL_ID} run finished without an image result "
                                  f"(results: {[r.kind for r in job.results]})")
        if job.run_id is None:
            raise SelfTestFailure("the run was not recorded in the session")
        return int(job.run_id), (f"run {job.run_id}: {len(job.results)} result(s) in {job.elapsed_s:.2f} s "
                                 f"on {job.device}")
    finally:
        store.close()


def read_back(session_dir: Path, run_id: int, steps: int) -> str:
    import io

    import numpy as np
    from PIL import Image

    from storage import SessionStore

    store = SessionStore.open(session_dir, readonly=True)
    try:
        runs = store.list_runs()
        if [r.id for r in runs] != [run_id]:
            raise SelfTestFailure(f"the session should hold exactly run {run_id}; it holds {[r.id for r in runs]}")
        run = store.get_run(run_id)
        if run.tool_id != TOOL_ID or run.status != "ok":
            raise SelfTestFailure(f"run {run_id} reads back as tool {run.tool_id!r} with status {run.status!r}")
        if run.seed != SEED or run.params.get("steps") != steps or run.params.get("prompt") != PROMPT:
            raise SelfTestFailure(f"run {run_id}'s recorded parameters do not match what was run: "
                                  f"seed {run.seed}, params {run.params}")
        images = [r for r in run.results if r.kind == "image"]
        if not images:
            raise SelfTestFailure(f"run {run_id} has no image result in the session")
        res = images[0]
        data = store.read_result(res.id)
        if len(data) != res.size:
            raise SelfTestFailure(f"result {res.id} is {len(data)} bytes; the session says {res.size}")
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
        if res.width is not None and (res.width, res.height) != size:
            raise SelfTestFailure(f"the image is {size[0]}x{size[1]}; the session says {res.width}x{res.height}")
        if float(arr.std()) < 1.0:
            raise SelfTestFailure(f"the generated image is blank (one colour, {size[0]}x{size[1]})")
        return f"run {run_id} read back: {size[0]}x{size[1]} {res.ext} image, {len(data)} bytes"
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------


def run_self_test(*, steps: int = 4, device: str = "cpu", keep: Optional[Path] = None,
                  out: Optional[TextIO] = None) -> Report:
    """Run every step (stopping at the first failure) and return the :class:`Report`.
    Progress lines go to ``out`` (``None``: print nothing)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")

    def say(text: str) -> None:
        if out is not None:
            print(text, file=out, flush=True)

    report = Report()
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="implicit-studio-selftest-"))
    saved_env = {k: os.environ.get(k) for k in ("IMPLICIT_STUDIO_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.setdefault("IMPLICIT_STUDIO_CACHE_DIR", str(work / "cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from app.settings import Settings

        settings = Settings(work / "settings.json")  # private: the user's disabled plugins do not count
        session_dir = (keep / "session") if keep is not None else (work / "session")
        if keep is not None and session_dir.exists():
            raise ValueError(f"{session_dir} already exists; give --keep an empty or new folder")
        state: dict[str, Any] = {}

        def s_plugins() -> str:
            state["manager"], text = check_plugins(settings)
            return text

        def s_generate() -> str:
            state["run_id"], text = generate(state["manager"], settings, session_dir, steps, device)
            return text

        plan: list[tuple[str, Callable[[], str]]] = [
            ("resources", check_resources),
            ("plugins", s_plugins),
            ("generate", s_generate),
            ("session", lambda: read_back(session_dir, state["run_id"], steps)),
        ]
        for name, fn in plan:
            t0 = time.perf_counter()
            try:
                detail = fn()
                ok = True
            except SelfTestFailure as exc:
                detail, ok = str(exc), False
            except Exception as exc:  # noqa: BLE001 - any crash is a failed step, with its traceback
                detail, ok = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", False
            step = StepResult(name, ok, time.perf_counter() - t0, detail)
            report.steps.append(step)
            say(f"self-test: {name:9s} {'ok' if ok else 'FAILED'} ({step.seconds:.2f} s) {detail}")
            if not ok:
                break
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.perf_counter() - t_start
    say(f"self-test {'passed' if report.ok else 'FAILED'} in {report.seconds:.1f} s")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``implicit-studio --self-test [--steps N] [--device D] [--threads N] [--keep DIR] [--json]``."""
    parser = argparse.ArgumentParser(prog=PROG, description="Check that this installation works: load every "
                                     "plugin, generate one image with the bundled model, write and read a session.")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps of the test image (default 4)")
    parser.add_argument("--device", default="cpu", help="compute device (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--keep", metavar="DIR", help="keep the test session in DIR/session")
    parser.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--self-test"]
    try:
        opts = parser.parse_args(args)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else 2
    if opts.steps < 1:
        print(f"{PROG}: error: --steps must be at least 1", file=sys.stderr)
        return 2
    if opts.threads < 0:
        print(f"{PROG}: error: --threads must be 0 or more", file=sys.stderr)
        return 2
    if opts.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
        import torch

        torch.set_num_threads(opts.threads)
    keep = Path(opts.keep).expanduser() if opts.keep else None
    try:
        report = run_self_test(steps=opts.steps, device=opts.device, keep=keep, out=sys.stdout)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if opts.json:
        print(json.dumps(report.as_dict()))
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
