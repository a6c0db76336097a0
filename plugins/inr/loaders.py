"""Open trained INRs without their training code (compute layer: torch/numpy, no Qt).

Accepted inputs
---------------
* native: ``name.json`` + ``name.safetensors`` (see :mod:`plugins.inr.models`);
* plain torch state dicts (``.pth``/``.pt``/``.ckpt``) read with ``weights_only=True`` -- never
  unpickling classes; ``module.``/``_orig_mod.`` prefixes are stripped and weight norm
  (``weight_g``/``weight_v`` or ``parametrizations.weight.original0/1``) is folded;
* ``{"epoch", "model_state_dict"}`` checkpoints (DeepSDF, VolSDF) and ``{"state_dict"}`` ones;
* HyperDiffusion-style per-shape state dicts and flattened weight vectors (a 1-D tensor/array,
  which needs a config);
* ``.npz`` files of named arrays (or one flat vector), ``.safetensors`` without a sidecar;
* ONNX models (evaluated with ONNX Runtime, see :class:`plugins.inr.fields.OnnxField`).

When no config is given the architecture is guessed from key names, shapes and weight statistics;
:func:`guess_architecture` returns an :class:`ArchGuess` with a confidence and the reasons, for the
user to confirm or correct before the network is built.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .models import INRConfig, INRConfigError

WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar", ".bin")


class INRLoadError(ValueError):
    """A weight file that cannot be opened as an INR, with a sentence saying why."""


@dataclass
class ArchGuess:
    config: INRConfig
    confidence: float  # 0..1
    reasons: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # tensors renamed to the native layout
    source: str = ""

    def summary(self) -> str:
        cfg = self.config
        enc = "" if cfg.encoding == "none" else f" + {cfg.encoding} encoding"
        return (f"{cfg.arch}{enc}, {cfg.in_features}->{cfg.out_features}, widths {cfg.hidden_widths()}"
                f" ({self.confidence:.0%} sure): " + "; ".join(self.reasons))


@dataclass
class LoadedINR:
    """A network ready to evaluate, with how it was read."""

    model: Any  # INRField or OnnxField
    config: INRConfig
    source: str
    guess: ArchGuess | None = None
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- raw reading
def _torch_load(path: Path):
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsupported globals
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise INRLoadError(
            f"{path.name} cannot be read as a weights-only torch file ({msg}). Files that need their "
            "training code's classes to unpickle are refused for safety; save a state_dict instead."
        ) from exc


def read_raw(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Read a weight file into tensors: returns (state_dict or 1-D tensor, info)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    info: dict[str, Any] = {"file": path.name}
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(str(path), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except ValueError as exc:
            raise INRLoadError(f"{path.name}: the .npz holds Python objects, which are not loaded ({exc}).") from exc
        except Exception as exc:
            raise INRLoadError(f"{path.name} is not a readable .npz file ({exc}).") from exc
        if set(arrays) >= {"pos", "neg"} and all(a.ndim == 2 and a.shape[1] == 4 for a in (arrays["pos"], arrays["neg"])):
            raise INRLoadError(
                f"{path.name} holds DeepSDF SDF samples (pos/neg rows of x, y, z, sdf), not network weights."
            )
        if len(arrays) == 1 and next(iter(arrays.values())).ndim == 1:
            return torch.from_numpy(np.ascontiguousarray(next(iter(arrays.values())))), info
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, info
    if suffix == ".npy":
        arr = np.load(str(path), allow_pickle=False)
        if arr.ndim != 1:
            raise INRLoadError(f"{path.name}: a .npy weight file must be a flat 1-D vector, got shape {arr.shape}.")
        return torch.from_numpy(arr), info
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), info
        except Exception as exc:
            raise INRLoadError(f"{path.name} is not a readable safetensors file ({exc}).") from exc
    if suffix in WEIGHT_SUFFIXES:
        obj = _torch_load(path)
        return unwrap_checkpoint(obj, info, path.name), info
    raise INRLoadError(f"{path.name}: unsupported weight file type '{suffix}' (use .json/.safetensors, .pth, .npz, .npy or .onnx).")


def unwrap_checkpoint(obj: Any, info: dict[str, Any], name: str = "checkpoint") -> Any:
    """Find the state dict inside a checkpoint dict ({epoch, model_state_dict}, {state_dict}, ...)."""
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.ndim != 1:
            raise INRLoadError(f"{name} holds a single tensor of shape {tuple(obj.shape)}; only flat weight vectors are accepted.")
        return obj
    if not isinstance(obj, dict):
        raise INRLoadError(f"{name} holds a {type(obj).__name__}, not a state dict.")
    for key in ("epoch", "step", "iteration"):
        if key in obj and isinstance(obj[key], (int, float)):
            info[key] = int(obj[key])
    if "latent_codes" in obj and not any(k in obj for k in ("model_state_dict", "state_dict")):
        raise INRLoadError(f"{name} holds DeepSDF latent codes, not a decoder; open the decoder checkpoint and pick a code.")
    for key in ("model_state_dict", "state_dict", "model", "network", "net", "params", "weights"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            info["container_key"] = key
            return inner
        if isinstance(inner, torch.Tensor) and inner.ndim == 1 and key in ("params", "weights"):
            info["container_key"] = key
            return inner
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise INRLoadError(f"{name} contains no tensors (keys: {', '.join(map(str, list(obj)[:8]))}).")
    return tensors


# ---------------------------------------------------------------------- normalising state dicts
_PREFIXES = ("module.", "_orig_mod.")


def normalize_state_dict(state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Strip wrapper prefixes and fold weight norm; returns (new dict, notes)."""
    import torch

    notes: list[str] = []
    out: dict[str, Any] = {}
    stripped = False
    for k, v in state.items():
        nk = k
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if nk.startswith(p):
                    nk = nk[len(p):]
                    changed = stripped = True
        out[nk] = v
    if stripped:
        notes.append("stripped 'module.'/'_orig_mod.' prefixes")
    folded = 0
    result: dict[str, Any] = {}
    for k, v in out.items():
        if k.endswith(".weight_g") or k.endswith(".parametrizations.weight.original0"):
            continue
        if k.endswith(".weight_v"):
            base = k[: -len(".weight_v")]
            g = out.get(base + ".weight_g")
        elif k.endswith(".parametrizations.weight.original1"):
            base = k[: -len(".parametrizations.weight.original1")]
            g = out.get(base + ".parametrizations.weight.original0")
        else:
            result[k] = v
            continue
        if g is None:
            raise INRLoadError(f"Weight-norm tensor '{k}' has no matching magnitude tensor (weight_g).")
        dims = tuple(range(1, v.ndim))
        norm = torch.linalg.vector_norm(v, dim=dims, keepdim=True)
        result[base + ".weight"] = g.reshape(norm.shape) * v / norm.clamp_min(1e-12)
        folded += 1
    if folded:
        notes.append(f"folded weight norm in {folded} layer(s)")
    # keep the original ordering of layers (weight before bias)
    ordered = {}
    for k in out:
        kk = k
        for suf in (".weight_v", ".parametrizations.weight.original1"):
            if k.endswith(suf):
                kk = k[: -len(suf)] + ".weight"
        if kk in result and kk not in ordered:
            ordered[kk] = result[kk]
    for k, v in result.items():
        ordered.setdefault(k, v)
    return ordered, notes


