"""One-step drawing with a distilled student (the ``distill`` tool's output, or the bundled model's
student ``default-1step``): a prompt and a seed in, a picture out, as fast as the model allows.

Meant for live use (a redraw on every keystroke or brush stroke): the model and its backend are
loaded once, prompt embeddings are remembered, and one call is one text encoding (skipped when the
prompt was seen), one UNet evaluation and one VAE decode. With an init image and a mask it inpaints:
the generator's picture is kept inside the mask and the init image outside it (blended in latent
space, then composited in pixels so that the unmasked pixels stay exactly the init image's).

The picture for (prompt, seed) is the one the text-to-image tool draws with the same model, seed,
one step and no guidance: the noise is drawn the same way and the step is the student's scheduler's
(one DDIM step from the last timestep that returns the clean prediction).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .errors import ModelError


class OneStepGenerator:
    """``OneStepGenerator(model)(prompt, seed)`` -> ``H x W x 3`` uint8.

    ``backend`` is ``"torch"`` (on ``device``/``dtype``) or ``"onnx"`` (ONNX Runtime, exported once
    and cached by the model's hash). Calls are serialised (one at a time per generator).
    """

    def __init__(self, model: str = "default-1step", *, backend: str = "torch", device: str = "cpu",
                 dtype: str = "float32", providers=("CPUExecutionProvider",), threads: int = 0,
                 cache_prompts: int = 64):
        from .backends import TorchSDBackend, ort_backend_for
        from .models import load_pipeline
        from .schedulers import make_scheduler

        if backend not in ("torch", "onnx"):
            raise ModelError(f"unknown backend {backend!r}; use torch or onnx")
        if backend == "onnx":
            device, dtype = "cpu", "float32"
        loaded = load_pipeline(model, device=device, dtype=dtype)
        if loaded.info.family != "sd":
            raise ModelError(f"{loaded.info.arch_name} models are not one-step SD-structured students")
        self.backend = TorchSDBackend(loaded) if backend == "torch" else \
            ort_backend_for(loaded, providers=providers, threads=threads)
        self.model_hash = loaded.hash
        self.model_path = loaded.info.path
        self.scheduler = make_scheduler("default", self.backend.scheduler_config)
        self.scheduler.set_timesteps(1)
        self.timestep = self.scheduler.timesteps[0]
        self.size = int(self.backend.native_size)
        self._prompts: OrderedDict[str, Any] = OrderedDict()
        self._cache_prompts = int(cache_prompts)
        self._lock = threading.Lock()

    def embedding(self, prompt: str):
        """The prompt's embedding (remembered for the last ``cache_prompts`` prompts)."""
        hit = self._prompts.get(prompt)
        if hit is not None:
            self._prompts.move_to_end(prompt)
            return hit
        emb, _ = self.backend.encode_prompt([prompt])
        self._prompts[prompt] = emb
        while len(self._prompts) > self._cache_prompts:
            self._prompts.popitem(last=False)
        return emb

    def noise(self, seed: int, size: int | None = None):
        """The starting noise of ``seed`` (the same draw as the text-to-image tool's)."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        size = size or self.size
        f = self.backend.vae_scale_factor
        shape = (1, self.backend.latent_channels, size // f, size // f)
        gen = [torch.Generator("cpu").manual_seed(int(seed))]
        return randn_tensor(shape, generator=gen, device=torch.device(self.backend.device), dtype=torch.float32)

    def latents(self, prompt: str, seed: int, size: int | None = None):
        """The student's clean latents for ``prompt`` and ``seed``."""
        z = self.noise(seed, size) * self.scheduler.init_noise_sigma
        x_in = self.scheduler.scale_model_input(z, self.timestep)
        out = self.backend.unet(x_in, self.timestep, self.embedding(prompt)).to(z.dtype)
        return self.scheduler.step(out, self.timestep, z, return_dict=False)[0]

    def __call__(self, prompt: str, seed: int, init_image: Any = None, mask: Any = None) -> np.ndarray:
        """Draw ``prompt`` from ``seed``; with ``init_image`` and ``mask`` (``H x W``, selected where
        true or > 127) redraw only the masked region of ``init_image``."""
        import torch

        from .preview import to_uint8_images

        with self._lock, torch.inference_mode():
            if (init_image is None) != (mask is None):
                raise ModelError("inpainting needs both an init image and a mask")
            if init_image is None:
                return to_uint8_images(self.backend.decode(self.latents(prompt, seed)))[0]
            init = np.asarray(init_image)[..., :3].astype(np.uint8)
            h, w = init.shape[:2]
            f = self.backend.vae_scale_factor
            if h % f or w % f or h != w:
                raise ModelError(f"the init image must be square with sides a multiple of {f}, got {w}x{h}")
            keep = _mask_array(mask, (h, w))
            x = torch.from_numpy(init.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
            init_lat = self.backend.encode(x.to(self.backend.device)).float()
            m = torch.from_numpy(keep.astype(np.float32))[None, None]
            m_lat = torch.nn.functional.adaptive_max_pool2d(m, init_lat.shape[-2:]).to(init_lat.device)
            lat = self.latents(prompt, seed, size=h)
            drawn = to_uint8_images(self.backend.decode(m_lat * lat + (1 - m_lat) * init_lat))[0]
            return np.where(keep[..., None], drawn, init)


def _mask_array(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.shape != shape:
        raise ModelError(f"the mask is {arr.shape[1]}x{arr.shape[0]}, the image {shape[1]}x{shape[0]}")
    return arr > 127 if arr.dtype != np.bool_ else arr


# ---------------------------------------------------------------------------------------------
# the one-step route of the editing tools (inpainting, h-Edit): live redraws and their kept runs
# ---------------------------------------------------------------------------------------------

#: The bundled model's student, and the step counts of the default model it draws instead.
STUDENT_NAME = "default-1step"
STUDENT_STEPS = 4


def is_student(folder: Any) -> bool:
    """Whether ``folder`` is a one-step student (the distill tool's output: its
    ``implicit_studio.json`` records how it was distilled)."""
    import json
    from pathlib import Path

    try:
        data = json.loads((Path(folder) / "implicit_studio.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("distilled"), dict)


def student_route(model_ref: Any, steps: int, resolve) -> Any:
    """The folder of the one-step student that draws ``model_ref`` at ``steps`` steps, or None:
    the model itself when it is a student, the bundled model's student for 1-4 steps of
    ``"default"`` (as text-to-image does). ``resolve`` is the run context's ``resolve_model``."""
    ref = str(model_ref or "default").strip()
    if ref == "default":
        if int(steps) > STUDENT_STEPS:
            return None
        try:
            folder = resolve(STUDENT_NAME)
        except Exception:  # noqa: BLE001 - no student shipped: the teacher draws
            return None
        return folder if is_student(folder) else None
    folder = resolve(ref)
    return folder if is_student(folder) else None


_generators: OrderedDict[tuple, OneStepGenerator] = OrderedDict()
_generators_lock = threading.Lock()
GENERATORS_KEPT = 2


def generator_for(folder: Any, device: str = "cpu", dtype: str = "float32") -> OneStepGenerator:
    """The :class:`OneStepGenerator` of ``folder`` on ``device``, made once and kept (the last
    ``GENERATORS_KEPT``) while the folder is unchanged."""
    from app.api import model_fingerprint

    key = (str(folder), model_fingerprint(folder), device, dtype)
    with _generators_lock:
        gen = _generators.get(key)
        if gen is None:
            gen = OneStepGenerator(str(folder), device=device, dtype=dtype)
            _generators[key] = gen
            while len(_generators) > GENERATORS_KEPT:
                _generators.popitem(last=False)
        _generators.move_to_end(key)
        return gen


def redraw_region(folder: Any, prompt: str, seed: int, image: Any, mask: Any = None, *, device: str = "cpu",
                  dtype: str = "float32", resize_mask: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Redraw the region ``mask`` selects (all of the picture when ``mask`` is None) of ``image``
    with the student in ``folder``, from ``prompt`` and ``seed``, in one step. Returns the picture
    and the mask used (uint8, 255 inside). ``ModelError`` with a sentence when the image or the mask
    does not fit."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float64), 0, 1) * 255).round().astype(np.uint8) if img.max() <= 1.0 \
            else np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    if mask is None:
        m = np.full((h, w), 255, np.uint8)
    else:
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != (h, w):
            if not resize_mask:
                raise ModelError(f"the mask is {m.shape[1]}x{m.shape[0]} and the image {w}x{h}; paint the mask "
                                 f"on this image or turn on resize_mask")
            from PIL import Image

            m = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((w, h), Image.NEAREST))
        m = np.where(m > 127, 255, 0).astype(np.uint8) if m.dtype != np.bool_ else np.where(m, 255, 0).astype(np.uint8)
    gen = generator_for(folder, device, dtype)
    return gen(prompt, int(seed), init_image=img, mask=m), m
