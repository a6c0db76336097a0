"""A tiny random Stable-Diffusion-structured pipeline built from configs alone (for tests).

``build_tiny_pipeline(folder, seed)`` writes a complete diffusers ``StableDiffusionPipeline``
folder of the same structure as the bundled default model: a word-level CLIP BPE tokenizer
(vocab.json + merges.txt written here), a small ``CLIPTextModel``, a small ``AutoencoderKL`` with
8x downsampling (64x64 images -> 8x8x4 latents), a small ``UNet2DConditionModel`` with
cross-attention, and a DDIM scheduler with the Stable Diffusion config. Weights are random but
deterministic from ``seed`` and saved as safetensors. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Words the tiny tokenizer knows as whole tokens (the shape-caption vocabulary of the bundled
#: model). Any other lower-case word falls back to single letters.
WORDS = (
    "a an the and with of in on at to is background image picture photo big small large medium "
    "tiny huge top bottom left right center centre middle upper lower corner "
    "circle square triangle star ring cross disc box "
    "red green blue yellow orange purple pink white black gray grey cyan brown magenta"
).split()

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A CLIP-style BPE vocabulary: special tokens, single letters (with and without the ``</w>``
    end-of-word mark) and one token per word of :data:`WORDS`, with the merges that build each
    word from its letters left to right."""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789,.!?-'"
    tokens: list[str] = [BOS, EOS]
    tokens += list(letters)
    tokens += [c + "</w>" for c in letters]
    merges: list[str] = []
    seen_merge: set[str] = set()
    for word in WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        current = parts[0]
        for nxt in parts[1:]:
            merged = current + nxt
            rule = f"{current} {nxt}"
            if rule not in seen_merge:
                seen_merge.add(rule)
                merges.append(rule)
            if merged not in tokens:
                tokens.append(merged)
            current = merged
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return vocab, merges


def write_tiny_tokenizer(folder: str | Path) -> Path:
    """Write vocab.json, merges.txt and the tokenizer config into ``folder``; return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder


def build_tiny_components(seed: int = 0, text_dim: int = 32):
    """The pipeline components (tokenizer, text encoder, VAE, UNet, scheduler) with random
    weights drawn from ``seed``. Imports torch, diffusers and transformers."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_tokenizer(tmp)
        tokenizer = CLIPTokenizer(
            vocab_file=str(Path(tmp) / "vocab.json"),
            merges_file=str(Path(tmp) / "merges.txt"),
            model_max_length=77,
        ) if _takes_files(CLIPTokenizer) else CLIPTokenizer.from_pretrained(tmp, model_max_length=77)
    vocab, _ = tiny_vocab_and_merges()
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        text_config = CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=text_dim,
            intermediate_size=2 * text_dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=text_dim,
            bos_token_id=vocab[BOS],
            eos_token_id=vocab[EOS],
            pad_token_id=vocab[EOS],
        )
        text_encoder = CLIPTextModel(text_config).eval()
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=64,
        ).eval()
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=text_dim,
            attention_head_dim=8,
            norm_num_groups=8,
        ).eval()
    finally:
        torch.random.set_rng_state(gen_state)
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return tokenizer, text_encoder, vae, unet, scheduler


def _takes_files(cls) -> bool:
    import inspect

    return "vocab_file" in inspect.signature(cls.__init__).parameters


def build_tiny_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ``StableDiffusionPipeline`` folder at ``folder`` and return its path.
    Loadable with ``StableDiffusionPipeline.from_pretrained(folder)`` offline."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, text_encoder, vae, unet, scheduler = build_tiny_components(seed)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    # save_pretrained writes the tokenizer through its own serialiser; make sure the word-level
    # vocab files and max length are the ones documented above.
    write_tiny_tokenizer(folder / "tokenizer")
    return folder


def build_tiny_sdxl_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ``StableDiffusionXLPipeline`` folder (two CLIP text encoders, a UNet
    with the SDXL ``text_time`` added conditioning) for tests of the non-SD code path."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok_dir = write_tiny_tokenizer(folder / "_tok")
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=77)
    tokenizer_2 = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=77)
    vocab, _ = tiny_vocab_and_merges()
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        cfg = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
                   bos_token_id=vocab[BOS], eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
        text_encoder = CLIPTextModel(CLIPTextConfig(**cfg)).eval()
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg)).eval()
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 32,
            cross_attention_dim=64, norm_num_groups=8,
        ).eval()
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16),
                            layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64).eval()
    finally:
        torch.random.set_rng_state(state)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(folder, safe_serialization=True)
    import shutil

    shutil.rmtree(tok_dir, ignore_errors=True)
    return folder
