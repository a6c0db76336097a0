"""Export the bundled model (or any SD-structured diffusers folder) to ONNX for ONNX Runtime.

    implicit-studio export-default-model-onnx [--model DIR] [--out DIR]

Writes text encoder, UNet, VAE decoder and VAE encoder graphs beside the tokenizer and scheduler,
tagged with the content hash of the source weights, so the text-to-image plugin's ONNX Runtime
backend picks the export up instead of exporting again. The export code itself is the
text-to-image plugin's (``plugins.diffusion_common.backends.export_onnx``): one exporter for the
bundled model and for any model a user loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def export(model_dir: Path, out_dir: Path) -> Path:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from plugins.diffusion_common.backends import export_onnx
    from plugins.diffusion_common.models import load_pipeline

    loaded = load_pipeline(str(model_dir), device="cpu", dtype="float32")
    return export_onnx(loaded, out_dir)


def main(argv=None) -> int:
    from app.paths import default_model_dir, default_model_onnx_dir

    p = argparse.ArgumentParser(prog="implicit-studio export-default-model-onnx", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="diffusers pipeline folder (default: the bundled model)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the bundled export's place)")
    a = p.parse_args(argv)
    model = a.model or default_model_dir()
    if not (Path(model) / "model_index.json").is_file():
        p.error(f"{model} is not a diffusers pipeline folder (no model_index.json)")
    out = export(model, a.out or default_model_onnx_dir())
    print(f"ONNX export written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