def check_finite(state: dict[str, Any] | Any, source: str) -> None:
    import torch

    items = state.items() if isinstance(state, dict) else [("vector", state)]
    for name, t in items:
        if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex()):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise INRLoadError(f"{source}: tensor '{name}' holds {bad} NaN/Inf value(s); the network cannot be evaluated.")


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


@dataclass
class _Linear:
    prefix: str
    weight: Any
    bias: Any | None

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


def _find_linears(state: dict[str, Any]) -> tuple[list[_Linear], dict[str, Any]]:
    lins: list[_Linear] = []
    used = set()
    for k, v in state.items():
        if k.endswith("weight") and getattr(v, "ndim", 0) == 2:
            prefix = k[: -len("weight")]
            b = state.get(prefix + "bias")
            lins.append(_Linear(prefix.rstrip("."), v, b if b is not None and b.ndim == 1 else None))
            used.add(k)
            if b is not None:
                used.add(prefix + "bias")
    rest = {k: v for k, v in state.items() if k not in used}
    return lins, rest


def _chain(lins: list[_Linear]) -> tuple[list[_Linear], list[int]] | None:
    """Order layers so each feeds the next (allowing skip concatenations); returns (layers, skip_in)."""
    for order in (lins, sorted(lins, key=lambda l: _natural_key(l.prefix))):
        skips = []
        ok = True
        for i in range(1, len(order)):
            prev, cur = order[i - 1].n_out, order[i].n_in
            if cur == prev:
                continue
            if cur == prev + order[0].n_in:
                skips.append(i)
                continue
            ok = False
            break
        if ok:
            return list(order), skips
    return None


