#!/usr/bin/env python
"""Session store benchmark (issue 9): prints a markdown table.

Builds a session of 10,000 runs and 20,000 results (small fake PNG bytes, real file writes through
the store), then measures, each beside the same operation done with raw ``sqlite3`` in the same run:

1. open the session and list the newest 100 history items   (floor: < 100 ms)
2. record one run with one 512x512 PNG result, PNG encoded beforehand, median of ~50
                                                             (floor: < 10 ms)
3. a prompt text search (FTS5), newest 100 matches           (floor: < 50 ms)

Usage: python benchmarks/bench_storage.py [--runs 10000] [--records 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import NewResult, SessionStore  # noqa: E402
from storage.filestore import fsync_dir  # noqa: E402
from storage.jsonutil import search_texts  # noqa: E402

WORDS = ("red blue green yellow purple orange black white circle square triangle star hexagon "
         "small large tiny huge bright dark shiny matte wooden metal glass stone paper cloud "
         "sky sea forest mountain river city street house tower bridge garden flower tree cat "
         "dog bird fish horse dragon robot castle ship train car lamp chair table window door "
         "night morning sunset winter summer autumn spring rain snow fog storm light shadow "
         "portrait landscape painting sketch photo watercolour oil charcoal pixel neon vintage").split()
RARE = "zeppelin"


def fake_png(i: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + i.to_bytes(8, "big") + os.urandom(200)


def prompt_for(rng: random.Random, i: int) -> str:
    words = rng.sample(WORDS, rng.randint(4, 10))
    if i % 500 == 0:
        words.append(RARE)
    return " ".join(words)


def build(folder: Path, n_runs: int) -> float:
    rng = random.Random(0)
    t0 = time.perf_counter()
    with SessionStore.open(folder, durable=False) as store:
        last_result = None
        for i in range(n_runs):
            inputs = [last_result] if last_result and rng.random() < 0.3 else []
            rid = store.record_run(
                tool_id=rng.choice(["text-to-image", "h-edit", "inpaint"]), plugin="bench",
                plugin_version="1.0", seed=i,
                params={"prompt": prompt_for(rng, i), "negative_prompt": "blurry",
                        "steps": rng.randint(10, 50), "guidance_scale": 7.5,
                        "width": 512, "height": 512},
                results=[NewResult("image", fake_png(2 * i), "png", 512, 512),
                         NewResult("mask", fake_png(2 * i + 1), "png", 512, 512)],
                inputs=inputs, model_ref="resources/models/default", model_hash="ab" * 32)
            if rng.random() < 0.5:
                last_result = rid * 2 - 1  # ids are sequential in a fresh session
            if i % 50 == 0:
                store.add_tag(rid, "favourite")
    return time.perf_counter() - t0


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


# ----------------------------------------------------------------------------- raw sqlite3


def raw_connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def raw_rows(conn, run_rows):
    ids = [r[0] for r in run_rows]
    marks = ",".join("?" * len(ids))
    results = conn.execute(f"SELECT * FROM results WHERE run_id IN ({marks}) "
                           "ORDER BY run_id, position", ids).fetchall()
    inputs = conn.execute(f"SELECT * FROM run_inputs WHERE run_id IN ({marks})", ids).fetchall()
    tags = conn.execute(f"SELECT * FROM run_tags WHERE run_id IN ({marks})", ids).fetchall()
    return [(r, json.loads(r[4])) for r in run_rows], results, inputs, tags


def raw_open_list(db: Path):
    conn = raw_connect(db)
    rows = conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 100").fetchall()
    out = raw_rows(conn, rows)
    conn.close()
    return out


def raw_search(conn, word: str):
    rows = conn.execute(
        "SELECT * FROM runs WHERE id IN (SELECT rowid FROM run_search WHERE run_search MATCH ?) "
        "ORDER BY id DESC LIMIT 100", (f'"{word}"*',)).fetchall()
    return raw_rows(conn, rows)


def raw_record(conn, folder: Path, png: bytes, i: int, sync: bool = True) -> int:
    import hashlib

    sha = hashlib.sha256(png).hexdigest()
    final = folder / "files" / sha[:2] / f"{sha}.png"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex}.png"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, png)
    if sync:
        os.fsync(fd)
    os.close(fd)
    os.replace(tmp, final)
    if sync:
        fsync_dir(final.parent)
    params = {"prompt": "raw record " + " ".join(WORDS[i % 50:(i % 50) + 5]), "steps": 20}
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    cur = conn.execute(
        "INSERT INTO runs(tool_id, plugin, plugin_version, params_json, seed, device, "
        "started_at, finished_at, duration_s, status) VALUES (?,?,?,?,?,?,?,?,?,?)",
        ("text-to-image", "bench", "1.0", json.dumps(params), i, "cpu", now, now, 0.0, "ok"))
    rid = cur.lastrowid
    conn.execute("INSERT INTO results(run_id, position, kind, sha256, ext, size, width, height, "
                 "created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                 (rid, 0, "image", sha, "png", len(png), 512, 512, now))
    p, q = search_texts(params)
    conn.execute("INSERT INTO run_search(rowid, prompt, params, note) VALUES (?,?,?,'')",
                 (rid, p, q))
    conn.execute("COMMIT")
    return rid


# ----------------------------------------------------------------------------- main


def encode_pngs(n: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    base = np.linspace(0, 255, 512, dtype=np.float32)
    for _ in range(n):  # smooth gradients + noise: a plausible generated image (a few 100 KB)
        img = (base[None, :, None] + base[:, None, None] * 0.5
               + rng.normal(0, 12, (512, 512, 3))) % 256
        buf = io.BytesIO()
        Image.fromarray(img.astype("uint8"), "RGB").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--records", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the built session in this folder")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    folder = args.keep or (work / "session")
    build_s = None
    if not (folder / "session.db").exists():
        build_s = build(folder, args.runs)
    with SessionStore.open(folder) as s:
        n_runs = s.count_runs()
    conn0 = sqlite3.connect(folder / "session.db")
    n_results = conn0.execute("SELECT count(*) FROM results").fetchone()[0]
    conn0.close()

    # 1. open + list newest 100
    ours, raw = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        store = SessionStore.open(folder)
        runs = store.list_runs(limit=100)
        ours.append(time.perf_counter() - t)
        store.close()
        assert len(runs) == min(100, n_runs)
        t = time.perf_counter()
        raw_open_list(folder / "session.db")
        raw.append(time.perf_counter() - t)
    rows = [("Open session + list newest 100", median_ms(ours), median_ms(raw), 100.0)]

    # 3. FTS search (before the record test adds rows)
    store = SessionStore.open(folder)
    conn = raw_connect(folder / "session.db")
    words = ["circle", "dragon", "neon", RARE, "sun", "watercolour castle"]
    ours, raw = [], []
    hits = {}
    for _ in range(max(1, args.repeats // 3)):
        for w in words:
            t = time.perf_counter()
            found = store.list_runs(limit=100, text=w)
            ours.append(time.perf_counter() - t)
            hits[w] = len(found)
            t = time.perf_counter()
            raw_search(conn, w.split()[0])
            raw.append(time.perf_counter() - t)
    search_row = ("Prompt text search (FTS5), newest 100 hits", median_ms(ours), median_ms(raw),
                  50.0)

    # 2. record one run with one 512x512 PNG (encoded beforehand)
    pngs = encode_pngs(args.records * 2)
    png_kb = statistics.mean(len(p) for p in pngs) / 1024
    ours, raw = [], []
    for i in range(args.records):
        data = pngs[2 * i]
        t = time.perf_counter()
        store.record_run(tool_id="text-to-image", plugin="bench", plugin_version="1.0",
                         params={"prompt": f"record {i} red circle", "steps": 20}, seed=i,
                         results=[NewResult("image", data, "png", 512, 512)])
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        raw_record(conn, folder, pngs[2 * i + 1], i)
        raw.append(time.perf_counter() - t)
    rows.append(("Record 1 run + 1 512x512 PNG (median of %d)" % args.records,
                 median_ms(ours), median_ms(raw), 10.0))
    store.close()
    conn.close()

    # 2b. the same without fsyncs (durable=False / synchronous=NORMAL): the store's own cost
    store = SessionStore.open(folder, durable=False)
    conn = raw_connect(folder / "session.db")
    conn.execute("PRAGMA synchronous=NORMAL")
    pngs = pngs[::-1]
    ours, raw = [], []
    for i in range(args.records):
        t = time.perf_counter()
        store.record_run(tool_id="text-to-image", plugin="bench", plugin_version="1.0",
                         params={"prompt": f"nosync {i} red circle", "steps": 20}, seed=i,
                         results=[NewResult("image", pngs[2 * i] + b"n", "png", 512, 512)])
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        raw_record(conn, folder, pngs[2 * i + 1] + b"n", i, sync=False)
        raw.append(time.perf_counter() - t)
    rows.append(("Same, without fsync (durable=False; informative)", median_ms(ours),
                 median_ms(raw), None))
    rows.append(search_row)
    conn.close()
    store.close()

    print(f"## Session store benchmark ({dt.date.today().isoformat()})\n")
    print(f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}\n")
    print(f"Session: {n_runs} runs, {n_results} results"
          + (f" (built in {build_s:.1f} s)" if build_s else "")
          + f"; PNG for the record test {png_kb:.0f} KiB on average; search hits "
          + ", ".join(f"{w!r}: {n}" for w, n in hits.items()) + "\n")
    print("| Operation | Implicit Studio (ms) | raw sqlite3 (ms) | ratio | floor (ms) | within floor |")
    print("|---|---:|---:|---:|---:|:---:|")
    ok = True
    for name, a, b, floor in rows:
        if floor is None:
            print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f}x | - | - |")
            continue
        good = a < floor
        ok &= good
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {floor:.0f} | {'yes' if good else 'NO'} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
