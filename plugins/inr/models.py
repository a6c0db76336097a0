"""INR architectures and their JSON description (compute layer: torch, no Qt).

One descriptor, :class:`INRConfig`, covers the MLP families used by the anchors:

* ``siren``   -- sine activations sin(w0 * (Wx + b)) with SIREN's initialisation;
* ``relu``    -- ReLU MLP, optionally after a positional (NeRF) or random Fourier encoding;
* ``softplus``-- softplus(beta) MLP (VolSDF-style), optionally with skip connections;
* ``wire``    -- complex Gabor wavelet activations exp(j w0 u - |s0 u|^2) (WIRE);
* ``gauss``   -- Gaussian activations exp(-(s0 u)^2);
* ``hashgrid``-- multiresolution hash encoding (pure torch) followed by a small ReLU MLP.

Every network stores its linear layers as ``layers.<i>.weight`` / ``layers.<i>.bias`` (complex
layers as ``weight_real``/``weight_imag``/``bias_real``/``bias_imag``), so that a foreign state
dict can be mapped onto it layer by layer and a flat weight vector can be split by
:func:`parameter_layout`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT_NAME = "implicit-studio-inr"
FORMAT_VERSION = 1

ARCHITECTURES = ("siren", "relu", "softplus", "wire", "gauss", "hashgrid")
ENCODINGS = ("none", "positional", "fourier", "hashgrid")
KINDS = ("image", "sdf", "occupancy", "density", "field")
OUTPUT_ACTIVATIONS = ("none", "sigmoid", "tanh")


class INRConfigError(ValueError):
    """A configuration that cannot describe a network (human-readable message)."""


@dataclass
class INRConfig:
    """Architecture and meaning of an INR; written as JSON beside its safetensors weights."""

    arch: str = "siren"
    in_features: int = 2
    out_features: int = 3
    hidden_features: int = 256
    hidden_layers: int = 3
    # explicit widths of every hidden layer's output (overrides hidden_features/hidden_layers)
    widths: list[int] | None = None
    # sine / wavelet parameters
    w0: float = 30.0
    w0_first: float | None = None
    sigma0: float = 10.0
    softplus_beta: float = 100.0
    # encoding of the coordinates before the first layer
    encoding: str = "none"
    pe_frequencies: int = 10
    pe_include_input: bool = True
    pe_scale: float = 1.0  # multiplies 2^k (NeRF: 1, SIREN's PosEncodingNeRF: pi)
    fourier_features: int = 128
    fourier_sigma: float = 10.0
    hash_levels: int = 16
    hash_features: int = 2
    hash_log2_size: int = 15
    hash_base_resolution: int = 16
    hash_max_resolution: int = 512
    # DeepSDF/VolSDF-style extras
    skip_in: list[int] = field(default_factory=list)
    skip_scale: float = 1.0
    latent_dim: int = 0
    output_channels: int | None = None  # use only the first k outputs (VolSDF: 1 of 257)
    output_activation: str = "none"
    # meaning of the field
    kind: str = "image"
    bounds: list[list[float]] | None = None  # [[min...], [max...]] of the input domain
    iso_level: float = 0.0
    value_range: list[float] = field(default_factory=lambda: [0.0, 1.0])  # image values
    image_size: list[int] | None = None  # [height, width] of the image it was fitted to
    notes: str = ""

    # ------------------------------------------------------------------ helpers
    def hidden_widths(self) -> list[int]:
        if self.widths:
            return [int(w) for w in self.widths]
        return [int(self.hidden_features)] * (int(self.hidden_layers) + 1)

    def first_w0(self) -> float:
        return float(self.w0 if self.w0_first is None else self.w0_first)

    def domain(self) -> np.ndarray:
        """Bounds as a (2, d) array; [-1, 1]^d unless given."""
        if self.bounds is None:
            return np.array([[-1.0] * self.in_features, [1.0] * self.in_features])
        return np.asarray(self.bounds, dtype=np.float64)

    def validate(self) -> "INRConfig":
        if self.arch not in ARCHITECTURES:
            raise INRConfigError(f"Unknown architecture {self.arch!r}; expected one of {', '.join(ARCHITECTURES)}.")
        if self.encoding not in ENCODINGS:
            raise INRConfigError(f"Unknown encoding {self.encoding!r}; expected one of {', '.join(ENCODINGS)}.")
        if self.arch == "hashgrid" and self.encoding != "hashgrid":
            self.encoding = "hashgrid"
        if self.encoding == "hashgrid" and self.arch != "hashgrid":
            raise INRConfigError("The hash-grid encoding is only used by the 'hashgrid' architecture.")
        if self.kind not in KINDS:
            raise INRConfigError(f"Unknown field kind {self.kind!r}; expected one of {', '.join(KINDS)}.")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise INRConfigError(
                f"Unknown output activation {self.output_activation!r}; expected one of {', '.join(OUTPUT_ACTIVATIONS)}."
            )
        if self.in_features < 1 or self.out_features < 1:
            raise INRConfigError("in_features and out_features must be at least 1.")
        if any(w < 1 for w in self.hidden_widths()):
            raise INRConfigError("Every hidden layer needs at least one unit.")
        if self.bounds is not None:
            try:
                b = np.asarray(self.bounds, dtype=float)
            except (ValueError, TypeError):
                b = np.zeros(0)
            if b.shape != (2, self.in_features) or not np.all(b[1] > b[0]):
                raise INRConfigError(
                    f"bounds must be [[min x.. ], [max x..]] with {self.in_features} values each and max > min."
                )
        for s in self.skip_in:
            if not 0 < s < len(self.hidden_widths()) + 1:
                raise INRConfigError(f"skip_in layer {s} is outside the network's {len(self.hidden_widths()) + 1} layers.")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "INRConfig":
        data = dict(data)
        fmt = data.pop("format", FORMAT_NAME)
        version = data.pop("version", FORMAT_VERSION)
        if fmt != FORMAT_NAME:
            raise INRConfigError(f"This JSON is not an INR description (format {fmt!r}).")
        if int(version) > FORMAT_VERSION:
            raise INRConfigError(f"INR description version {version} is newer than this app understands ({FORMAT_VERSION}).")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"weights", "extra"})
        if unknown:
            raise INRConfigError(f"Unknown keys in INR description: {', '.join(unknown)}.")
        data.pop("weights", None)
        data.pop("extra", None)
        return cls(**data).validate()

    @classmethod
    def from_json(cls, text: str) -> "INRConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise INRConfigError(f"The INR description is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise INRConfigError("The INR description must be a JSON object.")
        return cls.from_dict(data)


# ---------------------------------------------------------------------- encodings
class PositionalEncoding(nn.Module):
    """NeRF encoding: (x, sin(s 2^0 x), cos(s 2^0 x), ..., sin(s 2^(L-1) x), cos(...))."""

    def __init__(self, in_features: int, frequencies: int, include_input: bool = True, scale: float = 1.0):
        super().__init__()
        self.in_features = in_features
        self.include_input = include_input
        self.register_buffer("freqs", scale * 2.0 ** torch.arange(frequencies, dtype=torch.float32), persistent=False)
        self.out_features = in_features * (2 * frequencies + (1 if include_input else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x] if self.include_input else []
        for f in self.freqs:
            parts.append(torch.sin(f * x))
            parts.append(torch.cos(f * x))
        return torch.cat(parts, dim=-1)


class FourierFeatures(nn.Module):
    """Random Fourier features (Tancik et al.): [sin(2 pi B x), cos(2 pi B x)], B ~ N(0, sigma^2)."""

    def __init__(self, in_features: int, features: int, sigma: float, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(in_features, features, generator=gen) * sigma)
        self.out_features = 2 * features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * x @ self.B
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


_PRIMES = (1, 2654435761, 805459861)


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding (instant-ngp) in plain torch, for 2D or 3D inputs in [0, 1]^d.

    Levels whose dense grid fits in the table are indexed directly; finer levels use the spatial
    hash (XOR of coordinates times primes, modulo the table size).
    """

    def __init__(self, in_features: int, levels: int, features: int, log2_size: int, base: int, finest: int):
        super().__init__()
        if in_features not in (2, 3):
            raise INRConfigError("The hash-grid encoding supports 2D and 3D inputs only.")
        self.d = in_features
        self.levels = levels
        self.features = features
        self.size = 2 ** log2_size
        growth = math.exp((math.log(finest) - math.log(base)) / max(levels - 1, 1))
        self.resolutions = [int(math.floor(base * growth**i)) for i in range(levels)]
        self.tables = nn.Parameter(torch.empty(levels, self.size, features).uniform_(-1e-4, 1e-4))
        self.out_features = levels * features
        corners = torch.tensor(np.array(np.meshgrid(*[[0, 1]] * self.d, indexing="ij")).reshape(self.d, -1).T)
        self.register_buffer("corners", corners.long(), persistent=False)

    def _index(self, cell: torch.Tensor, res: int) -> torch.Tensor:
        # cell: (N, C, d) integer corner coordinates
        dense = (res + 1) ** self.d
        if dense <= self.size:
            idx = torch.zeros(cell.shape[:-1], dtype=torch.long, device=cell.device)
            for k in range(self.d):
                idx = idx * (res + 1) + cell[..., k]
            return idx
        h = torch.zeros(cell.shape[:-1], dtype=torch.long, device=cell.device)
        for k in range(self.d):
            h = h ^ (cell[..., k] * _PRIMES[k])
        return h % self.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(0.0, 1.0)
        out = []
        for level, res in enumerate(self.resolutions):
            pos = x * res
            base = torch.floor(pos).long().clamp(max=res - 1)
            frac = pos - base
            cell = base[:, None, :] + self.corners[None]  # (N, C, d)
            idx = self._index(cell, res)
            feats = self.tables[level][idx]  # (N, C, F)
            w = torch.where(self.corners[None].bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)
            out.append((feats * w[..., None]).sum(1))
        return torch.cat(out, dim=-1)