def _pe_from_width(n_in: int) -> tuple[int, int, bool] | None:
    """(coord dims, frequencies, include_input) for a NeRF-style encoding width, if any."""
    for d in (3, 2):
        if n_in % d == 0 and n_in > d:
            m = n_in // d
            if (m - 1) % 2 == 0 and 1 <= (m - 1) // 2 <= 16:
                return d, (m - 1) // 2, True
    return None


def guess_architecture(state: dict[str, Any], source: str = "weights") -> ArchGuess:
    """Guess an :class:`INRConfig` for a state dict from its key names, shapes and statistics."""
    import torch

    state, notes = normalize_state_dict(state)
    check_finite(state, source)
    reasons = list(notes)
    keys = " ".join(state).lower()
    complex_present = any(isinstance(v, torch.Tensor) and v.is_complex() for v in state.values())
    omega = {k: v for k, v in state.items() if k.endswith("omega_0") or k.endswith("scale_0")}
    lins, rest = _find_linears({k: v for k, v in state.items() if k not in omega})

    # hash-grid tables: a big (L, T, F) or (T, F) parameter that is not part of the linear chain
    tables = [k for k, v in rest.items() if v.ndim == 3 and v.shape[1] >= 256]
    if not tables:
        tables = [k for k, v in list(state.items()) if v.ndim == 2 and v.shape[0] >= 4096 and v.shape[1] <= 8
                  and ("hash" in k.lower() or "table" in k.lower() or "embedding" in k.lower())]
        lins = [l for l in lins if l.prefix + ".weight" not in tables and l.prefix not in tables]
    fourier_b = [k for k, v in rest.items() if v.ndim == 2 and v.shape[0] in (2, 3) and k.split(".")[-1] in ("B", "b", "B_gauss")]
    if not lins:
        raise INRLoadError(f"{source}: no linear layers (2-D 'weight' tensors) found; this does not look like an MLP INR.")
    chained = _chain(lins)
    if chained is None:
        shapes = ", ".join(f"{l.prefix}: {tuple(l.weight.shape)}" for l in lins[:6])
        raise INRLoadError(f"{source}: the linear layers do not connect into one network ({shapes}).")
    lins, skips = chained
    n_in0 = lins[0].n_in
    out_features = lins[-1].n_out
    widths = [l.n_out for l in lins[:-1]]
    # widths recorded in the config are the outputs of each layer before any skip concatenation
    cfg: dict[str, Any] = dict(out_features=out_features, widths=widths, hidden_layers=len(widths) - 1,
                               hidden_features=max(widths) if widths else 1, skip_in=skips)
    confidence = 0.5
    if any(l.bias is None for l in lins):
        raise INRLoadError(f"{source}: a linear layer without bias ('{next(l.prefix for l in lins if l.bias is None)}') is not supported.")

    if tables:
        t = state[tables[0]]
        levels = t.shape[0] if t.ndim == 3 else 1
        size = t.shape[-2]
        feats = t.shape[-1]
        in_guess = 3
        cfg.update(arch="hashgrid", encoding="hashgrid", in_features=in_guess, hash_levels=levels,
                   hash_features=feats, hash_log2_size=int(round(math.log2(size))))
        reasons.append(f"hash table '{tables[0]}' {tuple(t.shape)}: multiresolution hash grid (set dimension and resolutions)")
        confidence = 0.4
    elif complex_present or omega:
        cfg.update(arch="wire", in_features=n_in0)
        if omega:
            w = [float(v.reshape(-1)[0]) for k, v in omega.items() if k.endswith("omega_0")]
            s = [float(v.reshape(-1)[0]) for k, v in omega.items() if k.endswith("scale_0")]
            if w:
                cfg.update(w0_first=w[0], w0=w[1] if len(w) > 1 else w[0])
            if s:
                cfg.update(sigma0=s[-1])
            reasons.append("omega_0/scale_0 tensors: WIRE Gabor layers (values read from the file)")
            confidence = 0.9
        else:
            reasons.append("complex-valued weights: WIRE (complex Gabor wavelet); w0/sigma0 unknown, defaults used")
            confidence = 0.7
    elif fourier_b:
        b = rest[fourier_b[0]]
        d = b.shape[0]
        cfg.update(arch="relu", encoding="fourier", in_features=d, fourier_features=b.shape[1])
        reasons.append(f"Fourier feature matrix '{fourier_b[0]}' {tuple(b.shape)}: ReLU MLP on random Fourier features")
        confidence = 0.8
    else:
        # coordinate dimension, encoding and latent from the first layer's width
        latent = 0
        encoding = "none"
        d = n_in0
        pe = None
        if n_in0 in (1, 2, 3):
            reasons.append(f"first layer takes {n_in0} inputs: raw coordinates")
        else:
            pe = _pe_from_width(n_in0)
            if pe is not None:
                d, L, inc = pe
                encoding = "positional"
                cfg.update(pe_frequencies=L, pe_include_input=inc)
                reasons.append(f"first layer takes {n_in0} = {d} x (1 + 2 x {L}) inputs: positional encoding, {L} frequencies")
            elif n_in0 > 3:
                d = 3
                latent = n_in0 - 3
                reasons.append(f"first layer takes {n_in0} = {latent} latent + 3 coordinates (DeepSDF-style auto-decoder)")
        cfg.update(in_features=d, encoding=encoding, latent_dim=latent)
        hidden_stats = [float(l.weight.float().std()) * math.sqrt(l.n_in) for l in lins[1:-1]]
        ratio = float(np.median(hidden_stats)) if hidden_stats else float("nan")
        weight_norm = any("weight norm" in n for n in notes)
        if "siren" in keys or "sine" in keys:
            cfg.update(arch="siren")
            reasons.append("key names mention sine/siren")
            confidence = 0.9
        elif encoding == "positional" and weight_norm and skips and out_features > 1:
            cfg.update(arch="softplus", output_channels=1, skip_scale=1 / math.sqrt(2), pe_scale=1.0)
            reasons.append("positional encoding + weight norm + skip + feature outputs: VolSDF geometry network "
                           "(softplus beta 100, SDF in output 0)")
            confidence = 0.7
        elif latent:
            cfg.update(arch="relu", output_activation="tanh")
            reasons.append("latent input, ReLU, tanh output: DeepSDF decoder (latent defaults to zeros)")
            confidence = 0.65 if weight_norm else 0.5
        elif encoding == "positional":
            cfg.update(arch="relu")
            reasons.append("positional encoding: ReLU MLP (NeRF/HyperDiffusion style)")
            confidence = 0.75
        elif not math.isnan(ratio):
            # SIREN hidden weights ~ U(+-sqrt(6/n)/w0): std*sqrt(n) ~ 0.05; ReLU defaults ~ 0.58-1.4
            if ratio < 0.2:
                cfg.update(arch="siren")
                reasons.append(f"hidden weights are small (std*sqrt(n) = {ratio:.3f}): SIREN's w0-scaled init, w0 = 30 assumed")
                confidence = 0.75 if ratio < 0.12 else 0.55
            else:
                cfg.update(arch="relu")
                reasons.append(f"hidden weights have ReLU-like scale (std*sqrt(n) = {ratio:.3f}): plain ReLU MLP")
                confidence = 0.55
        else:
            cfg.update(arch="relu")
            reasons.append("single layer network: treated as linear/ReLU")
            confidence = 0.3
    d = cfg["in_features"]
    if cfg.get("kind") is None:
        if d == 3:
            cfg["kind"] = "sdf"
            if out_features == 1 and cfg.get("output_activation") != "tanh":
                reasons.append("3 inputs, 1 output: signed distance field (iso level 0)")
        elif d == 2:
            cfg["kind"] = "image"
            cfg["value_range"] = [-1.0, 1.0] if cfg.get("arch") in ("siren", "wire") else [0.0, 1.0]
            reasons.append(f"2 inputs, {out_features} outputs: image")
        else:
            cfg["kind"] = "field"
    # occupancy nets (HyperDiffusion 'occ') cannot be told apart from SDFs by shapes: user confirms
    try:
        config = INRConfig(**cfg).validate()
    except (TypeError, INRConfigError) as exc:
        raise INRLoadError(f"{source}: could not form an architecture from the weights ({exc}).") from exc
    native = to_native_state(state, lins, config, tables, omega)
    return ArchGuess(config=config, confidence=round(confidence, 2), reasons=reasons, state=native, source=source)


