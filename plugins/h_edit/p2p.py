"""Prompt-to-Prompt attention control for h-Edit, through diffusers attention processors.

While a controlled UNet call runs, the controller knows which batch rows form (source, edit)
pairs: the source row is the original image's latent with the source prompt, the edit row the
edited latent with the target prompt. In the edit row

- cross-attention maps are replaced by the source row's maps for the tokens the two prompts
  share (token alignment by longest matching blocks; with equal token counts every position is
  taken over, P2P's "replace"; otherwise new words keep their own maps, P2P's "refine"),
  during the first ``cross_replace`` fraction of the steps;
- self-attention maps are replaced by the source row's maps (only in layers with at most 16x16
  queries, as in P2P) during the first ``self_replace`` fraction of the steps.

Rows not named in a pair are left alone (e.g. the unconditional and the uncontrolled source
predictions evaluated in the same batch). No Qt here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Sequence

import torch


def align_tokens(src_ids: Sequence[int], tar_ids: Sequence[int], length: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Map target token positions to source positions.

    Returns (mapper[length] long, alpha[length] float, equal_length). ``alpha[j] = 1`` when target
    position j takes the source map at ``mapper[j]``. Padding positions map to padding positions.
    """
    src, tar = list(src_ids), list(tar_ids)
    mapper = torch.arange(length, dtype=torch.long)
    alpha = torch.zeros(length)
    if len(src) == len(tar):
        alpha[:] = 1.0
        return mapper, alpha, True
    matcher = difflib.SequenceMatcher(None, src, tar, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            if b + k < length and a + k < length:
                mapper[b + k] = a + k
                alpha[b + k] = 1.0
    # padding after the target's end token follows the source's padding
    for j in range(len(tar), length):
        src_j = len(src) + (j - len(tar))
        if src_j < length:
            mapper[j] = src_j
            alpha[j] = 1.0
    return mapper, alpha, False


def prompts_alignable(src_ids: Sequence[int], tar_ids: Sequence[int]) -> bool:
    """True when the prompts differ but share at least one word token (besides start/end tokens)."""
    src, tar = list(src_ids), list(tar_ids)
    if src == tar:
        return False
    inner_s, inner_t = src[1:-1], tar[1:-1]
    if not inner_s or not inner_t:
        return False
    if len(src) == len(tar):
        return True
    matcher = difflib.SequenceMatcher(None, inner_s, inner_t, autojunk=False)
    return sum(size for _, _, size in matcher.get_matching_blocks()) > 0


@dataclass
class AttentionController:
    mapper: torch.Tensor
    alpha: torch.Tensor
    cross_replace_steps: int
    self_replace_steps: int
    max_self_queries: int = 16 * 16
    # per-call state
    pairs: list[tuple[int, int]] = field(default_factory=list)
    step: int = 0
    replaced_cross: int = 0
    replaced_self: int = 0

    def active(self) -> bool:
        return bool(self.pairs) and (self.step < self.cross_replace_steps or self.step < self.self_replace_steps)

    def edit(self, probs: torch.Tensor, batch: int, heads: int, is_cross: bool) -> torch.Tensor:
        if not self.pairs:
            return probs
        if is_cross and self.step >= self.cross_replace_steps:
            return probs
        if not is_cross and (self.step >= self.self_replace_steps or probs.shape[1] > self.max_self_queries):
            return probs
        p = probs.view(batch, heads, probs.shape[1], probs.shape[2]).clone()
        for s, d in self.pairs:
            if is_cross:
                k = p.shape[-1]
                mapper = self.mapper[:k].to(p.device)
                alpha = self.alpha[:k].to(p.device, p.dtype)
                p[d] = p[s][..., mapper] * alpha + p[d] * (1 - alpha)
                self.replaced_cross += 1
            else:
                p[d] = p[s]
                self.replaced_self += 1
        return p.view_as(probs)


class ControlledAttnProcessor:
    """Plain (non-fused) attention that lets the controller edit the attention probabilities."""

    def __init__(self, controller: AttentionController):
        self.controller = controller

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch, seq_len, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)
        probs = self.controller.edit(probs, batch, attn.heads, is_cross)
        out = torch.bmm(probs, value)
        out = attn.batch_to_head_dim(out)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class attention_control:
    """Context manager installing :class:`ControlledAttnProcessor` on every attention layer of a
    UNet and restoring the previous processors afterwards."""

    def __init__(self, unet, controller: AttentionController):
        self.unet = unet
        self.controller = controller
        self._saved = None

    def __enter__(self):
        self._saved = dict(self.unet.attn_processors)
        self.unet.set_attn_processor(ControlledAttnProcessor(self.controller))
        return self.controller

    def __exit__(self, *exc):
        self.unet.set_attn_processor(self._saved)
        return False
