"""The Ray engine on a real two-node Ray cluster on loopback: a plan runs across both nodes; the
second node is killed mid-batch (every process of it, SIGKILL); its item in flight is sent again
and every item is recorded exactly once. The cluster is stopped afterwards whatever happens."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("ray", reason="the ray engine's tests need Ray: pip install -e \".[ray]\"")

from storage import SessionStore, batches  # noqa: E402

pytestmark = pytest.mark.timeout(240)

PYTHON = sys.executable
RAY = str(Path(sys.executable).with_name("ray"))
#: node failure is noticed in about 3 s instead of Ray's default of about 30 s
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
               "RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_timeout_ms": "1000"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid: int):
    """(state, ppid, pgid) of a process, None when it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f[0], int(f[1]), int(f[2])
    except (OSError, ValueError, IndexError):
        return None


def _tree(root: int) -> set[int]:
    """``root``'s process group and every descendant (Ray starts its workers in groups of their own)."""
    stats = {int(d.name): _stat(int(d.name)) for d in Path("/proc").iterdir() if d.name.isdigit()}
    stats = {p: st for p, st in stats.items() if st is not None and st[0] != "Z"}
    found = {p for p, st in stats.items() if st[2] == root or p == root}
    while True:
        more = {p for p, st in stats.items() if st[1] in found and p not in found}
        if not more:
            return found
        found |= more


def _kill_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if (st := _stat(p)) is not None and st[0] != "Z"}


def _stop_node(proc: subprocess.Popen, known: set[int]) -> set[int]:
    """Stop a `ray start --block` and every process it started; returns those still alive (none)."""
    pids = _tree(proc.pid) | known
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        _kill_all(_alive(pids), sig)
        deadline = time.monotonic() + wait
        while _alive(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive(pids):
            break
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    return _alive(pids)


@pytest.fixture
def ray_cluster(cli_env: dict, tmp_path: Path):
    """A Ray head and a second node on 127.0.0.1, one CPU each (so two one-CPU actors land one on
    each node), started with the toy plugins on their path."""
    port = _free_port()
    # a cluster on loopback for this test only: no token (Ray 2.5x turns token auth on by default)
    env = {**cli_env, **FAST_HEALTH, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats", "--block"]
    head = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--include-dashboard=false", *common],
                            env=env, stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    procs = [head]
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while True:  # the GCS answers: the second node can join
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.3)
        node2 = subprocess.Popen([RAY, "start", "--address", f"127.0.0.1:{port}", *common], env=env,
                                 stdout=open(tmp_path / "node2.log", "w"), stderr=subprocess.STDOUT,
                                 start_new_session=True)
        procs.append(node2)
        yield SimpleNamespace(address=f"127.0.0.1:{port}", head=head, node2=node2, env=env, seen=seen)
    finally:
        left: set[int] = set()
        for p in reversed(procs):
            left |= _stop_node(p, seen)
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # what `ray stop` would remove
        try:
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()
        except OSError:
            pass
        assert not left, f"Ray processes were left running: {sorted(left)}"


def test_a_plan_runs_across_two_nodes_and_survives_losing_one(tmp_path: Path, ray_cluster):
    cluster = ray_cluster
    address, node2, env = cluster.address, cluster.node2, cluster.env
    plan = tmp_path / "plan.toml"
    plan.write_text('tool = "noise-image"\n[params]\nsize = 8\nsteps = 2\nstep_delay = 0.4\n'
                    '[sweep]\nseed = { seeds = 12 }\n', encoding="utf-8")
    session = tmp_path / "session"
    driver = subprocess.Popen([PYTHON, "-m", "app", "batch", str(plan), "--engine", "ray", "--ray-address", address,
                               "--workers", "2", "--session", str(session), "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node2_workers: set[str] = set()
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert driver.poll() is None, driver.communicate()
            done = []
            if (session / "session.db").exists():
                try:
                    with SessionStore.open(session, readonly=True) as s:
                        found = batches.list_batches(s)
                        done = batches.batch_items(s, found[0].id) if found else []
                except Exception:  # noqa: BLE001 - the session is being created
                    done = []
            on_node2 = _tree(node2.pid)
            for it in done:
                if int((it.worker or ":0").rsplit(":", 1)[1]) in on_node2:
                    node2_workers.add(it.worker)
            if node2_workers and len(done) >= 2:
                break
            time.sleep(0.2)
        assert node2_workers, "no item ran on the second node"
        assert len(done) <= 9, "the batch was nearly over before the second node could be killed"
        doomed = _tree(node2.pid)
        cluster.seen.update(doomed)
        _kill_all(doomed, signal.SIGKILL)  # the node is lost (every process of it), with the item it was running
        out, err = driver.communicate(timeout=150)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
    assert driver.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ok"] == 12 and summary["failed"] == 0 and summary["status"] == "done"
    with SessionStore.open(session, readonly=True) as s:
        items = batches.batch_items(s, summary["batch_id"])
        runs = [r for r in s.list_runs(limit=100) if r.tool_id == "noise-image"]
        assert len(items) == 12 and len({i.key for i in items}) == 12
        assert sorted(r.id for r in runs) == sorted(i.run_id for i in items)  # recorded once each
        assert max(i.attempts for i in items) == 2  # the item in flight on the lost node, sent again
        workers = {i.worker for i in items}
        assert node2_workers <= workers and len(workers - node2_workers) >= 1  # both nodes did work