def to_native_state(state, lins, config: INRConfig, tables=(), omega=None) -> dict[str, Any]:
    """Rename a foreign state dict (already normalised) onto :class:`INRField`'s parameter names."""
    import torch

    out: dict[str, Any] = {}
    if config.encoding == "hashgrid" and tables:
        t = state[tables[0]]
        out["encoding.tables"] = t if t.ndim == 3 else t[None]
    if config.encoding == "fourier":
        for k, v in state.items():
            if v.ndim == 2 and v.shape[0] == config.in_features and k.split(".")[-1] in ("B", "b", "B_gauss"):
                out["encoding.B"] = v
                break
    if config.latent_dim:
        lat = [v for k, v in state.items() if k.split(".")[-1] == "latent" and v.numel() == config.latent_dim]
        out["latent"] = lat[0].reshape(-1) if lat else torch.zeros(config.latent_dim)
    for i, lin in enumerate(lins):
        w, b = lin.weight, lin.bias
        if config.arch == "wire" and i > 0:
            w = w if w.is_complex() else torch.complex(w, torch.zeros_like(w))
            b = b if b.is_complex() else torch.complex(b, torch.zeros_like(b))
            out[f"layers.{i}.weight_real"] = w.real.float()
            out[f"layers.{i}.weight_imag"] = w.imag.float()
            out[f"layers.{i}.bias_real"] = b.real.float()
            out[f"layers.{i}.bias_imag"] = b.imag.float()
        else:
            if w.is_complex():
                w, b = w.real, b.real
            out[f"layers.{i}.weight"] = w.float()
            out[f"layers.{i}.bias"] = b.float()
    return out


