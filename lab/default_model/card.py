"""Write the model card of the bundled model from the training folder and the evaluation figures.

    python -m lab.default_model.card --train train_out/v2 --eval eval.json --out resources/models/default/README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def components(model_dir: Path) -> str:
    """One line describing the UNet, text encoder and VAE, read from the folder's configs."""
    unet = json.loads((model_dir / "unet" / "config.json").read_text())
    te = json.loads((model_dir / "text_encoder" / "config.json").read_text())
    vae = json.loads((model_dir / "vae" / "config.json").read_text())
    size = int(unet["sample_size"])
    attn = [f"{size >> i}x{size >> i}" for i, b in enumerate(unet["down_block_types"]) if b.startswith("CrossAttn")]
    chans = "/".join(str(c) for c in unet["block_out_channels"])
    vch = vae["block_out_channels"]
    return (f"UNet (block channels {chans}, cross-attention at {' and '.join(attn)}), CLIP text encoder "
            f"({te['num_hidden_layers']} layers, width {te['hidden_size']}, {te['max_position_embeddings']} tokens), "
            f"VAE ({len(vch)} levels, {min(vch)}-{max(vch)} channels)")


def schedule_text(cfg: dict) -> str:
    """The UNet's learning-rate schedule in words, with the lengths it had before an extension."""
    lengths = sorted(int(n) for n in cfg.get("unet_lr_lengths") or ())
    if not lengths:
        return f"cosine to 10% over {cfg['unet_steps']} steps"
    parts = [f"a {lengths[0]:,}-step cosine to 10%"]
    parts += [f"lengthened to {b:,} steps at step {a:,}"
              for a, b in zip(lengths, lengths[1:] + [cfg["unet_steps"]])]
    return ", ".join(parts)


def shape_text(eval_json: dict) -> str:
    """What the shape score is made of, at the most steps evaluated (from the evaluation's breakdown)."""
    steps = max(eval_json["by_steps"], key=int)
    b = eval_json["by_steps"][steps].get("shapes")
    if not b:
        return ""
    lines = [f"### What the shape score is made of ({steps} steps, all {b['objects']} asked objects)", "",
             "| asked | read right | objects |", "|---|---|---|"]
    lines += [f"| {size} | {acc:.0%} | |" for size, acc in b["by_size"].items()]
    lines += [f"| {shape} | {acc:.0%} | {b['asked'].get(shape, '')} |" for shape, acc in b["by_shape"].items()]
    if b["misread"]:
        lines += ["", f"The commonest misreadings, of {b['errors']} errors: "
                  + ", ".join(f"{k} ({n})" for k, n in b["misread"].items()) + "."]
    return "\n".join(lines) + "\n"


def batch_text(cfg: dict) -> str:
    """The UNet's batch size in words, with the smaller batches of its first steps."""
    ramp = sorted((int(until), int(b)) for until, b in cfg.get("unet_batch_ramp") or ())
    if not ramp:
        return f"batch {cfg['unet_batch']}"
    parts, start = [], 0
    for until, b in ramp:
        parts.append(f"{b} for steps {start:,}-{until - 1:,}")
        start = until
    return "batch " + ", ".join(parts) + f", {cfg['unet_batch']} after"


def ramp_flag(ramp) -> str:
    """The --unet-batch-ramp value for a ramp ('none' for none)."""
    return ",".join(f"{int(until)}:{int(b)}" for until, b in ramp) or "none"


def precision_text(precisions, devices=None) -> str:
    """The arithmetic the UNet's steps were computed in, and where, in words (a checkpoint without
    the records: float32 on the CPU)."""
    used = sorted(set(precisions or ("fp32",)))
    where = sorted(set(devices or ("cpu",)))
    gpus = [d for d in where if d != "cpu"]
    on = ("" if not gpus else f" on {', '.join(gpus)}" if "cpu" not in where
          else f", on the CPU and on {', '.join(gpus)} (the run was resumed on another device)")
    if used == ["bf16"]:
        if not gpus:
            return ("bfloat16 autocast for the forward passes on the CPU's AMX units (attention, weights, optimiser "
                    "state, EMA and losses in float32)")
        return ("bfloat16 autocast for the forward passes (on the CPU attention in float32; weights, optimiser "
                f"state, EMA and losses in float32){on}")
    if used == ["fp32"]:
        return "float32 throughout" + on
    return ("bfloat16 autocast for some steps and float32 for others (the run was resumed on a device "
            f"of the other kind; `--precision` fixes one){on}")


