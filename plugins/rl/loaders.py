"""Agent files in every format, loaded without unpickling anything: :func:`load_agent` opens ours
(:func:`plugins.rl.agents.load_native`) and those saved by other libraries:

* cleanrl ``.cleanrl_model`` (C51): ``torch.save({"model_weights": state_dict, "args": vars(args)})``,
  read with ``torch.load(weights_only=True)``. The network is ``network.{0,2,4}`` Linear layers with
  ReLU between; logits are viewed as (batch, actions, atoms) -- already our order.
* sb3-contrib QR-DQN ``.zip``: ``policy.pth`` (a state_dict, read with ``weights_only=True``) and the
  JSON parts of ``data``. The ``:serialized:`` cloudpickle fields of ``data`` are never decoded; the
  plain JSON attributes sb3 writes beside them (``n``, ``_shape``, ``gamma``, ``policy_kwargs``
  entries) are enough. sb3 views the output as (batch, n_quantiles, n_actions); the final layer's
  rows are permuted here so the network outputs (batch, actions, quantiles) like ours.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from .agents import Agent, AgentConfig, load_native

# observation size, number of actions -> the classic-control task with that signature
KNOWN_SIGNATURES = {(4, 2): "CartPole-v1", (6, 3): "Acrobot-v1", (2, 3): "MountainCar-v0", (8, 4): "LunarLander-v3"}


class AgentFormatError(ValueError):
    """A file that is not a loadable agent, with the reason."""


def load_agent(path: str | os.PathLike) -> Agent:
    """Load an agent from our JSON+safetensors pair (give either file), a cleanrl
    ``.cleanrl_model`` or an sb3-contrib QR-DQN ``.zip``."""
    p = Path(path)
    if p.suffix == ".zip":
        agent = load_sb3_qrdqn(p)
    elif p.suffix == ".cleanrl_model":
        agent = load_cleanrl(p)
    else:
        agent = load_native(p)
    agent.name = p.stem
    return agent


def _linear_stack(sd: dict, prefix: str, where: str) -> list[tuple[str, int, int]]:
    """Find ``<prefix><i>.weight`` Linear layers; return [(key_prefix, in, out)] in order."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    layers = []
    for k, v in sd.items():
        m = pat.match(k)
        if m:
            if v.ndim != 2:
                raise AgentFormatError(f"{where}: layer '{k}' is not a Linear weight (shape {tuple(v.shape)}); "
                                       "only MLP agents for vector observations are supported")
            layers.append((int(m.group(1)), k[:-len("weight")], int(v.shape[1]), int(v.shape[0])))
    if not layers:
        raise AgentFormatError(f"{where}: no '{prefix}<i>.weight' layers found")
    layers.sort()
    for (_, ka, _, outa), (_, kb, inb, _) in zip(layers, layers[1:]):
        if outa != inb:
            raise AgentFormatError(f"{where}: layer {ka} has {outa} outputs but {kb} expects {inb} inputs")
    return [(k, i, o) for _, k, i, o in layers]


def _remap_into(agent: Agent, sd: dict, layers, where: str, permute_last=None) -> None:
    import torch

    from .agents import check_finite_weights

    check_finite_weights({src + part: sd[src + part] for src, _i, _o in layers for part in ("weight", "bias")
                          if src + part in sd}, where)
    ours = [(k, m) for k, m in agent.net.net.named_children() if isinstance(m, torch.nn.Linear)]
    if len(ours) != len(layers):
        raise AgentFormatError(f"{where}: expected {len(ours)} Linear layers, found {len(layers)}")
    new = {}
    for j, ((idx, _), (src, _, _)) in enumerate(zip(ours, layers)):
        w = sd[src + "weight"].float()
        b = sd.get(src + "bias")
        b = torch.zeros(w.shape[0]) if b is None else b.float()
        if j == len(layers) - 1 and permute_last is not None:
            w, b = w[permute_last], b[permute_last]
        new[f"net.{idx}.weight"] = w
        new[f"net.{idx}.bias"] = b
    for k, v in agent.net.state_dict().items():  # buffers (e.g. C51 atoms)
        new.setdefault(k, v)
    agent.net.load_state_dict(new)


def load_cleanrl(path: str | Path, env_id: str | None = None) -> Agent:
    """Load a cleanrl C51 model (``c51.py`` layout)."""
    import torch

    p = Path(path)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, ...
        raise AgentFormatError(f"{p.name}: cannot be read as weights only ({type(e).__name__}: {e}); "
                               "files needing full unpickling are refused") from None
    if isinstance(data, dict) and "model_weights" in data:
        sd, args = data["model_weights"], data.get("args") or {}
    elif isinstance(data, dict) and all(hasattr(v, "shape") for v in data.values()):
        sd, args = data, {}
    else:
        raise AgentFormatError(f"{p.name}: expected cleanrl's {{'model_weights', 'args'}} dictionary")
    if not isinstance(args, dict):
        args = {}
    layers = _linear_stack(sd, "network.", p.name)
    obs_dim, n_out = layers[0][1], layers[-1][2]
    atoms = sd.get("atoms")
    n_atoms = int(args.get("n_atoms", atoms.numel() if atoms is not None else 0) or 0)
    if n_atoms < 2:
        raise AgentFormatError(f"{p.name}: no atoms found (neither 'atoms' buffer nor args.n_atoms); this is "
                               "not a cleanrl C51 model (cleanrl DQN models carry no return distribution)")
    if n_out % n_atoms:
        raise AgentFormatError(f"{p.name}: output size {n_out} is not a multiple of {n_atoms} atoms")
    n_actions = n_out // n_atoms
    if atoms is not None:
        v_min, v_max = float(atoms[0]), float(atoms[-1])
    else:
        v_min, v_max = float(args.get("v_min", -100)), float(args.get("v_max", 100))
    env = env_id or args.get("env_id") or KNOWN_SIGNATURES.get((obs_dim, n_actions), "")
    cfg = AgentConfig(algo="c51", env_id=str(env), obs_dim=obs_dim, n_actions=n_actions,
                      hidden=[l[2] for l in layers[:-1]], gamma=float(args.get("gamma", 0.99)), n_atoms=n_atoms,
                      v_min=v_min, v_max=v_max, source="cleanrl",
                      extra={"file": p.name, "exp_name": args.get("exp_name"), "seed": args.get("seed")})
    agent = Agent(cfg)
    _remap_into(agent, sd, layers, p.name)
    return agent