def build_from_guess(guess: ArchGuess, config: INRConfig | None = None):
    """Build the network for a (possibly user-corrected) guess."""
    from .models import INRField, load_state_checked

    cfg = (config or guess.config).validate()
    model = INRField(cfg, seed=0)
    state = dict(guess.state)
    # tensors the foreign file never had (e.g. buffers) keep the fresh model's values
    for k, v in model.state_dict().items():
        if k not in state and k in ("latent",):
            state[k] = v
    load_state_checked(model, state, source=guess.source or "weights")
    model.eval()
    return model


def _embedded(path: Path):
    from .models import embedded_config

    try:
        return embedded_config(path)
    except (ValueError, INRConfigError):
        return None


def _sidecar(path: Path) -> Path | None:
    for cand in (path.with_suffix(".json"), path.parent / (path.name + ".json")):
        if cand.exists() and cand != path:
            return cand
    return None


def open_inr(path: str | Path, config: INRConfig | dict | None = None, latent_codes: str | Path | None = None,
             latent_index: int = 0, providers: tuple[str, ...] | list[str] | None = None) -> LoadedINR:
    """Open any supported INR file; uses ``config`` or a sidecar JSON when present, else a guess.

    ``latent_codes``: a DeepSDF ``LatentCodes/*.pth`` file; code ``latent_index`` is set on the decoder.
    ``providers``: the ONNX Runtime execution providers an ONNX file is evaluated with (a run's
    ``ctx.ort_providers``; default the CPU's). Torch networks are returned on the CPU.
    """
    from .models import INRField, load_inr, load_state_checked, unflatten_weights

    path = Path(path)
    if isinstance(config, dict):
        config = INRConfig.from_dict(config)
    native_st = path.suffix == ".safetensors" and config is None and (
        path.with_suffix(".json").exists() or _embedded(path) is not None)
    if path.is_dir() or path.suffix == ".json" or native_st:
        model = load_inr(path)
        return LoadedINR(model=model, config=model.config, source=str(path), info={"format": "native"})
    if path.suffix.lower() == ".onnx":
        from .fields import OnnxField

        side = _sidecar(path)
        if config is None and side is not None:
            config = INRConfig.from_json(side.read_text())
        field_ = OnnxField(path, config, providers=providers)
        return LoadedINR(model=field_, config=field_.config, source=str(path), info={"format": "onnx"})
    if config is None:
        side = _sidecar(path)
        if side is not None:
            try:
                config = INRConfig.from_json(side.read_text())
            except INRConfigError:
                config = None
    raw, info = read_raw(path)
    import torch

    if isinstance(raw, torch.Tensor):
        check_finite(raw, path.name)
        if config is None:
            raise INRLoadError(
                f"{path.name} holds a flat weight vector of {raw.numel()} values; give its architecture "
                "(an INR config JSON) to rebuild the network."
            )
        model = unflatten_weights(raw, config)
        info["format"] = "flat-vector"
        return LoadedINR(model=model, config=config, source=str(path), info=info)
    guess = guess_architecture(raw, source=path.name)
    info["format"] = "state-dict"
    if config is not None:
        model = INRField(config, seed=0)
        state, _ = normalize_state_dict(raw)
        if set(state) != set(model.state_dict()):
            state = guess.state
        load_state_checked(model, state, source=f"Weights in {path.name}")
        model.eval()
    else:
        model = build_from_guess(guess)
        config = model.config
    if latent_codes is not None:
        codes = load_latent_codes(latent_codes)
        if not 0 <= latent_index < len(codes):
            raise INRLoadError(f"Latent index {latent_index} is out of range: the file holds {len(codes)} codes.")
        model.set_latent(codes[latent_index])
        info["latent_index"] = latent_index
    return LoadedINR(model=model, config=config, source=str(path), guess=guess, info=info)