def training_command(cfg: dict, geometry: str, train_dir: Path, decoder_ran: bool) -> str:
    """The command line that trains this folder's recipe: the flags where it differs from the defaults."""
    from .train import TrainConfig

    base = TrainConfig.for_latent(geometry)
    flags = []
    if geometry != TrainConfig().latent:
        flags.append(f"--latent {geometry}")
    if cfg["unet_steps"] != base.unet_steps:
        flags.append(f"--unet-steps {cfg['unet_steps']}")
    if decoder_ran and cfg.get("decoder_steps") != base.decoder_steps:
        flags.append(f"--decoder-steps {cfg['decoder_steps']}")
    if not decoder_ran and base.decoder_steps:
        flags.append("--decoder-steps 0")
    if list(cfg.get("unet_lr_lengths") or ()) != list(base.unet_lr_lengths):
        flags.append("--unet-lr-lengths " + ",".join(str(n) for n in cfg["unet_lr_lengths"]))
    ramp = tuple(tuple(int(x) for x in r) for r in cfg.get("unet_batch_ramp") or ())  # lists in the JSON
    if ramp != tuple(base.unet_batch_ramp):
        flags.append("--unet-batch-ramp " + ramp_flag(ramp))
    channels = tuple(int(c) for c in cfg.get("unet_channels") or ())
    if channels != tuple(base.unet_channels):
        flags.append("--unet-channels " + (",".join(map(str, channels)) or "default"))
    # folders from before the setting trained in float32
    if cfg.get("precision", "fp32") != base.precision:
        flags.append(f"--precision {cfg.get('precision', 'fp32')}")
    if cfg["num_images"] != base.num_images:
        flags.append(f"--num-images {cfg['num_images']}")
    return " ".join(["implicit-studio train-default-model --out", train_dir.as_posix()] + flags)


