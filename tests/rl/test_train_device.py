"""RL training computes where the run says: the networks train on ctx.device in ctx.dtype (mixed
precision below float32), the agent comes back on the CPU, and CPU float32 training is bit for bit
what it was before training had a device."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from app import api
from plugins.rl import tools
from plugins.rl.train import TrainConfig, run_training

torch.set_num_threads(1)

MATMULS = ("mm", "addmm", "bmm", "matmul", "linear")


def small(algo: str, **kw) -> TrainConfig:
    """One short burst: learning starts at 60 env steps, three gradient steps every 60."""
    return TrainConfig(algo=algo, total_steps=240, learning_starts=60, train_freq=60, gradient_steps=3, batch_size=16,
                       target_update=60, eval_every=120, eval_episodes=2, hidden=[16, 16], seed=5, **kw)


def digest(result) -> tuple[str, str]:
    h = hashlib.sha256()
    sd = result.agent.net.state_dict()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    curve = {"r": result.episode_returns, "e": result.evals and [e["mean"] for e in result.evals]}
    return h.hexdigest()[:16], hashlib.sha256(json.dumps(curve, sort_keys=True).encode()).hexdigest()[:16]


#: Made by the code before training had a device (commit a0fd3b0), torch 2.13.0+cpu, AVX-512 CPU.
BEFORE_ENV = ("2.13.0+cpu", "AVX512")
BEFORE = {"c51": ("21eedaabd1c27201", "6e08a56c2c5d7b81"), "qr-dqn": ("de1254cafa3eef06", "6e08a56c2c5d7b81"),
          "iqn": ("0cd23a3b71e7b8f1", "6e08a56c2c5d7b81")}


@pytest.mark.parametrize("algo", ["c51", "qr-dqn", "iqn"])
def test_cpu_float32_training_is_bit_identical_to_before(algo):
    if (torch.__version__, torch.backends.cpu.get_cpu_capability()) != BEFORE_ENV:
        pytest.skip(f"the digests were recorded with torch {BEFORE_ENV[0]} on an {BEFORE_ENV[1]} CPU")
    assert digest(run_training(small(algo, device="cpu", dtype="float32"))) == BEFORE[algo]


@pytest.mark.parametrize("algo", ["c51", "qr-dqn", "iqn"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_training_runs_its_networks_in_the_dtype_asked_for(algo, dtype, torch_ops):
    with torch_ops() as ops:
        result = run_training(small(algo, device="cpu", dtype=dtype))
    assert getattr(torch, dtype) in ops.dtypes(*MATMULS) and ops.devices() == {"cpu"}
    params = list(result.agent.net.parameters())
    assert {p.dtype for p in params} == {torch.float32} and {p.device.type for p in params} == {"cpu"}
    assert all(np.isfinite(p.detach().numpy()).all() for p in params)
    assert digest(result)[0] != digest(run_training(small(algo)))[0]  # another arithmetic, other weights
    with pytest.raises(ValueError, match="dtype must be float32, float16 or bfloat16"):
        small(algo, dtype="float64").resolved()


def test_rl_train_takes_device_and_dtype_from_the_run(tmp_path, torch_ops):
    ctx = api.RunContext(device="cpu", dtype="bfloat16")
    with torch_ops() as ops:
        res = tools.run_train(ctx, algo="qr-dqn", env="CartPole-v1", steps=1100, seed=1,
                              save_to=str(tmp_path / "agent"), record_episodes=0, hidden=16)
    assert torch.bfloat16 in ops.dtypes(*MATMULS) and ops.devices() == {"cpu"}
    from safetensors import safe_open

    with safe_open(res[1].path, framework="pt") as f:  # saved as float32 weights
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
