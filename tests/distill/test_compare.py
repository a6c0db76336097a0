"""SiD against DMD2 is compared after equal compute time, not after equal iteration counts."""

from lab.distill.compare import at_time, compare


def _evals(step_seconds: float, n: int, shape0: float, gain: float) -> list[dict]:
    return [{"step": i * 10, "seconds": i * 10 * step_seconds, "cpu_seconds": i * 10 * step_seconds * 0.5,
             "colour": 1.0, "shape": shape0 + gain * i, "position": 0.98, "count": 0.97, "size": 0.99,
             "sharpness_ratio": 1.4} for i in range(n)]


def test_runs_are_read_at_the_same_time_each_at_its_last_evaluation_before_it():
    sid = _evals(6.0, 11, 0.80, 0.01)   # 100 iterations in 600 s
    dmd = _evals(10.0, 5, 0.80, 0.02)   # 40 iterations in 400 s: the shorter run sets the common time
    res = compare({"sid": sid, "dmd": dmd}, "seconds", points=2)
    assert res["common_time"] == 400.0
    last = [r for r in res["rows"] if r["time"] == 400.0]
    assert [(r["run"], r["step"]) for r in last] == [("sid", 60), ("dmd", 40)]
    half = [r for r in res["rows"] if r["time"] == 200.0]
    assert [(r["run"], r["step"]) for r in half] == [("sid", 30), ("dmd", 20)]
    assert "| 7 min | sid | 60 |" in res["text"] and "| 7 min | dmd | 40 |" in res["text"]
    assert at_time(sid, 59.0, "seconds")["step"] == 0
    assert compare({"sid": sid, "dmd": dmd}, "cpu_seconds", points=1)["common_time"] == 200.0