def _json_attr(entry, name, default=None):
    if isinstance(entry, dict):
        return entry.get(name, default)
    return default


def load_sb3_qrdqn(path: str | Path, env_id: str | None = None) -> Agent:
    """Load an sb3-contrib QR-DQN ``.zip`` (MlpPolicy) without unpickling its ``data`` fields."""
    import torch

    p = Path(path)
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as e:
        raise AgentFormatError(f"{p.name}: not a zip file ({e})") from None
    with zf:
        names = set(zf.namelist())
        if "policy.pth" not in names:
            raise AgentFormatError(f"{p.name}: no policy.pth inside (is this a stable-baselines3 model?)")
        data = {}
        if "data" in names:
            try:
                data = json.loads(zf.read("data").decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise AgentFormatError(f"{p.name}: the 'data' part is not JSON ({e})") from None
        version = zf.read("_stable_baselines3_version").decode().strip() if "_stable_baselines3_version" in names else None
        try:
            sd = torch.load(io.BytesIO(zf.read("policy.pth")), map_location="cpu", weights_only=True)
        except Exception as e:
            raise AgentFormatError(f"{p.name}: policy.pth cannot be read as weights only ({type(e).__name__}: {e})") from None
    if not isinstance(sd, dict):
        raise AgentFormatError(f"{p.name}: policy.pth is not a state_dict")
    prefix = "quantile_net.quantile_net."
    if not any(k.startswith(prefix) for k in sd):
        kinds = sorted({k.split(".")[0] for k in sd})
        raise AgentFormatError(f"{p.name}: no '{prefix}*' weights (found {', '.join(kinds)}); only sb3-contrib "
                               "QR-DQN MlpPolicy models carry quantiles")
    layers = _linear_stack(sd, prefix, p.name)
    obs_dim, n_out = layers[0][1], layers[-1][2]
    aspace = data.get("action_space", {})
    n_actions = _json_attr(aspace, "n")
    pk = data.get("policy_kwargs", {}) or {}
    n_quantiles = _json_attr(pk, "n_quantiles")
    try:
        n_actions = int(n_actions) if n_actions is not None else None
    except (TypeError, ValueError):
        n_actions = None
    if n_actions is None and n_quantiles:
        n_actions = n_out // int(n_quantiles)
    if n_actions is None:
        raise AgentFormatError(f"{p.name}: the number of actions is not readable from 'data'")
    if n_out % n_actions:
        raise AgentFormatError(f"{p.name}: output size {n_out} is not a multiple of {n_actions} actions")
    n_q = n_out // n_actions
    if n_quantiles is not None and int(n_quantiles) != n_q:
        raise AgentFormatError(f"{p.name}: policy_kwargs says {n_quantiles} quantiles but the network "
                               f"outputs {n_q} per action")
    oshape = _json_attr(data.get("observation_space", {}), "_shape") or _json_attr(
        data.get("observation_space", {}), "shape")
    if oshape is not None and int(np.prod(oshape)) != obs_dim:
        raise AgentFormatError(f"{p.name}: observation space {oshape} does not match the network input {obs_dim}")
    act_name = str(_json_attr(pk, "activation_fn", "ReLU"))
    activation = "relu"
    for cand in ("Tanh", "ELU", "LeakyReLU", "ReLU"):
        if cand in act_name:
            activation = cand.lower()
            break
    gamma = data.get("gamma", 0.99)
    env = env_id or KNOWN_SIGNATURES.get((obs_dim, n_actions), "")
    cfg = AgentConfig(algo="qr-dqn", env_id=env, obs_dim=obs_dim, n_actions=n_actions,
                      hidden=[l[2] for l in layers[:-1]], activation=activation,
                      gamma=float(gamma) if isinstance(gamma, (int, float)) else 0.99, n_quantiles=n_q,
                      source="sb3-contrib", extra={"file": p.name, "sb3_version": version,
                                                   "env_guessed": env_id is None})
    agent = Agent(cfg)
    # sb3 row index k * A + a  ->  ours a * N + k
    perm = [k * n_actions + a for a in range(n_actions) for k in range(n_q)]
    _remap_into(agent, sd, layers, p.name, permute_last=perm)
    return agent
