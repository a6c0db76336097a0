"""Agent files from others (issue 27): the "weights" field stays in the agent's folder, a config
asking for a huge network is refused before anything is allocated, NaN/Inf weights and outputs
are refused naming the file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from plugins.rl.agents import Agent, AgentConfig
from plugins.rl.loaders import load_agent

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def saved(tmp_path):
    agent = Agent(AgentConfig(algo="c51", env_id="CartPole-v1", obs_dim=4, n_actions=2, hidden=[16, 16],
                              n_atoms=11, v_min=0, v_max=10))
    return agent.save(tmp_path / "agent", "c51")


def _rewrite(json_path: Path, **changes) -> None:
    meta = json.loads(json_path.read_text())
    for k, v in changes.items():
        if k == "hidden":
            meta["config"]["hidden"] = v
        else:
            meta[k] = v
    json_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "sub/../../x.safetensors"])
def test_the_weights_field_cannot_leave_the_agent_folder(saved, name):
    _rewrite(saved, weights=name)
    with pytest.raises(ValueError, match='"weights" field'):
        load_agent(saved)


def test_a_config_asking_for_a_huge_network_is_refused_before_allocating(saved):
    """hidden [200000, 200000] would be 160 GB of weights: refused from the file's tensor shapes,
    in a process capped at 3 GB so that an attempt to build it could not pass unnoticed."""
    _rewrite(saved, hidden=[200000, 200000])
    code = ("import resource, sys; hard = resource.getrlimit(resource.RLIMIT_AS)[1];"
            "resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, hard));"
            "from plugins.rl.loaders import load_agent\n"
            "try:\n    load_agent(sys.argv[1])\nexcept ValueError as e:\n    print('refused:', e)")
    p = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.stdout.startswith("refused:"), (p.returncode, p.stdout, p.stderr[-1500:])
    assert "do not match the config" in p.stdout and "describes 40,005,600,033 weights" in p.stdout


def test_nan_weights_are_refused_naming_the_file(saved):
    from safetensors import safe_open

    weights = saved.with_suffix(".safetensors")
    with safe_open(str(weights), framework="pt") as f:
        header = f.metadata()  # the config travels in the header too
    sd = load_file(str(weights))
    key = next(k for k in sd if k.endswith("weight"))
    sd[key][0, 0] = float("nan")
    save_file(sd, str(weights), metadata=header)
    with pytest.raises(ValueError, match=rf"c51\.safetensors: tensor '{key}' holds 1 NaN or infinite"):
        load_agent(saved)
    with pytest.raises(ValueError, match="NaN or infinite"):  # the weights file alone too
        load_agent(weights.rename(weights.with_name("alone.safetensors")))


def test_an_agent_whose_output_overflows_is_not_recorded_as_zeros(saved):
    agent = load_agent(saved)
    with torch.no_grad():
        for p in agent.net.parameters():
            p.fill_(1e30)
    with pytest.raises(ValueError, match="produced NaN or infinite values"):
        agent.distribution(np.ones((2, 4), np.float32))