def load_latent_codes(path: str | Path) -> np.ndarray:
    """DeepSDF ``LatentCodes/latest.pth`` ({latent_codes: tensor or embedding state}) -> (n, d) array."""
    import torch

    path = Path(path)
    obj = _torch_load(path) if path.suffix != ".npz" else dict(np.load(str(path), allow_pickle=False))
    codes = obj.get("latent_codes") if isinstance(obj, dict) else obj
    if isinstance(codes, dict):  # nn.Embedding state dict
        codes = codes.get("weight")
    if codes is None:
        raise INRLoadError(f"{path.name} has no 'latent_codes'.")
    arr = codes.numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    arr = arr.reshape(arr.shape[0], -1)
    if not np.isfinite(arr).all():
        raise INRLoadError(f"{path.name}: latent codes hold NaN/Inf values.")
    return arr.astype(np.float32)


def with_config(guess: ArchGuess, **changes: Any) -> INRConfig:
    """The guessed config with the user's corrections applied (validated)."""
    data = guess.config.to_dict()
    data.update(changes)
    return INRConfig.from_dict(data)


__all__ = [
    "ArchGuess",
    "INRLoadError",
    "LoadedINR",
    "build_from_guess",
    "guess_architecture",
    "load_latent_codes",
    "normalize_state_dict",
    "open_inr",
    "read_raw",
    "with_config",
]

