"""Distributional agents in torch: C51, QR-DQN and IQN (MLPs for classic-control tasks).

Every network's output is normalised to the axis order (batch, action, support) and turned into a
:class:`~plugins.rl.distributions.ReturnDistribution`. Agents are saved as safetensors weights
plus a JSON config (``<name>.safetensors`` + ``<name>.json``); nothing is ever unpickled. Files in
any format (ours, cleanrl, sb3-contrib) are opened with :func:`plugins.rl.loaders.load_agent`.
No Qt here; torch is imported by this module, so import it only inside tool functions.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .distributions import Distortion, ReturnDistribution, midpoint_taus

ALGOS = ("c51", "qr-dqn", "iqn")


def normalise_algo(name: str) -> str:
    n = name.lower().replace("_", "-")
    n = {"qrdqn": "qr-dqn", "qr": "qr-dqn", "c-51": "c51"}.get(n, n)
    if n not in ALGOS:
        raise ValueError(f"unknown algorithm '{name}'; choose one of {', '.join(ALGOS)}")
    return n


@dataclass
class AgentConfig:
    algo: str
    env_id: str
    obs_dim: int
    n_actions: int
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "relu"
    gamma: float = 0.99
    # C51
    n_atoms: int = 51
    v_min: float = 0.0
    v_max: float = 100.0
    # QR-DQN
    n_quantiles: int = 25
    # IQN
    n_cos: int = 64
    n_tau_policy: int = 32      # levels used to estimate Q when acting
    n_tau_record: int = 32      # sampled levels recorded per step
    # where it came from (cleanrl, sb3-contrib, implicit-studio) and anything else worth keeping
    source: str = "implicit-studio"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.algo = normalise_algo(self.algo)
        if self.obs_dim < 1 or self.n_actions < 1:
            raise ValueError(f"obs_dim and n_actions must be positive, got {self.obs_dim}, {self.n_actions}")
        if self.algo == "c51" and not (self.v_max > self.v_min and self.n_atoms >= 2):
            raise ValueError(f"C51 needs v_max > v_min and at least 2 atoms, got [{self.v_min}, {self.v_max}], "
                             f"{self.n_atoms} atoms")


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leakyrelu": nn.LeakyReLU}


def mlp(sizes: list[int], activation: str = "relu", last_activation: bool = False) -> nn.Sequential:
    act = _ACTIVATIONS.get(activation.lower())
    if act is None:
        raise ValueError(f"unknown activation '{activation}'; choose one of {', '.join(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_activation:
            layers.append(act())
    return nn.Sequential(*layers)


class C51Net(nn.Module):
    """obs -> logits (B, A, N atoms)."""

    def __init__(self, cfg: AgentConfig):
        super().__init__()
        self.n_actions, self.n_atoms = cfg.n_actions, cfg.n_atoms
        self.net = mlp([cfg.obs_dim, *cfg.hidden, cfg.n_actions * cfg.n_atoms], cfg.activation)
        self.register_buffer("atoms", torch.linspace(cfg.v_min, cfg.v_max, cfg.n_atoms))

    def forward(self, obs):
        return self.net(obs).view(-1, self.n_actions, self.n_atoms)

    def q(self, obs):
        return (torch.softmax(self(obs), dim=-1) * self.atoms).sum(-1)


class QRNet(nn.Module):
    """obs -> quantile values (B, A, N) at the midpoint levels."""

    def __init__(self, cfg: AgentConfig):
        super().__init__()
        self.n_actions, self.n_quantiles = cfg.n_actions, cfg.n_quantiles
        self.net = mlp([cfg.obs_dim, *cfg.hidden, cfg.n_actions * cfg.n_quantiles], cfg.activation)

    def forward(self, obs):
        return self.net(obs).view(-1, self.n_actions, self.n_quantiles)

    def q(self, obs):
        return self(obs).mean(-1)


class IQNNet(nn.Module):
    """(obs, tau (B, M)) -> quantile values (B, A, M): psi(s) * phi(tau) -> head (Dabney et al.)."""

    def __init__(self, cfg: AgentConfig):
        super().__init__()
        if len(cfg.hidden) < 1:
            raise ValueError("IQN needs at least one hidden layer")
        h = cfg.hidden[0]
        self.n_actions, self.n_cos = cfg.n_actions, cfg.n_cos
        self.psi = mlp([cfg.obs_dim, h], cfg.activation, last_activation=True)
        self.phi = nn.Sequential(nn.Linear(cfg.n_cos, h), nn.ReLU())
        self.head = mlp([h, *cfg.hidden[1:], cfg.n_actions], cfg.activation)
        self.register_buffer("cos_idx", torch.arange(1, cfg.n_cos + 1, dtype=torch.float32) * math.pi)
        self.n_tau_policy = cfg.n_tau_policy

    def forward(self, obs, taus):
        x = self.psi(obs)                                    # (B, H)
        emb = self.phi(torch.cos(taus[..., None] * self.cos_idx))  # (B, M, H)
        out = self.head(x[:, None, :] * emb)                 # (B, M, A)
        return out.transpose(1, 2)                           # (B, A, M)

    def q(self, obs, taus=None):
        if taus is None:
            taus = torch.as_tensor(midpoint_taus(self.n_tau_policy), dtype=torch.float32,
                                   device=obs.device).expand(obs.shape[0], -1)
        return self(obs, taus).mean(-1)


def build_network(cfg: AgentConfig) -> nn.Module:
    return {"c51": C51Net, "qr-dqn": QRNet, "iqn": IQNNet}[cfg.algo](cfg)


class Agent:
    """A distributional agent: network + config, with numpy-in / numpy-out helpers."""

    def __init__(self, cfg: AgentConfig, net: nn.Module | None = None):
        self.cfg = cfg
        self.name: str | None = None
        self.net = net if net is not None else build_network(cfg)
        self.net.eval()

    @property
    def algo(self) -> str:
        return self.cfg.algo

    @property
    def device(self) -> torch.device:
        """Where the network is (the CPU unless it is being trained elsewhere); inputs go there."""
        return next((p.device for p in self.net.parameters()), torch.device("cpu"))

    def _obs(self, obs) -> torch.Tensor:
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        if o.ndim == 1:
            o = o[None]
        if o.shape[-1] != self.cfg.obs_dim:
            raise ValueError(f"agent expects observations of size {self.cfg.obs_dim}, got {o.shape[-1]}")
        return o

    @torch.no_grad()
    def distribution(self, obs, *, rng: np.random.Generator | None = None, taus=None,
                     batch: int = 4096) -> ReturnDistribution:
        """Return distribution per action for each observation, batch shape (B, A).

        C51 -> categorical, QR-DQN -> quantiles, IQN -> sampled quantiles at stratified random
        levels (one per stratum of [0, 1], from ``rng``) or at given ``taus`` (M,) / (B, M).
        Crossing quantile outputs are sorted (monotone rearrangement); the number of distributions
        that needed it is put in ``meta['rearranged']``."""
        o = self._obs(obs)
        B = o.shape[0]
        outs, tau_l = [], []
        for s in range(0, B, batch):
            ob = o[s:s + batch]
            if self.algo == "iqn":
                if taus is None:
                    r = rng if rng is not None else np.random.default_rng(0)
                    m = self.cfg.n_tau_record
                    t = (np.arange(m) + r.random((ob.shape[0], m))) / m
                else:
                    t = np.broadcast_to(np.asarray(taus, dtype=np.float64), (B, np.shape(taus)[-1]))[s:s + batch]
                tau_l.append(t)
                outs.append(self.net(ob, torch.as_tensor(t, dtype=torch.float32, device=ob.device)).double().cpu().numpy())
            elif self.algo == "c51":
                outs.append(torch.softmax(self.net(ob).double(), dim=-1).cpu().numpy())
            else:
                outs.append(self.net(ob).double().cpu().numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, self.cfg.n_actions, 1))
        if not np.isfinite(out).all():
            raise ValueError(f"agent {self.name or self.algo}: its network produced NaN or infinite values for "
                             "these observations; its distributions cannot be recorded")
        if self.algo == "c51":
            atoms = np.linspace(self.cfg.v_min, self.cfg.v_max, self.cfg.n_atoms)
            return ReturnDistribution.categorical(atoms, out, validate=False)
        crossing = int(np.sum(np.any(np.diff(out, axis=-1) < 0, axis=-1)))
        if self.algo == "qr-dqn":
            d = ReturnDistribution.quantiles(out, rearrange=True, validate=False)
        else:
            t = np.concatenate(tau_l)[:, None, :]
            d = ReturnDistribution.sampled_quantiles(np.broadcast_to(t, out.shape), out, rearrange=True,
                                                     validate=False)
        d.meta["rearranged"] = crossing
        return d

    @torch.no_grad()
    def q_values(self, obs) -> np.ndarray:
        return self.net.q(self._obs(obs)).double().cpu().numpy()

    @torch.no_grad()
    def act(self, obs, risk: Distortion | None = None) -> np.ndarray:
        """Greedy action (or the action maximising a distortion risk measure)."""
        o = self._obs(obs)
        if risk is None or risk.name == "neutral":
            return self.net.q(o).argmax(-1).cpu().numpy()
        if self.algo == "iqn":  # IQN's own way: evaluate at distorted levels beta(tau)
            t = risk.beta(midpoint_taus(self.cfg.n_tau_policy))
            tt = torch.as_tensor(t, dtype=torch.float32, device=o.device).expand(o.shape[0], -1)
            return self.net(o, tt).mean(-1).argmax(-1).cpu().numpy()
        return self.distribution(o.cpu().numpy()).risk(risk).argmax(-1)

    # ---------------- persistence ----------------

    def save(self, folder: str | os.PathLike, name: str, *, info: dict | None = None) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / f"{name}.safetensors"
        sd = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        meta = {"format": "implicit-studio/rl-agent", "version": 1, "config": asdict(self.cfg),
                "weights": weights.name, **(info or {})}
        tmp = weights.with_name(weights.name + ".tmp")
        # the config also rides in the safetensors header, so the weights file alone is a loadable agent
        save_file(sd, str(tmp), metadata={"format": "implicit-studio/rl-agent", "algo": self.algo,
                                          "config": json.dumps(asdict(self.cfg))})
        os.chmod(tmp, 0o644)  # safetensors writes 0600; agents are meant to be shared and bundled
        os.replace(tmp, weights)
        cfg_path = folder / f"{name}.json"
        cfg_path.write_text(json.dumps(meta, indent=2))
        return cfg_path

    def clone(self) -> "Agent":
        a = Agent(AgentConfig(**asdict(self.cfg)))
        a.net.load_state_dict(self.net.state_dict())
        return a


def load_native(p: str | os.PathLike) -> Agent:
    """An agent saved by :meth:`Agent.save`: the JSON+safetensors pair (give either file, or a
    folder holding one pair), or a safetensors file whose header carries the config. Agents of
    other libraries: :func:`plugins.rl.loaders.load_agent`."""
    p = Path(p)
    if p.suffix == ".safetensors":
        if not p.with_suffix(".json").exists():
            return _load_single_file(p)
        p = p.with_suffix(".json")
    if p.is_dir():
        cands = sorted(p.glob("*.json"))
        if len(cands) != 1:
            raise ValueError(f"{p}: expected one agent .json in the folder, found {len(cands)}")
        p = cands[0]
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such agent file")
    try:
        meta = json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"{p.name}: not a valid agent config ({e})") from None
    if meta.get("format") != "implicit-studio/rl-agent" or "config" not in meta:
        raise ValueError(f"{p.name}: not an Implicit Studio agent config (format field missing)")
    cfg = AgentConfig(**meta["config"])
    wpath = weights_beside(p, meta.get("weights", p.with_suffix(".safetensors").name))
    agent = _agent_from_weights(cfg, wpath)
    agent.info = meta
    return agent


def weights_beside(config_path: Path, name: object) -> Path:
    """The weights file a config names, which must be a file in the config's own folder: an
    absolute path or ``..`` in an agent file shared with others would read any file."""
    folder = config_path.parent.resolve()
    if not isinstance(name, str) or not name.strip() or Path(name).is_absolute():
        raise ValueError(f"{config_path.name}: its \"weights\" field must name a file beside it, not {name!r}")
    path = (folder / name).resolve()
    if path.parent != folder:
        raise ValueError(f"{config_path.name}: its \"weights\" field ({name!r}) leaves the folder of the agent "
                         f"file; give the name of a file next to it")
    return path


def _agent_from_weights(cfg: AgentConfig, wpath: Path) -> Agent:
    """Build the agent and load ``wpath`` into it, refusing what cannot work before allocating:
    shapes that differ from the config (a config asking for a huge network), NaN/Inf weights."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not wpath.is_file():
        raise FileNotFoundError(f"{wpath}: no such weights file")
    try:
        with safe_open(str(wpath), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{wpath.name}: not a safetensors file ({e})") from None
    with torch.device("meta"):  # shapes only, no memory
        expected = {k: tuple(v.shape) for k, v in build_network(cfg).state_dict().items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        k = wrong[0]
        size = sum(math.prod(s) for s in expected.values())
        raise ValueError(f"{wpath.name}: weights do not match the config (tensor {k}: file "
                         f"{found.get(k, 'missing')}, config {expected.get(k, 'none')}; the config describes "
                         f"{size:,} weights); nothing was built")
    sd = load_file(str(wpath))
    check_finite_weights(sd, wpath.name)
    agent = Agent(cfg)
    agent.net.load_state_dict(sd)
    return agent


def check_finite_weights(sd: dict, name: str) -> None:
    """Refuse NaN/Inf weights (the agent's distributions would be garbage) naming the file."""
    for key, t in sd.items():
        if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"{name}: tensor {key!r} holds {bad} NaN or infinite value(s); the agent cannot be "
                             "used. Train or export it again")


def _load_single_file(path: Path) -> Agent:
    """An agent from a safetensors file whose header carries the config (as written by save)."""
    from safetensors import safe_open

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such agent file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{path.name}: not a safetensors file ({e})") from None
    if meta.get("format") != "implicit-studio/rl-agent" or "config" not in meta:
        raise ValueError(f"{path.name}: these weights carry no agent config (and no {path.stem}.json is beside them)")
    cfg = AgentConfig(**json.loads(meta["config"]))
    agent = _agent_from_weights(cfg, path)
    agent.info = {"config": json.loads(meta["config"])}
    return agent
