"""Cancel within a second, even inside one long denoising step or decode (torch backend).

A cancel request is seen between steps; at large sizes a single UNet call or VAE decode takes
minutes, and one attention call over a big image is one native operation that neither a cancel
nor Ctrl-C can interrupt. :func:`responsive` therefore, while a generation runs:

* calls ``check()`` before every sub-module of the given models runs (a forward pre-hook), so a
  cancel raises inside the step, between two layers;
* computes attention on the CPU in slices of queries when the score matrix is large, calling
  ``check()`` between slices (the result is the same up to float rounding; small attention
  calls go to the model's own processor unchanged);
* decodes large images in tiles (:func:`tiled_vae`), each one a short call with checks around it
  and its memory bounded.

``check()`` raising (``Cancelled``) or a ``KeyboardInterrupt`` from the user's Ctrl-C then
propagates out of the model; the hooks and processors are removed on the way out.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from .memory import TILE

SLICE_SCORES = 1 << 24  # attention scores computed per slice (64 MB in float32)


class SlicedAttention:
    """An attention processor that computes large CPU attention in slices of queries."""

    def __init__(self, original: Any, check: Callable[[], None], scores: int = SLICE_SCORES):
        self.original = original
        self.check = check
        self.scores = scores

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        n_q = _tokens(hidden_states)
        n_k = _tokens(context)
        batch = hidden_states.shape[0]
        if hidden_states.device.type != "cpu" or batch * attn.heads * n_q * n_k <= self.scores:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                                 *args, **kwargs)
        return self._sliced(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def _sliced(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb):
        import torch
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        ndim = hidden_states.ndim
        if ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch = hidden_states.shape[0]
        context_len = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[1]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, context_len, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(t):
            return t.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)
        n_q, n_k = query.shape[2], key.shape[2]
        step = max(16, self.scores // max(batch * attn.heads * n_k, 1))
        out = torch.empty_like(query)
        for start in range(0, n_q, step):
            self.check()
            mask = None if attention_mask is None else attention_mask[:, :, start:start + step]
            out[:, :, start:start + step] = F.scaled_dot_product_attention(
                query[:, :, start:start + step], key, value, attn_mask=mask)
        hidden_states = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def _tokens(t) -> int:
    return t.shape[2] * t.shape[3] if t.ndim == 4 else t.shape[1]


class _Ticker:
    """Reports that a long step is alive (at most once per ``every`` seconds)."""

    def __init__(self, on_activity: Callable[[float], None] | None, every: float = 1.0):
        self.on_activity = on_activity
        self.every = every
        self.t0 = self.last = time.monotonic()

    def __call__(self) -> None:
        if self.on_activity is None:
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.on_activity(now - self.t0)


@contextlib.contextmanager
def responsive(models: list[Any], check: Callable[[], None],
               on_activity: Callable[[float], None] | None = None) -> Iterator[None]:
    """While the block runs, ``check()`` is called before every layer of ``models`` (torch
    modules; None entries are skipped) and large CPU attention is sliced. ``on_activity(seconds)``
    is called about once a second while layers run (a liveness report inside a long step)."""
    tick = _Ticker(on_activity)

    def beat() -> None:
        check()
        tick()

    def hook(_module, _inputs):
        beat()

    handles = []
    processors = []
    try:
        for model in models:
            if model is None:
                continue
            if hasattr(model, "attn_processors") and hasattr(model, "set_attn_processor"):
                original = dict(model.attn_processors)
                model.set_attn_processor({name: SlicedAttention(p, beat) for name, p in original.items()})
                processors.append((model, original))
            handles += [m.register_forward_pre_hook(hook) for m in model.modules()]
        yield
    finally:
        for h in handles:
            h.remove()
        for model, original in processors:
            model.set_attn_processor(original)


@contextlib.contextmanager
def tiled_vae(vae: Any, enabled: bool) -> Iterator[None]:
    """Decode (and encode) in overlapping tiles of :data:`~.memory.TILE` pixels while the block
    runs, when ``enabled`` (large images); the VAE's own settings are restored afterwards."""
    if not enabled or vae is None or not hasattr(vae, "enable_tiling"):
        yield
        return
    names = ("use_tiling", "tile_sample_min_size", "tile_latent_min_size", "tile_overlap_factor")
    saved = {n: getattr(vae, n) for n in names if hasattr(vae, n)}
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    vae.use_tiling = True
    vae.tile_sample_min_size = TILE
    vae.tile_latent_min_size = TILE // down
    vae.tile_overlap_factor = 0.25
    try:
        yield
    finally:
        for n, v in saved.items():
            setattr(vae, n, v)