# ---------------------------------------------------------------------- layers
class ComplexLinear(nn.Module):
    """Complex affine map on (real, imag) pairs, stored as four real tensors."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight_real = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_imag = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_real = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_imag = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, xr: torch.Tensor, xi: torch.Tensor | None):
        yr = xr @ self.weight_real.T + self.bias_real
        yi = xr @ self.weight_imag.T + self.bias_imag
        if xi is not None:
            yr = yr - xi @ self.weight_imag.T
            yi = yi + xi @ self.weight_real.T
        return yr, yi


class INRField(nn.Module):
    """An MLP-style INR built from :class:`INRConfig`; forward maps (N, in) -> (N, out)."""

    def __init__(self, config: INRConfig, seed: int | None = None):
        super().__init__()
        config.validate()
        self.config = config
        if seed is not None:
            torch.manual_seed(seed)
        d = config.in_features
        if config.encoding == "positional":
            self.encoding = PositionalEncoding(d, config.pe_frequencies, config.pe_include_input, config.pe_scale)
            enc_dim = self.encoding.out_features
        elif config.encoding == "fourier":
            self.encoding = FourierFeatures(d, config.fourier_features, config.fourier_sigma, seed=seed or 0)
            enc_dim = self.encoding.out_features
        elif config.encoding == "hashgrid":
            self.encoding = HashGridEncoding(
                d,
                config.hash_levels,
                config.hash_features,
                config.hash_log2_size,
                config.hash_base_resolution,
                config.hash_max_resolution,
            )
            enc_dim = self.encoding.out_features
        else:
            self.encoding = None
            enc_dim = d
        if config.latent_dim:
            self.register_buffer("latent", torch.zeros(config.latent_dim))
        else:
            self.latent = None
        self.input_dim = enc_dim + config.latent_dim
        widths = config.hidden_widths()
        dims_out = widths + [config.out_features]
        self.complex = config.arch == "wire"
        _check_network_memory(self.input_dim, dims_out, config.skip_in, 2 if self.complex else 1)
        layers: list[nn.Module] = []
        prev = self.input_dim
        for i, width in enumerate(dims_out):
            n_in = prev + (self.input_dim if i in config.skip_in else 0)
            if self.complex and i > 0:
                layers.append(ComplexLinear(n_in, width))
            else:
                layers.append(nn.Linear(n_in, width))
            prev = width
        self.layers = nn.ModuleList(layers)
        self._init_weights()

    # SIREN init: first layer U(-1/n, 1/n), others U(-sqrt(6/n)/w0, +sqrt(6/n)/w0)
    def _init_weights(self) -> None:
        cfg = self.config
        if cfg.arch == "siren":
            with torch.no_grad():
                for i, layer in enumerate(self.layers):
                    n = layer.in_features
                    bound = 1.0 / n if i == 0 else math.sqrt(6.0 / n) / cfg.w0
                    layer.weight.uniform_(-bound, bound)
        elif cfg.arch == "softplus" and cfg.kind == "sdf":
            # geometric initialisation (SAL/IGR/VolSDF): starts as the SDF of a sphere of radius 0.5
            with torch.no_grad():
                last = len(self.layers) - 1
                for i, layer in enumerate(self.layers):
                    n_out = layer.out_features
                    if i == last:
                        nn.init.normal_(layer.weight, mean=math.sqrt(math.pi) / math.sqrt(layer.in_features), std=1e-4)
                        nn.init.constant_(layer.bias, -0.5)
                    else:
                        nn.init.normal_(layer.weight, 0.0, math.sqrt(2) / math.sqrt(n_out))
                        nn.init.constant_(layer.bias, 0.0)

    def set_latent(self, z: torch.Tensor | np.ndarray) -> None:
        if self.latent is None:
            raise INRConfigError("This network takes no latent code.")
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32).reshape(-1)
        if z.numel() != self.latent.numel():
            raise INRConfigError(f"Latent code has {z.numel()} values; the network expects {self.latent.numel()}.")
        self.latent.copy_(z)

    def _activate(self, i: int, h):
        cfg = self.config
        if cfg.arch == "siren":
            w0 = cfg.first_w0() if i == 0 else cfg.w0
            return torch.sin(w0 * h)
        if cfg.arch in ("relu", "hashgrid"):
            return torch.relu(h)
        if cfg.arch == "softplus":
            return nn.functional.softplus(h, beta=cfg.softplus_beta)
        if cfg.arch == "gauss":
            return torch.exp(-((cfg.sigma0 * h) ** 2))
        raise AssertionError(cfg.arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if self.encoding is not None:
            if cfg.encoding == "hashgrid":
                lo = torch.as_tensor(cfg.domain()[0], dtype=x.dtype, device=x.device)
                hi = torch.as_tensor(cfg.domain()[1], dtype=x.dtype, device=x.device)
                x = self.encoding((x - lo) / (hi - lo))
            else:
                x = self.encoding(x)
        if self.latent is not None:
            x = torch.cat([self.latent.expand(x.shape[0], -1).to(x.dtype), x], dim=-1)
        inp = x
        last = len(self.layers) - 1
        if self.complex:
            xr, xi = x, None
            for i, layer in enumerate(self.layers):
                if i in cfg.skip_in:
                    raise INRConfigError("Skip connections are not supported for WIRE networks.")
                if i == 0:
                    ur = layer(xr)
                    ui = torch.zeros_like(ur)
                else:
                    ur, ui = layer(xr, xi)
                if i == last:
                    h = ur
                    break
                w0 = cfg.first_w0() if i == 0 else cfg.w0
                # exp(j w0 u - |s0 u|^2) with u = ur + j ui
                mag = torch.exp(-w0 * ui - (cfg.sigma0**2) * (ur * ur + ui * ui))
                xr, xi = mag * torch.cos(w0 * ur), mag * torch.sin(w0 * ur)
        else:
            h = x
            for i, layer in enumerate(self.layers):
                if i in cfg.skip_in:
                    h = torch.cat([h, inp], dim=-1) * cfg.skip_scale
                h = layer(h)
                if i != last:
                    h = self._activate(i, h)
        if cfg.output_channels:
            h = h[:, : cfg.output_channels]
        if cfg.output_activation == "sigmoid":
            h = torch.sigmoid(h)
        elif cfg.output_activation == "tanh":
            h = torch.tanh(h)
        return h


def _check_network_memory(input_dim: int, widths: list[int], skip_in, per_weight: int) -> None:
    """Refuse, before allocating anything, a network whose weights alone would not fit in memory
    (a config asking for hidden layers of 200,000 units is 160 GB)."""
    from .memory import available_memory

    n, prev = 0, input_dim
    for i, width in enumerate(widths):
        n += ((prev + (input_dim if i in skip_in else 0)) * width + width) * per_weight
        prev = width
    need, have = n * 4, available_memory()
    if need > 0.9 * have:
        raise INRConfigError(f"This network would have {n:,} weights ({need / 1e9:.1f} GB as float32), more than the "
                             f"{have / 1e9:.1f} GB of memory available; use fewer or narrower hidden layers.")


def build_model(config: INRConfig, seed: int | None = 0) -> INRField:
    """A freshly initialised network for ``config`` (deterministic for a given seed)."""
    return INRField(config, seed=seed)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_layout(config: INRConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of the learnable tensors in canonical (flattening) order."""
    model = INRField(config, seed=0)
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def output_values(model: INRField) -> int:
    cfg = model.config
    return cfg.output_channels or cfg.out_features


