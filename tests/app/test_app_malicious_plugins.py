"""Plugins that misbehave on purpose (the field test's adversary): ``sys.exit`` and
``KeyboardInterrupt`` at import, in a hook and in a run, and ``os.abort()`` in a run (a native
crash, in a child process). None of them may take the studio down silently, leave a run
"running", or go unnamed."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

def cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_exit_and_interrupt_at_import_and_in_hooks_fail_only_that_plugin(evil_manager):
    recs = evil_manager.records
    assert recs["exit_import"].status == "failed"
    assert "SystemExit(3)" in recs["exit_import"].error
    assert recs["interrupt_import"].status == "failed"
    assert "KeyboardInterrupt" in recs["interrupt_import"].error
    assert recs["exit_hook"].status == "failed"
    assert "studio_tools raised SystemExit(4)" in recs["exit_hook"].error
    assert recs["interrupt_hook"].status == "failed"
    assert "studio_readers raised KeyboardInterrupt" in recs["interrupt_hook"].error
    assert recs["evil"].ok and recs["toy"].ok and "exit-tool" in evil_manager.tools


def test_cli_commands_work_beside_a_plugin_that_exits_at_import(evil_env):
    p = cli(["plugins"], evil_env)
    assert p.returncode == 0, p.stderr
    assert "exit_import" in p.stdout and "SystemExit(3)" in p.stdout
    t = cli(["tools"], evil_env)
    assert t.returncode == 0 and "noise-image" in t.stdout, t.stderr
    d = cli(["plugins", "disable", "exit_import"], evil_env)
    assert d.returncode == 0 and "exit_import: disabled" in d.stdout, d.stderr


@pytest.mark.parametrize("tool,what", [("exit-tool", "SystemExit(0)"),
                                       ("interrupt-tool", "KeyboardInterrupt")])
def test_cli_run_that_exits_or_interrupts_is_a_failed_run(evil_env, tmp_path, tool, what):
    session = tmp_path / "s"
    p = cli(["run", tool, "--session", session], evil_env)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert f"of plugin 'evil' failed: {what}" in p.stderr
    from storage import SessionStore

    with SessionStore.open(session, readonly=True) as store:
        (run,) = store.list_runs()
        assert run.status == "failed" and what in run.error


def test_window_jobs_that_exit_or_interrupt_end_as_failed(evil_manager, tmp_path):
    """The window's path: jobs on worker threads. Each ends (no job "running" for ever) and the
    worker goes on with the next job."""
    from app.jobs import JobRunner, JobState, open_session

    store = open_session(tmp_path / "s")
    runner = JobRunner(evil_manager, store)
    try:
        jobs = [runner.submit(t) for t in ("exit-tool", "interrupt-tool")]
        after = runner.submit("noise-image", {"size": 8, "steps": 1})
        for job in (*jobs, after):
            assert job.wait(30), f"{job.tool.id} never ended"
        assert [j.state for j in jobs] == [JobState.FAILED, JobState.FAILED]
        assert "plugin 'evil'" in jobs[0].error and "SystemExit" in jobs[0].error
        assert after.state is JobState.FINISHED
        assert [r.status for r in store.list_runs()] == ["ok", "failed", "failed"]
    finally:
        runner.shutdown()
        store.close()


def test_param_error_raised_inside_a_tool_exits_2(evil_env, tmp_path):
    p = cli(["run", "param-error-tool", "--width", "9000", "--session", tmp_path / "s"], evil_env)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "--width: Width: 9000 needs more memory" in p.stderr


def test_a_native_crash_in_a_run_is_named_at_the_next_start(evil_env, tmp_path):
    session = tmp_path / "s"
    crash = cli(["run", "abort-tool", "--session", session], evil_env)
    assert crash.returncode in (-signal.SIGABRT, 134), (crash.returncode, crash.stderr)
    nxt = cli(["run", "noise-image", "--size", "8", "--steps", "1", "--session", session], evil_env)
    assert nxt.returncode == 0, nxt.stderr
    assert "crashed (Fatal Python error: Aborted) while tool 'abort-tool' of plugin 'evil'" in nxt.stderr
    assert "implicit-studio plugins disable evil" in nxt.stderr
    from storage import SessionStore

    with SessionStore.open(session, readonly=True) as store:
        crashed = store.list_runs(tool="abort-tool")[0]
        assert crashed.status == "failed" and "plugin 'evil'" in crashed.error
        assert "Fatal Python error" in crashed.error
    assert not list((session / "running").glob("*")), "lock and fatal-error files are cleaned up"


def test_the_window_query_names_the_crashed_plugin(evil_env, tmp_path):
    """What the window shows at start-up: app.jobs.interrupted_runs() after open_session()."""
    session = tmp_path / "s"
    crash = cli(["run", "abort-tool", "--session", session], evil_env)
    assert crash.returncode in (-signal.SIGABRT, 134)
    from app import crashguard
    from app.jobs import interrupted_runs, open_session

    store = open_session(session)
    try:
        (run,) = interrupted_runs(store)
        assert (run.tool_id, run.plugin) == ("abort-tool", "evil")
        assert run.fatal_error == "Fatal Python error: Aborted"
        assert crashguard.crashed([run]) == [run]
    finally:
        store.close()
