"""Build the default model's components from configs alone (no downloads).

The model is a standard diffusers ``StableDiffusionPipeline`` folder so that every plugin takes
the code path a real Stable Diffusion checkpoint takes: a CLIP BPE tokenizer (vocab.json +
merges.txt), a small ``CLIPTextModel``, a small ``AutoencoderKL`` (64x64x3 <-> 16x16x4, or 8x8x16), a small
``UNet2DConditionModel`` and a DDIM scheduler.
"""

from __future__ import annotations

import json
from pathlib import Path

from .shapes import vocabulary

MAX_TOKENS = 32  # captions are short; CLIP's 77 would only waste compute
TEXT_HIDDEN = 128
IMAGE_SIZE = 64
# Latent geometries the recipe can train (same 12x compression): the shipped model's 16x16x4, where a
# small shape spans 3x3 latent pixels, and the previous model's 8x8x16, where it spans one and a half
# (the 16x16 UNet step costs 1.65x on this CPU, measured; attention at 8x8 and 4x4 only).
LATENTS = {"8x8x16": (8, 16), "16x16x4": (16, 4)}


def latent_geometry(name: str) -> tuple[int, int]:
    """(size, channels) of a latent geometry name such as "8x8x16"."""
    if name not in LATENTS:
        raise ValueError(f"unknown latent geometry {name!r}; choose one of {', '.join(LATENTS)}")
    return LATENTS[name]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE: repeatedly merge the adjacent pair with the lowest rank."""
    pieces = list(pieces)
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        best, i = min(pairs)
        if best == 1 << 30:
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def tokenizer_files(words: list[str] | None = None) -> tuple[dict[str, int], list[str]]:
    """A CLIP-format vocabulary in which every caption word is one token.

    Other text still tokenizes (byte-level characters), so any prompt is accepted.
    """
    import re

    byte_chars = list(_bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    words = words if words is not None else vocabulary()
    # CLIP's pre-tokenizer splits letters runs and punctuation runs apart.
    units = sorted({u for w in words for u in re.findall(r"[a-z]+|[^\sa-z]+", w)})
    for unit in units:
        start = list(unit[:-1]) + [unit[-1] + "</w>"]
        while True:
            pieces = _bpe(start, ranks)
            if len(pieces) == 1:
                break
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            if pair[0] + pair[1] not in vocab_list:
                vocab_list.append(pair[0] + pair[1])
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    return vocab, [f"{a} {b}" for a, b in merges]


def write_tokenizer(folder: Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tokenizer_files()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    cfg = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MAX_TOKENS,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2)
    )


def load_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS)


def text_encoder_config(vocab_size: int, eos_id: int, bos_id: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 4,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_HIDDEN,
        hidden_act="quick_gelu",
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )


def make_vae(latent: str = "16x16x4"):
    from diffusers import AutoencoderKL

    size, channels = latent_geometry(latent)
    levels = {8: (32, 64, 64, 64), 16: (32, 64, 64)}[size]  # one level per halving, plus one
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(levels),
        up_block_types=("UpDecoderBlock2D",) * len(levels),
        block_out_channels=levels,
        layers_per_block=1,
        latent_channels=channels,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,  # set from the latent statistics after the VAE is trained
    )


# The UNet's block widths per latent geometry when a training folder does not say (folders made before
# the widths were a setting). The recipe's own widths are TrainConfig.unet_channels.
UNET_CHANNELS = {8: (96, 128, 128), 16: (64, 128, 128)}


def _norm_groups(channels) -> int:
    """The most GroupNorm groups, up to Stable Diffusion's 32, that divide every block width."""
    return next(g for g in (32, 16, 8, 4, 2, 1) if all(c % g == 0 for c in channels))


def make_unet(latent: str = "16x16x4", channels=None):
    """The UNet for a latent geometry; ``channels`` its three block widths (default UNET_CHANNELS)."""
    from diffusers import UNet2DConditionModel

    size, latent_channels = latent_geometry(latent)
    widths = tuple(int(c) for c in (channels or UNET_CHANNELS[size]))
    if len(widths) != 3 or min(widths) < 8 or any(c % 8 for c in widths):
        raise ValueError(f"the UNet takes three block widths, each a multiple of 8, not {widths}")
    if size == 8:  # cross-attention at 8x8 and 4x4
        down = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
        up = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    else:  # 16x16: plain convolutions at full size, cross-attention at 8x8 and 4x4 as above
        down = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
        up = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    return UNet2DConditionModel(
        sample_size=size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=widths,
        layers_per_block=1,
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=_norm_groups(widths),
    )


def make_text_encoder(tokenizer):
    from transformers import CLIPTextModel

    cfg = text_encoder_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id)
    return CLIPTextModel(cfg)


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        # The cosine schedule ends at (almost) zero signal. With Stable Diffusion's scaled_linear
        # betas the last step keeps sqrt(alpha_bar) = 0.07 of the latent; on 8x8 latents whose
        # objects reach 13 standard deviations, the model learned to read the layout from that leak
        # instead of from the prompt, and placed objects wherever the starting noise suggested.
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # (ignored by "trailing" spacing; 1 keeps diffusers from warning)
        timestep_spacing="trailing",  # sampling starts at t=999, the pure-noise end the model learned
        # v-prediction, as Stable Diffusion 2.x: with 8x8 latents an epsilon model's clean-image
        # estimate at high noise is amplified many times by 1/sqrt(alpha_bar) and sampling fell apart.
        prediction_type="v_prediction",
    )
