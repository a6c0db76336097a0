"""The diffusion machinery h-Edit and inpainting share (pure torch, no Qt): images and masks at
the model's size, VAE encode/decode, prompt encoding, the DDIM-style schedule and the
epsilon-predicting model with classifier-free guidance.

They work on any object shaped like a diffusers ``StableDiffusionPipeline`` (``unet``, ``vae``,
``text_encoder``, ``tokenizer``, ``scheduler``): the bundled default model, a full SD checkpoint
or a tiny random test pipeline.

Notation (see ``shared/research/algorithms-hedit-copaint.md``): ``ab[t]`` is
``alphas_cumprod[t]``; a sampling step goes from timestep ``t`` to the next listed timestep
``t'`` (after the last one ``ab' = final_alpha_cumprod``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .images import load_image_file, resize_uint8, to_uint8_rgb  # noqa: F401  (re-used by the editing tools)


# ------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------


def image_to_tensor(arr: np.ndarray, device=None, dtype=torch.float32) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float in [-1, 1]."""
    t = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None].to(dtype=torch.float32)
    return (t / 127.5 - 1.0).to(device=device, dtype=dtype)


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """1x3xHxW (or 3xHxW) float in [-1, 1] -> HxWx3 uint8."""
    if img.ndim == 4:
        img = img[0]
    x = ((img.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 0).numpy()


def image_hash(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:32]


def prepare_image(pipe, image: Any, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(original uint8, uint8 at the model's size); resizing is noted."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        image = load_image_file(str(image))
    arr = to_uint8_rgb(image)
    size = model_image_size(pipe)
    if arr.shape[0] != size or arr.shape[1] != size:
        notes.append(f"image resized from {arr.shape[1]}x{arr.shape[0]} to the model's {size}x{size}"
                     + (" (aspect ratio changed)" if arr.shape[0] != arr.shape[1] else ""))
        return arr, resize_uint8(arr, (size, size))
    return arr, arr


def prepare_mask(mask: Any, shape: tuple[int, int], what: str = "mask", resize: bool = False) -> np.ndarray:
    """HxW bool mask (True = selected) matching ``shape`` (H, W). A size mismatch is an error
    unless ``resize`` is set (the caller offers the resize)."""
    if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__"):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(str(mask)) as img:
                mask = np.asarray(img.convert("L"))
        except FileNotFoundError:
            raise ValueError(f"{what} file {mask!r} does not exist") from None
        except (UnidentifiedImageError, OSError):
            raise ValueError(f"{what} file {mask!r} is not an image Pillow can read") from None
    if type(mask).__module__.startswith("PIL"):
        mask = np.asarray(mask.convert("L"))
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., :3].max(axis=2) if m.shape[2] in (3, 4) else m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"{what} must be a single-channel image (HxW), got shape {m.shape}")
    if m.dtype == np.bool_:
        b = m
    elif np.issubdtype(m.dtype, np.floating):
        b = m >= 0.5
    else:
        b = m >= (128 if m.max(initial=0) > 1 else 1)
    if b.shape != tuple(shape):
        if not resize:
            raise ValueError(
                f"{what} is {b.shape[1]}x{b.shape[0]} but the image is {shape[1]}x{shape[0]}; "
                f"resize the {what} to the image size (option resize_mask / --resize-mask) or paint a new one"
            )
        from PIL import Image

        img = Image.fromarray(b.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
        b = np.asarray(img) >= 128
    return b


def feathered_weight(mask: np.ndarray, feather: int) -> np.ndarray:
    """Blend weight in [0, 1]: 0 everywhere outside the mask, rising to 1 at ``feather`` pixels
    inside its edge (so pixels outside the mask stay exactly the original)."""
    m = mask.astype(bool)
    if feather <= 0 or not m.any():
        return m.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    dist = distance_transform_edt(m)  # distance to the nearest unselected pixel (>= 1 inside)
    return np.clip(dist / float(feather + 1), 0.0, 1.0).astype(np.float32) * m


def composite(original: np.ndarray, result: np.ndarray, mask: np.ndarray, feather: int) -> np.ndarray:
    """Result inside the mask, the exact original pixels outside, blended over a feathered edge."""
    if result.shape != original.shape:
        result = resize_uint8(result, (original.shape[1], original.shape[0]))
    w = feathered_weight(mask, feather)[..., None]
    mixed = np.rint(original.astype(np.float32) * (1 - w) + result.astype(np.float32) * w)
    out = np.clip(mixed, 0, 255).astype(np.uint8)
    out[~mask.astype(bool)] = original[~mask.astype(bool)]
    return out


# ------------------------------------------------------------------------------------------
# Model pieces
# ------------------------------------------------------------------------------------------


def vae_scale_factor(pipe) -> int:
    vae = getattr(pipe, "vae", None)
    if vae is None:
        raise ValueError("this model has no VAE; editing and inpainting need one to encode images")
    return 2 ** (len(vae.config.block_out_channels) - 1)


def model_image_size(pipe) -> int:
    """Side of the square images the model was trained on (UNet sample size x VAE factor)."""
    size = pipe.unet.config.sample_size
    if isinstance(size, (tuple, list)):
        size = size[0]
    return int(size) * vae_scale_factor(pipe)


def model_device(pipe) -> torch.device:
    return next(pipe.unet.parameters()).device


def model_dtype(pipe) -> torch.dtype:
    return next(pipe.unet.parameters()).dtype


def latent_scaling(pipe) -> float:
    return float(getattr(pipe.vae.config, "scaling_factor", 0.18215) or 0.18215)


def check_vae_encoder(pipe) -> None:
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "encode") or getattr(vae, "encoder", True) is None:
        raise ValueError(
            "this model has no VAE encoder, so it cannot turn an image into latents; "
            "load a model whose VAE includes the encoder (a full diffusers folder)"
        )


@torch.no_grad()
def vae_encode(pipe, img: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW in [-1, 1] -> latents (distribution mode, times the scaling factor)."""
    check_vae_encoder(pipe)
    vae = pipe.vae
    img = img.to(device=model_device(pipe), dtype=vae.dtype)
    dist = vae.encode(img).latent_dist
    return dist.mode() * latent_scaling(pipe)


def vae_decode(pipe, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> Bx3xHxW in about [-1, 1]; differentiable (wrap in no_grad where not needed)."""
    vae = pipe.vae
    return vae.decode(latents.to(vae.dtype) / latent_scaling(pipe)).sample


@torch.no_grad()
def encode_prompts(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """Text embeddings, one row per prompt, at the tokenizer's full length."""
    tok = pipe.tokenizer
    ids = tok(list(prompts), padding="max_length", max_length=tok.model_max_length,
              truncation=True, return_tensors="pt").input_ids
    out = pipe.text_encoder(ids.to(model_device(pipe)))[0]
    return out.to(model_dtype(pipe))


def token_ids(pipe, prompt: str) -> list[int]:
    """Token ids of a prompt without padding (start and end tokens included)."""
    return list(pipe.tokenizer(prompt, truncation=True, max_length=pipe.tokenizer.model_max_length).input_ids)


def weights_key(pipe) -> str:
    """A cheap cache key of a pipeline object's UNet, VAE and text encoder weights (names, shapes,
    a sample of values), for pipelines given without the fingerprint of their files (tests,
    pipelines built in memory). Never recorded: runs record :func:`app.api.model_fingerprint`."""
    h = hashlib.sha256()
    for mod_name in ("unet", "vae", "text_encoder"):
        mod = getattr(pipe, mod_name, None)
        if mod is None:
            continue
        for name, p in mod.state_dict().items():
            flat = p.detach().reshape(-1)
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            sample = torch.cat([flat[:64], flat[-64:]]).float().cpu().numpy()
            h.update(sample.tobytes())
    return h.hexdigest()[:24]


# ------------------------------------------------------------------------------------------
# Schedules
# ------------------------------------------------------------------------------------------


@dataclass
class Schedule:
    """A DDIM timestep list with its alphas: ``timesteps[i]`` goes to ``timesteps[i + 1]``; after
    the last one to the clean level with ``final_alpha``."""

    timesteps: list[int]
    alphas_cumprod: torch.Tensor  # float64, training-index table
    final_alpha: float

    @classmethod
    def from_pipe(cls, pipe, num_steps: int, spacing: str = "leading") -> "Schedule":
        from diffusers import DDIMScheduler

        if num_steps < 1:
            raise ValueError(f"number of steps must be at least 1, got {num_steps}")
        cfg = dict(pipe.scheduler.config)
        cfg["timestep_spacing"] = spacing
        sch = DDIMScheduler.from_config(cfg)
        if sch.config.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"this model predicts {sch.config.prediction_type!r}, which is not supported "
                             f"(supported: {', '.join(PREDICTION_TYPES)})")
        sch.set_timesteps(num_steps)
        ts = [int(t) for t in sch.timesteps]
        ac = sch.alphas_cumprod.to(torch.float64)
        return cls(ts, ac, float(sch.final_alpha_cumprod))

    def __len__(self) -> int:
        return len(self.timesteps)

    def ab(self, i: int) -> float:
        """alpha-bar at step i (i == len -> the clean level)."""
        if i >= len(self.timesteps):
            return self.final_alpha
        return float(self.alphas_cumprod[self.timesteps[i]])

    def t_model(self, i: int) -> int:
        """Timestep to feed the network at level i (the clean level uses training index 0)."""
        return self.timesteps[i] if i < len(self.timesteps) else 0

    def sigma(self, i: int, eta: float) -> float:
        a, ap = self.ab(i), self.ab(i + 1)
        if eta == 0:
            return 0.0
        return eta * math.sqrt(max((1 - ap) / (1 - a), 0.0)) * math.sqrt(max(1 - a / ap, 0.0))

    def k_coef(self, i: int, eta: float) -> float:
        """d mu / d eps for the step i -> i+1 (h-Edit's editing coefficient; negative)."""
        a, ap = self.ab(i), self.ab(i + 1)
        s = self.sigma(i, eta)
        return math.sqrt(max(1 - ap - s * s, 0.0)) - math.sqrt(1 - a) * math.sqrt(ap / a)


def predict_x0(x: torch.Tensor, eps: torch.Tensor, ab: float) -> torch.Tensor:
    return (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)


def step_mean(sched: Schedule, i: int, x: torch.Tensor, eps: torch.Tensor, eta: float) -> torch.Tensor:
    """mu(x, t_i, eps): the mean of the step i -> i+1."""
    a, ap = sched.ab(i), sched.ab(i + 1)
    s = sched.sigma(i, eta)
    x0 = predict_x0(x, eps, a)
    return math.sqrt(ap) * x0 + math.sqrt(max(1 - ap - s * s, 0.0)) * eps


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def to_epsilon(out: torch.Tensor, x: torch.Tensor, ab: float, prediction_type: str) -> torch.Tensor:
    """The noise prediction equivalent to the network output ``out`` at latent ``x`` (level ``ab``).

    v-prediction: ``v = sqrt(ab) eps - sqrt(1 - ab) x0`` gives ``eps = sqrt(ab) v + sqrt(1 - ab) x``;
    x0-prediction: ``eps = (x - sqrt(ab) x0) / sqrt(1 - ab)``. The map is affine in ``out`` with the
    same ``x`` for every conditioning, so guidance mixes the same way before or after it."""
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        return math.sqrt(ab) * out + math.sqrt(1 - ab) * x
    if prediction_type == "sample":
        return (x - math.sqrt(ab) * out) / math.sqrt(max(1 - ab, 1e-12))
    raise ValueError(f"unsupported prediction type {prediction_type!r}")


class EpsModel:
    """Noise predictions of a pipeline's UNet for several conditionings at once (v- and
    x0-predicting models are converted to the equivalent noise prediction).

    ``embeds`` maps a name (``"null"``, ``"src"``, ``"tar"``...) to a 1xLxD embedding. Requests with
    the same (latent, conditioning) are evaluated once, so equal prompts give bit-equal rows.
    """

    def __init__(self, pipe, embeds: dict[str, torch.Tensor]):
        self.pipe = pipe
        self.unet = pipe.unet
        self.device = model_device(pipe)
        self.dtype = model_dtype(pipe)
        self.embeds = {}
        self.alias: dict[str, str] = {}
        for name, e in embeds.items():
            for other, oe in self.embeds.items():
                if oe.shape == e.shape and torch.equal(oe, e):
                    self.alias[name] = other
                    break
            else:
                self.embeds[name] = e.to(self.device, self.dtype)
                self.alias[name] = name
        self.calls = 0  # rows evaluated (for cost accounting)
        self.prediction_type = getattr(pipe.scheduler.config, "prediction_type", "epsilon") or "epsilon"
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"this model predicts {self.prediction_type!r}, which is not supported")
        self._ac = pipe.scheduler.alphas_cumprod.to(torch.float64)

    def _eps(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return out
        return to_epsilon(out, x.to(out.dtype), float(self._ac[int(t)]), self.prediction_type)

    def same(self, a: str, b: str) -> bool:
        return self.alias[a] == self.alias[b]

    def __call__(self, t: int, rows: Sequence[tuple[torch.Tensor, str]], together: bool = False) -> list[torch.Tensor]:
        """rows: (latent 1xCxhxw, embedding name). Returns one noise prediction per row.

        By default every distinct row is its own UNet call (batch 1), so a prediction never
        depends on what else is evaluated with it (bit-reproducible; on CPU batching gains
        little). ``together=True`` evaluates all rows in one batch, as attention control needs."""
        tt = lambda b: torch.full((b,), int(t), device=self.device, dtype=torch.long)  # noqa: E731
        if together:
            xb = torch.cat([x for x, _ in rows]).to(self.device, self.dtype)
            eb = torch.cat([self.embeds[self.alias[n]] for _, n in rows])
            out = self._eps(self.unet(xb, tt(xb.shape[0]), encoder_hidden_states=eb).sample, xb, t)
            self.calls += xb.shape[0]
            return [out[j : j + 1] for j in range(len(rows))]
        done: dict[tuple[int, str], torch.Tensor] = {}
        result = []
        for x, name in rows:
            key = (id(x), self.alias[name])
            if key not in done:
                xd = x.to(self.device, self.dtype)
                done[key] = self._eps(self.unet(xd, tt(1), encoder_hidden_states=self.embeds[self.alias[name]]).sample,
                                      xd, t)
                self.calls += 1
            result.append(done[key])
        return result


def cfg(e_null: torch.Tensor | None, e_cond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance; w == 1 returns the conditional prediction itself."""
    if w == 1.0 or e_null is None:
        return e_cond
    return e_null + w * (e_cond - e_null)


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Pixel mask (…xHxW, 1 = selected) -> latent resolution by max-pooling: a latent cell is selected
    when any pixel of its block is, so every selected pixel is covered."""
    m = mask.float()
    while m.ndim < 4:
        m = m[None]
    return torch.nn.functional.max_pool2d(m, kernel_size=factor, stride=factor)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    return torch.nn.functional.max_pool2d(mask, kernel_size=k, stride=1, padding=radius)