def render_card(train_dir: Path, eval_json: dict, model_dir: Path) -> str:
    cfg = json.loads((train_dir / "train_config.json").read_text())
    timings = json.loads((train_dir / "timings.json").read_text())
    meta = json.loads((train_dir / "unet_ckpt.json").read_text())
    losses = meta["losses"]
    if meta.get("seconds"):  # the UNet's compute time over every process that ran it (train.py)
        timings["unet"] = max(timings.get("unet", 0.0), float(meta["seconds"]))
    if not cfg.get("decoder_steps"):
        timings.pop("decoder", None)  # the recipe has no decoder stage; the stage only said so
    total_min = sum(timings.values()) / 60
    rows = []
    for steps, r in sorted(eval_json["by_steps"].items(), key=lambda kv: int(kv[0])):
        rows.append(
            f"| {steps} | {r['colour']:.1%} | {r['shape']:.1%} | {r['position']:.1%} | {r['count']:.1%} "
            f"| {r['size']:.1%} | {r['background']:.1%} | {r['sharpness_ratio']:.2f} |"
        )
    speed = eval_json.get("speed", {})
    speed_line = (
        f"One 64x64 image at {speed.get('steps', 25)} DDIM steps, guidance 5, CPU, median of 5, all in one process:\n\n"
        f"| Path | Seconds | Ratio |\n|---|---:|---:|\n"
        f"| plain diffusers `StableDiffusionPipeline` | {speed.get('diffusers_s', float('nan')):.3f} | 1.00 |\n"
        f"| studio, torch backend (preview + trajectory) | {speed.get('torch_s', float('nan')):.3f} | {speed.get('studio_over_diffusers', float('nan')):.2f} |\n"
        f"| studio, ONNX Runtime backend (CPUExecutionProvider) | {speed.get('onnx_s', float('nan')):.3f} | {speed.get('onnx_s', float('nan')) / speed.get('diffusers_s', float('nan')):.2f} |\n"
    )
    k = max(1, len(losses) // 20)
    r25 = eval_json["by_steps"].get("25")
    floors_text = ""
    if r25:
        verdicts = [f"{name} {r25[name]:.1%} ({'met' if r25[name] >= floor else 'missed'})"
                    for name, floor in (("colour", 0.9), ("shape", 0.8), ("position", 0.8))]
        floors_text = "These weights: " + ", ".join(verdicts) + "."
    notes_file = train_dir / "card_notes.md"
    notes = ("\n" + notes_file.read_text().strip() + "\n") if notes_file.exists() else ""
    analysis_file = train_dir / "card_analysis.md"  # findings about the evaluation, after its table
    analysis = ("\n" + analysis_file.read_text().strip() + "\n") if analysis_file.exists() else ""
    from .train import STUDIO_SETTINGS, _latent_of

    h = STUDIO_SETTINGS["h-edit"]["random"]
    tools_text = (f"`implicit_studio.json` beside `model_index.json` holds the settings the studio's tools use with "
                  f"this model where a setting is left at its default: h-Edit (random inversion) with reconstruction "
                  f"weight {h['w_orig']:g}, source weight {h['w_src_edit']:g} and target weight {h['w_edit']:g} inside "
                  f"the editing term, instead of the paper's 1 / 5 / 7.5, which on this model amplify the source "
                  f"prompt's guidance into distorted shapes and shifted backgrounds "
                  f"(`python -m lab.hedit_eval --weights paper` vs `--weights model`; figures in "
                  f"benchmarks/RESULTS.md). Other tools and other models keep their own defaults.")
    high_since = meta.get("high_noise_since") or 0
    if high_since:
        timestep_text = (
            f"With uniform timesteps alone (this run's first {high_since:,} steps) the model learned colours and\n"
            "  backgrounds but placed objects wherever the starting noise suggested: the noisiest steps, where\n"
            "  only the prompt can say where things go, are 2.5% of uniform draws, and 400 steps on them alone\n"
            f"  taught \"top left\" to the same weights. This run switched to the mix at step {high_since:,} and its\n"
            f"  length was extended to {cfg['unet_steps']:,} steps at that point (the cosine learning-rate schedule\n"
            "  follows the new length).")
    else:
        timestep_text = (
            "The mix is there from the first step: with uniform timesteps alone an earlier run learned colours\n"
            "  and backgrounds but placed objects wherever the starting noise suggested, because the noisiest\n"
            "  steps, where only the prompt can say where things go, are 2.5% of uniform draws.")
    geometry = _latent_of(train_dir)
    decoder_ran = "decoder" in timings  # dropped above when the recipe has no decoder steps
    if decoder_ran:
        decoder_text = (f" Then the decoder alone: {cfg['decoder_steps']} steps (batch {cfg['decoder_batch']}) with an\n"
                        f"  edge term, on latents with up to {cfg['decoder_latent_noise']:g} (in the UNet's units) of added noise, "
                        "for crisp corners\n  that forgive the diffusion model's small errors; the encoder, and so the "
                        "latents, stay as they were.")
    else:
        decoder_text = " No separate decoder stage: the autoencoder is used as the VAE stage leaves it."
    command = training_command(cfg, geometry, train_dir, decoder_ran)
    shape_block = shape_text(eval_json)
    shape_block = "\n" + shape_block if shape_block else ""
    return f"""# Implicit Studio default model (`shapes-sd-tiny`)

A small text-to-image latent diffusion model in the exact layout of a Stable Diffusion 1.x
checkpoint (diffusers `StableDiffusionPipeline`: CLIP BPE tokenizer, `CLIPTextModel`,
`AutoencoderKL`, `UNet2DConditionModel`, DDIM scheduler; weights in safetensors). It was trained
by this project from random initialisation on procedurally generated pictures of flat shapes, so
that the studio can generate, edit and inpaint the moment it opens, on a laptop CPU, with no
download. It draws one or two shapes (circle, square, triangle, star, ring, cross) in 8 colours,
3 sizes, at 9 positions of a 3x3 grid, on 11 background colours. It knows nothing else.

- Native resolution 64x64; latents {geometry} (VAE scaling factor set from the latent statistics).
- Size on disk: {_mb(model_dir):.1f} MB (float32).
- Components: {components(model_dir)}; DDIM scheduler, cosine betas, v-prediction, trailing timesteps.

## Training (reproducible)

```
{command}
implicit-studio evaluate-default-model --model {train_dir.as_posix()}/pipeline --json eval.json
python -m lab.default_model.card --train {train_dir.as_posix()} --eval eval.json --out resources/models/default/README.md
```

(`python -m lab.default_model.train --out DIR` is the same command.) It checkpoints every
{cfg['checkpoint_every']} steps and resumes when run again on the same folder.

- Data: `lab/default_model/shapes.py`, {cfg['num_images']:,} images from seeds
  0..{cfg['num_images'] - 1}. Captions are composed afresh at every training step from three clauses (the
  object, its position, the background), each in several phrasings, in any order ("a small red star
  in the top left on a blue background", "blue background; at the center, the big green ring", two-object
  captions ...), so each picture is seen in many wordings; the evaluation wording is never produced.
- VAE: {cfg['vae_crop_steps']} steps on 32x32 crops centred near objects (batch {cfg['vae_batch']}), then {cfg['vae_full_steps']}
  steps on full images (batch {cfg['vae_full_batch']}); L1 + L2 with object pixels weighted 10x, 1e-4 KL; deterministic
  latents (posterior mean).{decoder_text}
- UNet + text encoder, trained together: {meta['step']} steps, {batch_text(cfg)}, AdamW lr {cfg['unet_lr']}
  (warm-up {cfg['warmup']}, {schedule_text(cfg)}), v-prediction (as Stable Diffusion 2.x) on a
  cosine noise schedule that ends at pure noise (`squaredcos_cap_v2`, sampled with "trailing" timesteps
  from t=999), clean-image error weighted clamp(SNR, 1, {cfg['min_snr_gamma']:g}), {cfg['cond_drop']:.0%} empty captions for
  classifier-free guidance, EMA {cfg['ema_decay']} (the shipped weights). An early version of this model used
  Stable Diffusion's scaled_linear betas, whose last step keeps 7% of the latent: on 8x8 latents the
  model learned to read the layout from that leak, not from the prompt (position 6.8%).
- Arithmetic: {precision_text(meta.get('precisions'), meta.get('devices'))}; `--precision auto` (the default) takes
  bfloat16 where the CPU has AMX or the GPU computes bfloat16 and float32 elsewhere.
- Timesteps: {cfg.get('high_noise_frac', 0):.0%} of every batch from the noisiest end (t >= {cfg.get('high_noise_from', 0)}), the rest uniform.
  {timestep_text}
- Loss (unweighted MSE of the v-objective, mean of {k} steps): start {sum(losses[:k]) / k:.4f}, end {sum(losses[-k:]) / k:.4f}.
- Time on this machine (2-core CPU): """ + ", ".join(
        f"{s} {t / 60:.1f} min" for s, t in timings.items()
    ) + f"""; **total {total_min:.0f} min** (the sum of the stages' own times).
{notes}
## Evaluation

`implicit-studio evaluate-default-model --json eval.json` generates {eval_json['prompts']} held-out prompts x
{len(eval_json['seeds'])} seeds (scenes from seeds 10,000,000 up, in a wording no training caption uses:
"on a gray background, in the top left, a small red star") with DDIM and guidance {eval_json['guidance']:g},
and reads every image back with the deterministic, non-learned detector in
`lab/default_model/detector.py` (palette colour clustering, connected components, shape
measures against analytic prototypes; it scores 100% on clean renders). Accuracy is per object:
colour = an object of the asked colour exists; position = it sits in the asked grid cell; shape
and size are judged on that object (or the nearest one); count = the image has exactly the asked
number of objects. Sharpness is the mean gradient magnitude relative to clean renders.

| DDIM steps | colour | shape | position | count | size | background | sharpness ratio |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Floors asked of this model at 25 steps: colour >= 90%, shape >= 80%, position >= 80%. {floors_text}
{shape_block}{analysis}
## Settings for the studio's tools

{tools_text}

## Speed

{speed_line}

## Limits

It knows only the vocabulary of its captions (other words are read letter by letter and
ignored in effect), only 64x64, only flat shapes. It is a stand-in that exercises every code path
of a real Stable Diffusion checkpoint, not an artistic model.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--eval", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    model = a.model or a.out.parent
    a.out.write_text(render_card(a.train, json.loads(a.eval.read_text()), model))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
