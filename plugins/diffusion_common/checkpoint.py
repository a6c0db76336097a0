"""Resumable training checkpoints: safetensors tensors plus a JSON meta, written atomically.

Used by the default-model trainer (``lab.default_model.train``) and the distillation
tool (``plugins.distill``). A checkpoint ``NAME`` is ``NAME.safetensors`` (every tensor: weights,
optimiser state, random-generator states) and ``NAME.json`` (the meta: step, losses, seconds...).
Nothing is ever unpickled.

The meta also travels inside the safetensors header, so tensors and meta always belong to the same
step: a process ended between the two writes leaves a new tensor file beside an older JSON, and
:func:`load_state` then takes the header's copy. The JSON beside it is for people and older readers.

Also here: the compute-time account of a run that several processes continue one after another
(:class:`ComputeClock`) and the thread-count adaptation to a shared CPU (:func:`adapt_threads`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path


def save_state(path: Path, tensors: dict, meta: dict) -> None:
    """Write ``tensors`` (safetensors) and ``meta`` (JSON) atomically at ``path`` (no suffix)."""
    from safetensors.torch import save_file

    path = Path(path)
    text = json.dumps(meta)
    tmp = path.with_suffix(".tmp.safetensors")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata={"meta": text})
    os.replace(tmp, path.with_suffix(".safetensors"))
    mtmp = path.with_suffix(".tmp.json")
    mtmp.write_text(text)
    os.replace(mtmp, path.with_suffix(".json"))


def load_state(path: Path):
    """(tensors, meta) of a checkpoint, or (None, None) where there is none.

    The meta is the one written with the tensors (their header's); a checkpoint from before the header
    held it falls back to the JSON beside it.
    """
    from safetensors import safe_open

    path = Path(path)
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not st.exists():
        return None, None
    with safe_open(str(st), framework="pt") as f:  # one read: the header and the tensors
        header = (f.metadata() or {}).get("meta")
        if header is None and not js.exists():
            return None, None
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, json.loads(header if header is not None else js.read_text())


def pack(prefix: str, module) -> dict:
    """A module's state dict under ``prefix.``."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def pack_optimizer(prefix: str, opt) -> dict:
    """A torch optimiser's per-parameter state (moments, step counts) as tensors under ``prefix.``."""
    import torch

    out = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def unpack(tensors: dict, prefix: str) -> dict:
    """The tensors stored under ``prefix.``, with the prefix taken off."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def restore_optimizer(opt, tensors: dict, prefix: str) -> None:
    """Put back an optimiser state written by :func:`pack_optimizer` (its hyper-parameters are the
    optimiser's own, as constructed)."""
    sd = opt.state_dict()
    state: dict = {}
    for k, v in unpack(tensors, prefix).items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def pack_rng(prefix: str, generator) -> dict:
    """A torch.Generator's state as a tensor (so a resumed run draws the same numbers)."""
    return {f"{prefix}.state": generator.get_state()}


def restore_rng(generator, tensors: dict, prefix: str) -> bool:
    """Put back a generator state written by :func:`pack_rng`; False where the checkpoint has none."""
    state = tensors.get(f"{prefix}.state")
    if state is None:
        return False
    generator.set_state(state)
    return True


class ComputeClock:
    """Seconds spent on a run's kept steps, summed over the processes that ran them.

    ``wall`` counts elapsed time (what a person waits for); ``cpu`` counts this process's CPU time,
    which on a CPU shared with other work says how much computing the run itself took. A process
    that is stopped loses only the steps since its last checkpoint, and their time is not counted:
    :meth:`totals` is read when a checkpoint is written.
    """

    def __init__(self, meta: dict | None = None):
        meta = meta or {}
        self.wall_before = float(meta.get("seconds", 0.0))
        self.cpu_before = float(meta.get("cpu_seconds", 0.0))
        self.t0, self.c0 = time.time(), time.process_time()

    @contextlib.contextmanager
    def excluded(self):
        """Time spent inside (an evaluation between iterations, say) is not the run's."""
        t, c = time.time(), time.process_time()
        try:
            yield
        finally:
            self.t0 += time.time() - t
            self.c0 += time.process_time() - c

    def totals(self) -> dict:
        return {"seconds": self.wall_before + time.time() - self.t0,
                "cpu_seconds": self.cpu_before + time.process_time() - self.c0}


_OWN_CPU: dict = {}  # adapt_threads' last reading of this process's CPU time


def adapt_threads(max_threads: int) -> None:
    """Use fewer intra-op threads while other processes load the machine.

    OpenMP threads that wait for a busy core at every barrier make a step many times slower than
    one thread that has a core to itself, so the thread count follows the load average less this
    process's own share of it. That share is measured (CPU seconds over wall seconds since the last
    call), not taken as the thread count: a process set to one thread keeps about 1.3 cores busy
    here, and counting the extra 0.3 as somebody else's load held training at one thread for good.
    """
    import torch

    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    cores = os.cpu_count() or 1
    current = torch.get_num_threads()
    cpu, wall = time.process_time(), time.monotonic()
    own = float(current)
    if _OWN_CPU and wall - _OWN_CPU["wall"] >= 1.0:
        own = max(own, (cpu - _OWN_CPU["cpu"]) / (wall - _OWN_CPU["wall"]))
    _OWN_CPU.update(cpu=cpu, wall=wall)
    others = max(0.0, load - own)
    want = max(1, min(max_threads, int(cores - others + 0.3)))
    if want != current:
        torch.set_num_threads(want)
