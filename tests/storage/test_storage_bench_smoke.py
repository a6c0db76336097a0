"""The storage benchmark script runs end to end on a tiny session (figures not checked here)."""

import importlib.util
from pathlib import Path


def test_bench_storage_runs_on_a_small_session(capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_storage.py"
    spec = importlib.util.spec_from_file_location("bench_storage", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    code = bench.main(["--runs", "40", "--records", "3", "--repeats", "2"])
    out = capsys.readouterr().out
    assert code in (0, 1)
    assert "Session: 40 runs, 80 results" in out
    table = [ln for ln in out.splitlines() if ln.startswith("| ")]
    assert len(table) == 5  # header + 4 operations
    assert "Open session + list newest 100" in out and "Prompt text search" in out