# ---------------------------------------------------------------------- presets
def preset(name: str, in_features: int, out_features: int, **overrides: Any) -> INRConfig:
    """Sensible starting configurations for the families the app fits itself."""
    kind = "image" if in_features == 2 else "sdf"
    base: dict[str, Any] = dict(in_features=in_features, out_features=out_features, kind=kind)
    if name == "siren":
        base.update(arch="siren", hidden_features=64, hidden_layers=3, w0=30.0)
    elif name in ("relu_pe", "relu-pe", "relu"):
        base.update(arch="relu", encoding="positional", pe_frequencies=8 if in_features == 2 else 6,
                    pe_scale=math.pi, hidden_features=128, hidden_layers=3)
    elif name == "relu_ff":
        base.update(arch="relu", encoding="fourier", fourier_features=64, fourier_sigma=10.0,
                    hidden_features=128, hidden_layers=3)
    elif name == "wire":
        base.update(arch="wire", hidden_features=64, hidden_layers=2, w0=20.0, sigma0=10.0)
    elif name == "gauss":
        base.update(arch="gauss", hidden_features=64, hidden_layers=3, sigma0=10.0)
    elif name == "hashgrid":
        base.update(arch="hashgrid", encoding="hashgrid", hidden_features=64, hidden_layers=1,
                    hash_levels=8, hash_features=2, hash_log2_size=14, hash_base_resolution=8,
                    hash_max_resolution=256 if in_features == 2 else 128)
    else:
        raise INRConfigError(f"Unknown preset {name!r}; try siren, relu_pe, relu_ff, wire, gauss or hashgrid.")
    base.update(overrides)
    return INRConfig(**base).validate()


