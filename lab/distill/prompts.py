"""Training prompts for distilling the bundled model: captions of training scenes, no pictures.

    python -m lab.distill.prompts --out prompts.txt [--count 20000]

Scenes and wordings are those the bundled model was trained on (``shapes.random_scene`` from the
training seeds, ``shapes.caption_for`` in its training phrasings); the evaluation's held-out scenes
(seeds from 10,000,000 up) and its wording never appear. Captions that would not fit the model's
32 tokens are drawn again, as the trainer does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MAX_TOKENS = 32


def training_prompts(count: int, seed: int = 0, tokenizer=None) -> list[str]:
    import numpy as np

    from lab.default_model.shapes import caption_for, random_scene

    out = []
    for i in range(count):
        rng = np.random.default_rng(seed * 10_000_019 + i)  # the trainer's scene seeds
        bg, objs = random_scene(rng)
        cap_rng = np.random.default_rng(7_000_003 + i)
        for _ in range(8):
            cap = caption_for(bg, objs, cap_rng)
            if tokenizer is None or len(tokenizer(cap).input_ids) <= MAX_TOKENS:
                break
        out.append(cap)
    return out


def main(argv=None) -> int:
    from app.paths import default_model_dir

    p = argparse.ArgumentParser(prog="python -m lab.distill.prompts", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--count", type=int, default=20000)
    a = p.parse_args(argv)
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(default_model_dir() / "tokenizer"))
    prompts = training_prompts(a.count, tokenizer=tok)
    a.out.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    print(f"{len(prompts)} prompts ({len(set(prompts))} distinct) written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
