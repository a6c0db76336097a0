"""Differentiable rewards for reward-guided h-Edit, and the registry plugins add theirs to.

A reward scores a batch of images (torch tensor in [-1, 1], shape Bx3xHxW) and returns a tensor
of shape [B]; higher is better. h-Edit takes its gradient with respect to the latent through the
predicted clean image and the VAE decoder (never through the UNet).

Spec strings (command line ``--reward``): ``colour:blue``, ``colour:#3366ff``, ``colour:0.2,0.4,1``,
``palette:red,yellow``, ``style:/path/to/reference.png``; a plugin's reward by its id
(``my-reward`` or ``my-reward:argument``). No Qt here.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Callable, Optional

import torch

#: Named colours understood by ``colour:NAME`` (RGB in [0, 1]); the shape generator's names included.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.75, 0.2),
    "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.9, 0.1),
    "orange": (1.0, 0.55, 0.05),
    "purple": (0.55, 0.15, 0.75),
    "magenta": (0.9, 0.1, 0.8),
    "pink": (1.0, 0.6, 0.75),
    "cyan": (0.1, 0.85, 0.9),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "grey": (0.5, 0.5, 0.5),
    "gray": (0.5, 0.5, 0.5),
    "brown": (0.55, 0.3, 0.1),
}

Score = Callable[[torch.Tensor], torch.Tensor]
#: factory(argument, region, prompt) -> score. ``region`` is None or a 1x1xHxW float mask in [0, 1]
#: at image resolution; ``argument`` the text after the colon ('' if none).
Factory = Callable[[str, Optional[torch.Tensor], str], Score]


@dataclass(frozen=True)
class RewardEntry:
    name: str
    factory: Factory
    description: str = ""


_REGISTRY: dict[str, RewardEntry] = {}
_LOCK = threading.Lock()


def register_reward(name: str, factory: Factory, description: str = "", replace: bool = False) -> None:
    """Add a reward under ``name`` (lower-case, kebab-case)."""
    if not re.match(r"^[a-z0-9]+(?:-[a-z0-9]+)*$", name or ""):
        raise ValueError(f"reward name {name!r} must be kebab-case, e.g. 'my-reward'")
    with _LOCK:
        if name in _REGISTRY and not replace:
            raise ValueError(f"a reward called {name!r} is already registered")
        _REGISTRY[name] = RewardEntry(name, factory, description)


def available_rewards() -> dict[str, str]:
    return {k: v.description for k, v in sorted(_REGISTRY.items())}


def parse_colour(text: str) -> tuple[float, float, float]:
    t = text.strip().lower()
    if t in COLOURS:
        return COLOURS[t]
    m = re.fullmatch(r"#?([0-9a-f]{6})", t)
    if m:
        v = m.group(1)
        return tuple(int(v[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
    parts = [p for p in re.split(r"[,\s]+", t) if p]
    if len(parts) == 3:
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            vals = []
        if vals:
            if max(vals) > 1.0:
                vals = [v / 255.0 for v in vals]
            if all(0.0 <= v <= 1.0 for v in vals):
                return tuple(vals)  # type: ignore[return-value]
    raise ValueError(
        f"unknown colour {text!r}: use a name ({', '.join(sorted(COLOURS))}), #rrggbb, or three numbers r,g,b"
    )


def _weights(region: Optional[torch.Tensor], img: torch.Tensor) -> torch.Tensor:
    if region is None:
        return torch.ones_like(img[:, :1])
    r = region.to(img.device, img.dtype)
    if r.shape[-2:] != img.shape[-2:]:
        r = torch.nn.functional.interpolate(r, size=img.shape[-2:], mode="bilinear", align_corners=False)
    return r.expand(img.shape[0], 1, *img.shape[-2:])


def palette_reward(colours: list[tuple[float, float, float]], region: Optional[torch.Tensor]) -> Score:
    """Minus the mean squared RGB distance of each pixel (inside the region) to its nearest colour."""
    if not colours:
        raise ValueError("a palette reward needs at least one colour")

    def score(img: torch.Tensor) -> torch.Tensor:
        x = (img.float() + 1.0) / 2.0
        pal = torch.tensor(colours, device=x.device, dtype=x.dtype)  # Kx3
        d = ((x[:, None] - pal[None, :, :, None, None]) ** 2).sum(2)  # BxKxHxW
        dmin = d.min(1, keepdim=True).values
        w = _weights(region, x)
        return -(dmin * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-6)

    return score


def _style_stats(x: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
    """Colour and texture statistics: weighted channel means, covariance (3x3) of colours and of
    horizontal/vertical differences, at full and half resolution."""
    stats = []
    for level in range(2):
        if level:
            x = torch.nn.functional.avg_pool2d(x, 2)
            w = torch.nn.functional.avg_pool2d(w, 2)
        n = w.flatten(1).sum(1).clamp_min(1e-6)
        mean = (x * w).flatten(2).sum(2) / n[:, None]
        xc = (x - mean[:, :, None, None]) * w.sqrt()
        f = xc.flatten(2)
        cov = f @ f.transpose(1, 2) / n[:, None, None]
        dx = (x[..., :, 1:] - x[..., :, :-1]) * w[..., :, 1:].sqrt()
        dy = (x[..., 1:, :] - x[..., :-1, :]) * w[..., 1:, :].sqrt()
        gx = dx.flatten(2) @ dx.flatten(2).transpose(1, 2) / n[:, None, None]
        gy = dy.flatten(2) @ dy.flatten(2).transpose(1, 2) / n[:, None, None]
        stats += [mean, cov.flatten(1), gx.flatten(1), gy.flatten(1)]
    return stats


def style_reward(reference: torch.Tensor, region: Optional[torch.Tensor]) -> Score:
    """Minus the squared distance between the style statistics of the image (inside the region)
    and those of a reference image (1x3xhxw in [-1, 1])."""
    ref = (reference.float() + 1.0) / 2.0
    ref_stats = [s.detach() for s in _style_stats(ref, torch.ones_like(ref[:, :1]))]

    def score(img: torch.Tensor) -> torch.Tensor:
        x = (img.float() + 1.0) / 2.0
        stats = _style_stats(x, _weights(region, x))
        total = 0.0
        for s, r in zip(stats, ref_stats):
            total = total + ((s - r.to(s.device)) ** 2).sum(1)
        return -total

    return score


def _colour_factory(arg: str, region, prompt: str) -> Score:
    if not arg:
        raise ValueError("the colour reward needs a colour, e.g. colour:blue")
    return palette_reward([parse_colour(arg)], region)


def _palette_factory(arg: str, region, prompt: str) -> Score:
    sep = ";" if ";" in arg else ","
    names = [a for a in arg.split(sep) if a.strip()] if arg else []
    if not names:
        raise ValueError("the palette reward needs colours, e.g. palette:red,yellow")
    return palette_reward([parse_colour(n) for n in names], region)


def _style_factory(arg: str, region, prompt: str) -> Score:
    if not arg:
        raise ValueError("the style reward needs a reference image file, e.g. style:/path/ref.png")
    from plugins.diffusion_common.editing import image_to_tensor
    from plugins.diffusion_common.images import load_image_file

    ref = load_image_file(arg, "style reference image")
    return style_reward(image_to_tensor(ref), region)


register_reward("colour", _colour_factory, "pull a region toward one colour (colour:blue, colour:#3366ff)")
register_reward("color", _colour_factory, "same as colour")
register_reward("palette", _palette_factory, "pull each pixel toward its nearest palette colour (palette:red,yellow)")
register_reward("style", _style_factory, "match colour/texture statistics of a reference image (style:ref.png)")


def make_reward(spec: str, region: Optional[torch.Tensor] = None, prompt: str = "") -> Score:
    """Build a reward from its spec string (see the module docstring)."""
    if not spec or not spec.strip():
        raise ValueError("empty reward specification")
    name, _, arg = spec.strip().partition(":")
    name = name.strip().lower()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown reward {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return entry.factory(arg.strip(), region, prompt)