# ---------------------------------------------------------------------- save / load (native format)
def _check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    for name, t in state.items():
        if t.is_floating_point() or t.is_complex():
            if not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(f"{source}: tensor '{name}' holds {bad} NaN/Inf value(s); the network cannot be evaluated.")


def load_state_checked(model: INRField, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Load ``state`` into ``model`` naming every missing, unexpected or wrongly shaped tensor."""
    _check_finite(state, source)
    expected = model.state_dict()
    problems = []
    for name, t in expected.items():
        if name not in state:
            problems.append(f"missing tensor '{name}' {tuple(t.shape)}")
        elif tuple(state[name].shape) != tuple(t.shape):
            problems.append(f"tensor '{name}' has shape {tuple(state[name].shape)}, the config needs {tuple(t.shape)}")
    for name in state:
        if name not in expected:
            problems.append(f"unexpected tensor '{name}' {tuple(state[name].shape)}")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise ValueError(f"{source} do not match the architecture in the config: {shown}.")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def save_inr(model: INRField, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<path>.json`` (config) and ``<path>.safetensors`` (weights); returns the JSON path."""
    from safetensors.torch import save_file

    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(".safetensors")
    cfg = model.config.to_dict()
    cfg["weights"] = weights.name
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = weights.with_name(weights.name + ".tmp")
    # the config also travels inside the file, so a lone .safetensors stays self-describing
    save_file(state, str(tmp), metadata={"format": FORMAT_NAME, "inr_config": model.config.to_json()})
    tmp.replace(weights)
    _public_mode(weights)
    meta = dict(cfg)
    if extra:
        meta["extra"] = extra  # e.g. training metrics; ignored when loading
    js = stem.with_suffix(".json")
    tmpj = js.with_name(js.name + ".tmp")
    tmpj.write_text(json.dumps(meta, indent=2))
    tmpj.replace(js)
    return js


def _public_mode(path: Path) -> None:
    """safetensors writes owner-only files; give them the usual mode (respecting the umask)."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(path, 0o666 & ~mask)
    except OSError:
        pass


def load_inr(path: str | Path) -> INRField:
    """Open a native INR: a ``.json`` config, its ``.safetensors`` weights, or a folder holding one."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        if len(found) != 1:
            raise FileNotFoundError(f"Expected exactly one INR .json config in {path}, found {len(found)}.")
        path = found[0]
    if path.suffix == ".safetensors":
        js = path.with_suffix(".json")
        if not js.exists():
            config = embedded_config(path)
            if config is None:
                raise FileNotFoundError(
                    f"No config {js.name} beside {path.name} and none inside it; open it with the architecture guesser instead."
                )
            model = INRField(config, seed=0)
            load_state_checked(model, load_file(str(path)), source=f"Weights {path.name}")
            model.eval()
            return model
        path = js
    if not path.exists():
        raise FileNotFoundError(f"No such INR config: {path}")
    raw = json.loads(path.read_text())
    config = INRConfig.from_dict(raw)
    weights = path.with_name(raw.get("weights") or path.with_suffix(".safetensors").name)
    if not weights.exists():
        raise FileNotFoundError(f"The config names weights {weights.name}, which are not beside it.")
    state = load_file(str(weights))
    model = INRField(config, seed=0)
    load_state_checked(model, state, source=f"Weights {weights.name}")
    model.eval()
    return model


def embedded_config(path: str | Path) -> INRConfig | None:
    """The INR config stored in a safetensors file's metadata by :func:`save_inr`, if any."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:
        raise ValueError(f"{Path(path).name} is not a readable safetensors file ({exc}).") from exc
    text = meta.get("inr_config")
    return INRConfig.from_json(text) if text else None


def weights_hash(model: nn.Module) -> str:
    """SHA-256 over config and tensors: identifies a network for caches."""
    import hashlib

    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None:
        h.update(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def interpolate_weights(a: INRField, b: INRField, t: float) -> INRField:
    """Linear interpolation in weight space, (1 - t) a + t b, for two INRs of the same architecture."""
    sa, sb = a.state_dict(), b.state_dict()
    if set(sa) != set(sb) or any(sa[k].shape != sb[k].shape for k in sa):
        diff = [k for k in sa if k not in sb or sa[k].shape != sb[k].shape] + [k for k in sb if k not in sa]
        raise ValueError(f"The two INRs do not share an architecture (first difference: '{diff[0]}'); cannot interpolate.")
    cfg_a = {k: v for k, v in a.config.to_dict().items() if k not in ("notes", "bounds", "image_size")}
    cfg_b = {k: v for k, v in b.config.to_dict().items() if k not in ("notes", "bounds", "image_size")}
    if cfg_a != cfg_b:
        keys = [k for k in cfg_a if cfg_a[k] != cfg_b.get(k)]
        raise ValueError(f"The two INRs differ in their configuration ({', '.join(keys)}); cannot interpolate.")
    out = INRField(a.config, seed=0)
    state = {}
    for k in sa:
        if sa[k].is_floating_point():
            state[k] = (1.0 - t) * sa[k] + t * sb[k].to(sa[k].device)  # b may sit on another device
        else:
            state[k] = sa[k].clone()
    out.load_state_dict(state)
    out.eval()
    return out


def flatten_weights(model: INRField) -> np.ndarray:
    """The learnable tensors concatenated in :func:`parameter_layout` order (HyperDiffusion style)."""
    return torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()]).cpu().numpy()


def unflatten_weights(vector: np.ndarray | torch.Tensor, config: INRConfig) -> INRField:
    """Rebuild a network from a flat weight vector and its config."""
    vec = torch.as_tensor(np.asarray(vector), dtype=torch.float32).reshape(-1)
    layout = parameter_layout(config)
    total = sum(int(np.prod(s)) for _, s in layout)
    if vec.numel() != total:
        raise ValueError(
            f"The flat weight vector has {vec.numel()} values but the config's architecture has {total} "
            f"parameters ({len(layout)} tensors, first {layout[0][0]} {layout[0][1]})."
        )
    model = INRField(config, seed=0)
    state = model.state_dict()
    offset = 0
    for name, shape in layout:
        n = int(np.prod(shape))
        state[name] = vec[offset: offset + n].reshape(shape)
        offset += n
    load_state_checked(model, state, source="Flat weight vector")
    model.eval()
    return model
