"""Child process for the kill -9 test: records runs forever, printing each id after its commit.

Usage: python crash_child.py SESSION_FOLDER SEED
Prints "ready" once the store is open, then lines "committed RUN_ID" and "canvas KEY POSITION".
"""

import random
import sys

from storage import NewResult, SessionStore


def main() -> None:
    folder, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    store = SessionStore.open(folder)
    print("ready", flush=True)
    last_results: list[int] = []
    n = 0
    while True:
        n += 1
        results = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.2:
                data = b"identical output"  # de-duplicated file
            else:
                data = rng.randbytes(rng.randint(64, 200_000))
            results.append(NewResult("image", data, rng.choice(["png", "npy"]), 8, 8))
        inputs = [rng.choice(last_results)] if last_results and rng.random() < 0.5 else []
        params = {"prompt": f"child {seed} run {n} ✓", "steps": rng.randint(1, 50),
                  "nested": {"x": rng.random(), "big": 2**70 + n}}
        mode = rng.random()
        if mode < 0.6:
            rid = store.record_run(tool_id="text-to-image", plugin="p", plugin_version="1",
                                   params=params, seed=n, results=results, inputs=inputs)
        else:
            rid = store.begin_run(tool_id="h-edit", plugin="p", plugin_version="1",
                                  params=params, seed=n, inputs=inputs)
            for r in results:
                store.add_result(rid, r.kind, r.data, r.ext, width=r.width, height=r.height)
            store.finish_run(rid, "ok")
        print(f"committed {rid}", flush=True)
        last_results = [r.id for r in store.get_run(rid).results] or last_results
        if rng.random() < 0.3:
            key = f"canvas-{rng.randint(0, 2)}"
            if rng.random() < 0.7:
                pos = store.push_canvas_edit(key, rng.randbytes(rng.randint(1, 5000)))
            else:
                store.undo(key)
                pos = store.canvas_history(key).position
            print(f"canvas {key} {pos}", flush=True)


if __name__ == "__main__":
    main()
