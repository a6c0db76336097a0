"""The Hugging Face hub cache, read from disk only (standard library; never downloads).

Both the model list (``model_manager``) and single-file loading (``models.find_local_config``,
which looks for a diffusers folder to take a checkpoint's configuration from) read it here.
"""

from __future__ import annotations

import os
from pathlib import Path


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, ``HF_HOME/hub`` or the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    return home / "hub"


def hf_cache_snapshots(cache: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """``(repository name, snapshot folder)`` of every diffusers model in the hub cache
    (``models--org--name/snapshots/<rev>``): the snapshot ``refs/main`` names, else the newest."""
    base = Path(cache).expanduser() if cache else hf_hub_cache()
    out: list[tuple[str, Path]] = []
    if not base.is_dir():
        return out
    for repo in sorted(base.glob("models--*")):
        snaps = [s for s in (repo / "snapshots").glob("*") if (s / "model_index.json").is_file()]
        if not snaps:
            continue
        ref_file = repo / "refs" / "main"
        chosen = None
        if ref_file.is_file():
            rev = ref_file.read_text(encoding="utf-8").strip()
            chosen = next((s for s in snaps if s.name == rev), None)
        if chosen is None:
            chosen = max(snaps, key=lambda s: s.stat().st_mtime)
        out.append((repo.name[len("models--"):].replace("--", "/"), chosen))
    return out
