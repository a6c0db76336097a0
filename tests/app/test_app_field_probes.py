"""The field test of issue 27 in a fast form: kill -9 twenty times during runs and during the
first creation of a session, and twenty random bit flips of a session database. The probes are
those of the soak (benchmarks/bench_soak.py, which runs them longer); the misbehaving plugins are
in test_app_malicious_plugins.py and the long-step cancel and memory bombs in
tests/text_to_image/test_resources.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def soak():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_soak.py"
    spec = importlib.util.spec_from_file_location("bench_soak", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_soak"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_soak", None)


def _clean(probe) -> None:
    assert (probe.lost, probe.unusable, probe.hangs) == (0, 0, 0), probe
    assert not probe.failures, probe.failures


def test_kill_9_twenty_times_during_runs(soak, tmp_path):
    probe = soak.probe_kills(20, tmp_path)
    _clean(probe)
    assert probe.trials == 20 and probe.notes["runs finished before a kill"] >= 20


def test_kill_9_twenty_times_during_first_creation(soak, tmp_path):
    probe = soak.probe_creation(20, tmp_path)
    _clean(probe)
    assert probe.trials == 20 and probe.notes["sessions left by the kills"] >= 20


def test_twenty_random_bit_flips(soak, tmp_path):
    probe = soak.probe_flips(20, tmp_path, runs=40)
    _clean(probe)
    assert probe.trials == 20


def test_the_soak_command_prints_its_table(soak, capsys, tmp_path):
    assert soak.main(["--only", "flips", "--flips", "2", "--keep", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "| one random bit flipped in the session database | 2 | 0 | 0 | 0 | 0 |" in out
