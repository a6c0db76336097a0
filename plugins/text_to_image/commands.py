"""``implicit-studio models``: list the diffusion models and LoRAs the model manager finds;
``implicit-studio export-checkpoint``: write a diffusers model as a single-file checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

from app.api import RunContext, ToolError


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _context(ctx: RunContext | None) -> RunContext:
    """The context the studio gives the command; a bare one (no settings, no model names) when
    the function is called directly."""
    return ctx if ctx is not None else RunContext(plugin="text_to_image")


def models_main(argv: list[str], ctx: RunContext | None = None) -> int:
    from plugins.diffusion_common.model_manager import ModelManager, parse_folder_list

    from .plugin import SETTINGS_SECTION

    parser = argparse.ArgumentParser(prog="implicit-studio models",
                                     description="List diffusion models and LoRAs, used in place (never copied).")
    parser.add_argument("--folder", action="append", default=[],
                        help="a model folder to scan (any tree, or a ComfyUI/AUTOMATIC1111/InvokeAI install); repeatable")
    parser.add_argument("--no-settings", action="store_true", help="ignore the folders saved in the settings")
    parser.add_argument("--no-hf-cache", action="store_true", help="do not list the Hugging Face cache")
    parser.add_argument("--hash", action="store_true", help="compute content hashes (sha256; cached)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)

    folders = list(args.folder)
    scan_hf = not args.no_hf_cache
    ctx = _context(ctx)
    if not args.no_settings:
        try:
            folders += [str(p) for p in parse_folder_list(ctx.setting(SETTINGS_SECTION, "folders", ""))]
            scan_hf = scan_hf and bool(ctx.setting(SETTINGS_SECTION, "scan_hf_cache", True))
        except Exception as exc:  # noqa: BLE001 - settings are optional here
            print(f"note: settings not read ({exc})", file=sys.stderr)
    try:
        bundled = ctx.resolve_model("default")
    except ToolError:  # not installed, or no plugin names it here
        bundled = None
    manager = ModelManager(folders, include_hf_cache=scan_hf, default_model=bundled)
    entries = manager.entries()
    rows = [e.as_dict(with_hash=args.hash) for e in entries]
    for err in manager.errors:
        print(f"warning: {err}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no models found (add folders with --folder or in Preferences > Diffusion models)")
        return 0
    for r in rows:
        line = f"{r['kind']:<10} {r['arch']:<14} {r['format']:<11} {_human(r['size']):>9}  {r['source']:<13} {r['name']}"
        if args.hash:
            line += f"  sha256:{r['sha256'][:16]}"
        print(line)
        print(f"{'':<10} {r['path']}")
        if r.get("problem"):
            print(f"{'':<10} ! {r['problem']}")
    return 0


def export_checkpoint_main(argv: list[str], ctx: RunContext | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="implicit-studio export-checkpoint",
        description="Write a diffusers SD 1.x-structured model folder as one .safetensors checkpoint in the "
                    "original LDM layout, with its configs, tokenizer and prediction type in the file's metadata "
                    "and its original config as a .yaml beside it. Before writing it says which tools read the "
                    "file and why others cannot: stock ComfyUI and AUTOMATIC1111 read SD 1.x sizes only; the "
                    "studio and the ComfyUI node in integrations/comfyui read any size.")
    parser.add_argument("model", nargs="?", default="default",
                        help="'default' (the bundled model) or a diffusers folder")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                        help="convert the weights (default: keep their precision)")
    parser.add_argument("--no-yaml", action="store_true",
                        help="do not write the original-config .yaml beside the file (AUTOMATIC1111 reads it)")
    args = parser.parse_args(argv)

    from plugins.diffusion_common.single_file import check_export, export_single_file

    try:
        folder = _context(ctx).resolve_model(args.model)
        _, _, support = check_export(folder)
        print("Which tools will read this file:")
        for row in support:
            print(f"  - {row.line()}")
        res = export_single_file(folder, args.out, dtype=args.dtype, sidecar=not args.no_yaml)
    except (ToolError, ValueError, OSError) as exc:
        print(f"implicit-studio export-checkpoint: {exc}", file=sys.stderr)
        return 2
    parts = ", ".join(f"{k} {v}" for k, v in res.components.items())
    marks = f"; marker tensors: {', '.join(res.markers)}" if res.markers else ""
    print(f"wrote {res.path} ({_human(res.bytes)}, {res.tensors} tensors: {parts}{marks})")
    if res.sidecar is not None:
        print(f"wrote {res.sidecar} (its original config, for AUTOMATIC1111)")
    return 0
