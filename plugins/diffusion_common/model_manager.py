"""The model manager: lists the models a user already has, in place, without copying.

Sources: folders named in the settings (any tree), the model folders of ComfyUI
(``models/checkpoints``, ``models/loras``, ``models/diffusers``, ``models/vae``), AUTOMATIC1111
(``models/Stable-diffusion``, ``models/Lora``, ``models/VAE``) and InvokeAI (its ``models/`` tree),
and the Hugging Face hub cache (``~/.cache/huggingface/hub/models--*/snapshots/*``), read offline.

Each entry has a kind (``checkpoint``, ``diffusers``, ``lora``, ``vae``, ``onnx``, ``other``),
format, size and source; the architecture (read from the safetensors header) and the content hash
are computed lazily, on first request. Only the standard library is imported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from app.api import model_fingerprint

from .errors import ModelError
from .hf_cache import hf_cache_snapshots

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

# Folder names (lower case) that say what their files are, across ComfyUI / A1111 / InvokeAI.
_KIND_BY_FOLDER = {
    "checkpoints": "checkpoint", "stable-diffusion": "checkpoint", "main": "checkpoint",
    "unet": "checkpoint", "diffusion_models": "checkpoint",
    "loras": "lora", "lora": "lora", "lycoris": "lora",
    "vae": "vae",
    "diffusers": "diffusers",
    "embeddings": "embedding", "textual_inversion": "embedding",
    "controlnet": "controlnet",
}

_LAYOUTS = {
    "comfyui": ("checkpoints", "loras", "diffusers"),
    "automatic1111": ("Stable-diffusion", "Lora"),
}


@dataclass
class ModelEntry:
    """One model found on disk. ``arch`` and ``sha256`` are filled on first access of
    :meth:`architecture` and :meth:`content_hash`."""

    path: Path
    name: str
    kind: str
    format: str
    size: int
    source: str
    _arch: str | None = field(default=None, repr=False)
    _hash: str | None = field(default=None, repr=False)
    _problem: str | None = field(default=None, repr=False)

    def architecture(self) -> str:
        """The architecture id (``sd1``, ``sdxl``...), ``lora``, or ``unknown`` (see :attr:`problem`)."""
        if self._arch is None:
            from .models import classify_state_dict, inspect_diffusers_folder, read_safetensors_header

            try:
                if self.format == "diffusers":
                    self._arch = inspect_diffusers_folder(self.path).arch
                elif self.format == "safetensors":
                    header = read_safetensors_header(self.path)
                    if self.kind == "lora" or any("lora" in k.lower() for k in list(header)[:200]):
                        self._arch, self.kind = "lora", "lora"
                    else:
                        self._arch = classify_state_dict({k: v["shape"] for k, v in header.items()},
                                                         self.path.name).arch
                        if self.kind == "other":
                            self.kind = "checkpoint"
                else:
                    self._arch = "unknown"
                    self._problem = "pickled file: classified only when loaded with pickles allowed"
            except ModelError as exc:
                self._arch = "unknown"
                self._problem = str(exc)
        return self._arch

    @property
    def problem(self) -> str | None:
        """Why the architecture is unknown, once :meth:`architecture` was asked."""
        return self._problem

    def content_hash(self) -> str:
        """The studio's fingerprint of the model (:func:`app.api.model_fingerprint`; cached)."""
        if self._hash is None:
            self._hash = model_fingerprint(self.path)
        return self._hash

    def as_dict(self, with_hash: bool = False) -> dict:
        out = {"name": self.name, "path": str(self.path), "kind": self.kind, "format": self.format,
               "size": self.size, "source": self.source, "arch": self.architecture()}
        if with_hash:
            out["sha256"] = self.content_hash()
        if self._problem:
            out["problem"] = self._problem
        return out


def _folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path, followlinks=False):
        for f in files:
            try:
                total += (Path(root) / f).stat().st_size  # follows hub-cache symlinks to blobs
            except OSError:
                pass
    return total


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".safetensors": "safetensors", ".ckpt": "ckpt", ".pt": "pt", ".pth": "pt", ".bin": "bin"}.get(suffix, suffix)


