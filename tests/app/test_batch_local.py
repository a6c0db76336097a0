"""The local batch engine with real worker processes and a real session: every item recorded
once, a driver killed with kill -9 mid-batch resumed without losing or duplicating an item, a
killed worker's item retried, a failing item recorded with its error while the batch goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.batch.driver import BatchDriver
from app.batch.plan import build_plan
from storage import SessionStore, batches

PYTHON = sys.executable

pytestmark = pytest.mark.timeout(300)


def _plan_file(tmp_path: Path, n_seeds: int, delay: float, tool: str = "noise-image", extra: str = "") -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(f'tool = "{tool}"\n[params]\nsize = 8\nsteps = 2\nstep_delay = {delay}\n{extra}'
                    f'[sweep]\nseed = {{ seeds = {n_seeds}, start = 10 }}\npalette = ["gray", "color"]\n',
                    encoding="utf-8")
    return path


def _cli(env: dict, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "app", "batch", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _check_recorded_once(session: Path, batch_id: int, total: int) -> list:
    with SessionStore.open(session, readonly=True) as s:
        info = batches.get_batch(s, batch_id)
        items = batches.batch_items(s, batch_id)
        runs = s.list_runs(limit=1000, tool="noise-image")
        assert info.total == total and info.ok == total and info.state == "done"
        assert len(items) == total and len({i.key for i in items}) == total
        ok_runs = [r for r in runs if r.status == "ok"]
        # one run per item: nothing lost, nothing written twice
        assert sorted(r.id for r in ok_runs) == sorted(i.run_id for i in items)
        for it in items:
            run = s.get_run(it.run_id)
            assert run.seed == int(it.key.split(",")[0].split("=")[1])
            assert run.params["palette"] == it.key.split("palette=")[1]
            assert len(run.results) >= 1 and run.results[0].kind == "image"
        return items


def test_sweep_records_every_item_and_resumes_after_kill_9(tmp_path: Path, cli_env: dict):
    session = tmp_path / "session"
    plan = _plan_file(tmp_path, n_seeds=8, delay=0.15)  # 16 items of about 0.3 s on 2 workers
    driver = subprocess.Popen([PYTHON, "-m", "app", "batch", str(plan), "--workers", "2", "--session", str(session)],
                              env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        recorded = 0
        while time.monotonic() < deadline:
            workers = workers or [p for p in _children(driver.pid)]
            if (session / "session.db").exists():
                try:
                    with SessionStore.open(session, readonly=True) as s:
                        found = batches.list_batches(s)
                        recorded = found[0].ok if found else 0
                except Exception:  # noqa: BLE001 - the session is being created
                    recorded = 0
            if recorded >= 4:
                break
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.1)
        assert recorded >= 4
        workers = [p for p in _children(driver.pid)] or workers
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    assert workers, "the driver had no worker processes"
    # the workers notice their driver is gone and stop: nothing is left running
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)
    with SessionStore.open(session, readonly=True) as s:
        (info,) = batches.list_batches(s)
        before = {i.key: i.run_id for i in batches.batch_items(s, info.id)}
        assert info.state == "stopped" and 4 <= len(before) < 16
    status = _cli(cli_env, "status", str(info.id), "--session", str(session), "--json")
    assert json.loads(status.stdout)[0]["state"] == "stopped"

    r = _cli(cli_env, "resume", str(info.id), "--session", str(session))
    assert r.returncode == 0, r.stderr
    assert f"{len(before)} item(s) already recorded, {16 - len(before)} to do" in r.stderr
    items = _check_recorded_once(session, info.id, 16)
    assert {i.key: i.run_id for i in items if i.key in before} == before  # the first ones kept, not redone
    again = _cli(cli_env, "resume", str(info.id), "--session", str(session))  # nothing left: nothing written
    assert again.returncode == 0 and "16 item(s) already recorded, 0 to do" in again.stderr
    _check_recorded_once(session, info.id, 16)

    out = tmp_path / "items.csv"
    grid = tmp_path / "grid.png"
    r = _cli(cli_env, "export", str(info.id), "--session", str(session), "--csv", str(out), "--grid", str(grid))
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 17 and "metric:mean" in lines[0] and lines[1].startswith("\"seed=10,palette=gray\",10,gray,ok")
    from PIL import Image

    assert Image.open(grid).size[0] > 8 * 100  # 8 seeds across


def test_a_killed_worker_loses_only_its_item_which_is_retried(tmp_path: Path, toy_process_env, manager):
    plan = build_plan({"tool": "noise-image", "params": {"size": 8, "steps": 4, "step_delay": 0.1},
                       "sweep": {"seed": {"seeds": 6}}})
    killed: list[str] = []
    events = []

    def on_event(ev):
        events.append(ev)
        engine = driver.engine
        # the third item sent: its worker has just got it (0.4 s of work) when it is killed
        if ev.kind == "sent" and not killed and sum(e.kind == "sent" for e in events) == 3:
            engine.kill_worker(ev.data["slot"])
            killed.append(ev.data["key"])

    with SessionStore.open(tmp_path / "s") as store:
        driver = BatchDriver(store, manager.tool, workers=2, listener=on_event)
        bid = driver.create(plan)
        summary = driver.run(bid)
        assert killed, "no worker was busy to kill"
        assert summary.status == "done" and summary.ok == 6 and summary.failed == 0
        items = batches.batch_items(store, bid)
        assert len(items) == 6 and {i.key: i.attempts for i in items if i.attempts > 1} == {killed[0]: 2}
        assert len([r for r in store.list_runs(limit=100) if r.tool_id == "noise-image"]) == 6
    assert any(e.kind == "retry" for e in events)
    assert any(e.kind == "worker" and e.data["state"] == "lost" for e in events)


def test_failing_items_are_recorded_with_their_error_and_the_batch_goes_on(tmp_path: Path, cli_env: dict):
    plan = tmp_path / "fail.toml"
    plan.write_text('tool = "fail-tool"\n[sweep]\nafter_steps = [0, 1, 2]\n', encoding="utf-8")
    session = tmp_path / "s"
    r = _cli(cli_env, str(plan), "--session", str(session), "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "done" and out["failed"] == 3 and out["ok"] == 0
    with SessionStore.open(session, readonly=True) as s:
        items = batches.batch_items(s, out["batch_id"])
        assert [i.status for i in items] == ["failed"] * 3
        assert all("toy failure on purpose" in (i.error or "") for i in items)
        assert all(s.get_run(i.run_id).status == "failed" for i in items)


def test_bad_input_exits_2_and_ray_is_named_when_missing(tmp_path: Path, cli_env: dict):
    plan = _plan_file(tmp_path, 2, 0.0)
    r = _cli(cli_env, str(plan), "--workers", "0", "--session", str(tmp_path / "s"))
    assert r.returncode == 2 and "--workers: at least 1" in r.stderr
    r = _cli(cli_env, "status", "99", "--session", str(tmp_path / "s"))
    assert r.returncode == 2 and "no batch 99" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('tool = "noise-image"\n[sweep]\nsize = [8, 100000]\n', encoding="utf-8")
    r = _cli(cli_env, str(bad), "--session", str(tmp_path / "s"))
    assert r.returncode == 2 and "item size=100000" in r.stderr
    env = dict(cli_env)
    hide = tmp_path / "noray"
    (hide / "ray").mkdir(parents=True)
    (hide / "ray" / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    env["PYTHONPATH"] = str(hide) + os.pathsep + env["PYTHONPATH"]
    r = _cli(env, str(plan), "--engine", "ray", "--session", str(tmp_path / "s"))
    assert r.returncode == 2 and 'pip install -e ".[ray]"' in r.stderr, r.stderr


def test_cancel_from_another_process_stops_after_the_items_in_flight(tmp_path: Path, cli_env: dict):
    session = tmp_path / "session"
    plan = _plan_file(tmp_path, n_seeds=20, delay=0.1)
    driver = subprocess.Popen([PYTHON, "-m", "app", "batch", str(plan), "--session", str(session)],
                              env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (session / "session.db").exists():
                try:
                    with SessionStore.open(session, readonly=True) as s:
                        found = batches.list_batches(s)
                        if found and found[0].ok >= 2:
                            break
                except Exception:  # noqa: BLE001 - being created
                    pass
            time.sleep(0.1)
        r = _cli(cli_env, "cancel", "1", "--session", str(session))
        assert r.returncode == 0 and "cancelling" in r.stdout
        out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    assert driver.returncode == 1
    with SessionStore.open(session, readonly=True) as s:
        info = batches.get_batch(s, 1)
        assert info.state == "cancelled" and 2 <= info.ok < 40
    assert "cancelled" in out
