"""Cheap latent -> RGB previews.

A full VAE decode per denoising step would cost as much as the step itself on small models, so
live previews and trajectory thumbnails use a linear map from the latent channels to RGB (one
value per latent pixel). The map is fitted once per model by least squares: a random colour
mosaic is encoded with the model's own VAE encoder, and the block colours are regressed on the
latents. This works for any VAE (SD 1.x/2.x, SDXL, the bundled model) without hard-coded factors.
"""

from __future__ import annotations

import threading

import numpy as np

_fits: dict[str, np.ndarray] = {}
_lock = threading.Lock()


def _mosaic(rng: np.random.Generator, vsf: int, cells: int = 8, block_latents: int = 2) -> np.ndarray:
    """A ``(3, S, S)`` image in [-1, 1] of ``cells x cells`` flat colour blocks, each covering
    ``block_latents x block_latents`` latent pixels, and the colour of every latent pixel."""
    block = vsf * block_latents
    colours = rng.uniform(-1.0, 1.0, size=(cells, cells, 3)).astype(np.float32)
    img = np.repeat(np.repeat(colours, block, axis=0), block, axis=1)  # S x S x 3
    lat_rgb = np.repeat(np.repeat(colours, block_latents, axis=0), block_latents, axis=1)
    return img.transpose(2, 0, 1), lat_rgb


def fit_latent_rgb(backend, key: str | None = None, seed: int = 0) -> np.ndarray:
    """The ``(C+1) x 3`` matrix mapping ``[latent channels, 1]`` to RGB in [-1, 1], fitted with the
    backend's VAE encoder and cached under ``key`` (the model hash)."""
    key = key or getattr(backend, "model_hash", "") or str(id(backend))
    with _lock:
        hit = _fits.get(key)
    if hit is not None:
        return hit
    import torch

    rng = np.random.default_rng(seed)
    vsf = int(backend.vae_scale_factor)
    images, targets = [], []
    for _ in range(2):
        img, lat_rgb = _mosaic(rng, vsf)
        images.append(img)
        targets.append(lat_rgb)
    latents = backend.encode(torch.from_numpy(np.stack(images)))
    lat = latents.detach().float().cpu().numpy()  # B x C x h x w
    b, c, h, w = lat.shape
    x = lat.transpose(0, 2, 3, 1).reshape(-1, c)
    y = np.stack(targets)[:, :h, :w].reshape(-1, 3)
    # Keep only latent pixels well inside a block (their receptive field sees one colour).
    inner = np.zeros((h, w), bool)
    inner[0::2, 0::2] = True
    inner[1::2, 1::2] = True
    mask = np.tile(inner.reshape(-1), b)
    x, y = x[mask], y[mask]
    xa = np.concatenate([x, np.ones((x.shape[0], 1), np.float32)], 1)
    ridge = 1e-3 * np.eye(c + 1, dtype=np.float64)
    ridge[-1, -1] = 0.0
    m = np.linalg.solve(xa.T.astype(np.float64) @ xa + ridge, xa.T.astype(np.float64) @ y).astype(np.float32)
    with _lock:
        _fits[key] = m
    return m


def latents_to_rgb(latents, matrix: np.ndarray) -> np.ndarray:
    """``B x C x h x w`` latents (torch or numpy) -> ``B x h x w x 3`` uint8 via the linear map."""
    if hasattr(latents, "detach"):
        latents = latents.detach().float().cpu().numpy()
    lat = np.asarray(latents, dtype=np.float32)
    c = lat.shape[1]
    rgb = np.einsum("bchw,cd->bhwd", lat, matrix[:c]) + matrix[c]
    return np.clip((rgb + 1.0) * 127.5, 0, 255).astype(np.uint8)


def upscale_nearest(images: np.ndarray, factor: int) -> np.ndarray:
    """Repeat pixels ``factor`` times along both axes (``... x h x w x 3``)."""
    if factor <= 1:
        return images
    return np.repeat(np.repeat(images, factor, axis=-3), factor, axis=-2)


def to_uint8_images(decoded) -> np.ndarray:
    """VAE output ``B x 3 x H x W`` in [-1, 1] (torch or numpy) -> ``B x H x W x 3`` uint8."""
    if hasattr(decoded, "detach"):
        decoded = decoded.detach().float().cpu().numpy()
    arr = np.asarray(decoded, dtype=np.float32)
    arr = np.clip((arr / 2.0 + 0.5), 0.0, 1.0)
    return np.round(arr.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)