def detect_layout(root: Path) -> str:
    """``comfyui``, ``automatic1111``, ``invokeai`` or ``folder`` for a user-given root."""
    for base in (root, root / "models"):
        if not base.is_dir():
            continue
        names = {p.name for p in base.iterdir() if p.is_dir()}
        if "Stable-diffusion" in names or "Lora" in names:
            return "automatic1111"
        if {"checkpoints", "loras", "diffusers", "diffusion_models", "vae_approx", "clip_vision"} & names:
            return "comfyui"
        if (root / "invokeai.yaml").exists() or (base / ".." / "invokeai.yaml").exists() or \
                {"sd-1", "sdxl", "sd-2", "any"} & names:
            return "invokeai"
    return "folder"


def scan_folder(root: str | os.PathLike, source: str | None = None, max_depth: int = 6) -> list[ModelEntry]:
    """Every model under ``root``: diffusers folders (``model_index.json``, not descended into),
    ONNX exports and weight files, with their kind from the folder names they sit in."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ModelError(f"model folder not found: {root}")
    source = source or detect_layout(root)
    entries: list[ModelEntry] = []

    def walk(folder: Path, depth: int, hint: str) -> None:
        try:
            children = sorted(folder.iterdir())
        except OSError:
            return
        for child in children:
            if child.name.startswith("."):
                continue
            if child.is_dir():
                if (child / "model_index.json").is_file():
                    entries.append(ModelEntry(child, child.name, "diffusers", "diffusers", _folder_size(child), source))
                elif (child / "unet" / "model.onnx").is_file():
                    entries.append(ModelEntry(child, child.name, "onnx", "onnx", _folder_size(child), source))
                elif depth < max_depth:
                    walk(child, depth + 1, _KIND_BY_FOLDER.get(child.name.lower(), hint))
            elif child.suffix.lower() in MODEL_SUFFIXES:
                try:
                    size = child.stat().st_size
                except OSError:
                    continue
                entries.append(ModelEntry(child, child.stem, hint or "other", _format_of(child), size, source))

    walk(root, 0, _KIND_BY_FOLDER.get(root.name.lower(), ""))
    return entries


def hf_cache_models(cache: str | os.PathLike | None = None) -> list[ModelEntry]:
    """Diffusers models in the Hugging Face hub cache (newest snapshot of each repository)."""
    return [ModelEntry(folder, name, "diffusers", "diffusers", _folder_size(folder), "hf-cache")
            for name, folder in hf_cache_snapshots(cache)]


def parse_folder_list(text: str | Iterable[str] | None) -> list[Path]:
    """Folders from a settings value: a list, or text separated by newlines or ``os.pathsep``."""
    if not text:
        return []
    if isinstance(text, str):
        parts = [p for line in text.splitlines() for p in line.split(os.pathsep)]
    else:
        parts = list(text)
    return [Path(p.strip()).expanduser() for p in parts if p and p.strip()]


class ModelManager:
    """All models from the configured folders, the bundled model (``default_model``: its folder,
    as ``ctx.resolve_model("default")`` gives it) and, optionally, the HF cache."""

    def __init__(self, folders: Iterable[str | os.PathLike] | str | None = None, include_hf_cache: bool = True,
                 hf_cache: str | os.PathLike | None = None, default_model: str | os.PathLike | None = None):
        self.folders = parse_folder_list(folders) if isinstance(folders, str) or folders is None else \
            [Path(f).expanduser() for f in folders]
        self.include_hf_cache = include_hf_cache
        self.hf_cache = hf_cache
        self.default_model = Path(default_model) if default_model is not None else None
        self.errors: list[str] = []

    def entries(self) -> list[ModelEntry]:
        self.errors = []
        out: list[ModelEntry] = []
        d = self.default_model
        if d is not None and (d / "model_index.json").is_file():
            out.append(ModelEntry(d, "default", "diffusers", "diffusers", _folder_size(d), "bundled"))
        for folder in self.folders:
            try:
                out.extend(scan_folder(folder))
            except ModelError as exc:
                self.errors.append(str(exc))
        if self.include_hf_cache:
            out.extend(hf_cache_models(self.hf_cache))
        seen: set[str] = set()
        unique = []
        for e in out:
            key = str(e.path.resolve())
            if key not in seen:
                seen.add(key)
                unique.append(e)
        return unique

    def checkpoints(self) -> list[ModelEntry]:
        """Entries usable as a base model (diffusers folders and checkpoint files)."""
        return [e for e in self.entries() if e.kind in ("diffusers", "checkpoint") or
                (e.kind == "other" and e.architecture() not in ("unknown", "lora"))]

    def loras(self) -> list[ModelEntry]:
        return [e for e in self.entries() if e.kind == "lora" or
                (e.kind == "other" and e.format == "safetensors" and e.architecture() == "lora")]

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries())
