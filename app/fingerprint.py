"""The one model fingerprint of the studio (standard library only, no Qt).

A run's row in the session, the PNG metadata of its images, the diffusion plugins' pipeline cache
and their ONNX exports all name a model by :func:`model_fingerprint`, so the same files always get
the same 64-hex-digit sha256:

- a file: the sha256 of its bytes (for a single ``.safetensors`` checkpoint this is the hash other
  tools such as AUTOMATIC1111 show; its first 10 digits are the "Model hash" of the A1111 text);
- a folder: the sha256 of the lines ``"<relative path>:<file sha256>\\n"`` of its weight and config
  files (:data:`WEIGHT_SUFFIXES`, :data:`CONFIG_SUFFIXES`; hidden files left out), in sorted order.

Each file's sha256 is remembered by (absolute path, mtime, size) in memory and in
``<cache>/hashes.json`` (:func:`app.settings.cache_dir`), so a multi-gigabyte model is read once.
Plugins reach this through :func:`app.api.model_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

_log = logging.getLogger("implicit_studio.fingerprint")

#: Files that hold weights.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".onnx_data", ".pb")
#: Files that configure a model (``model_index.json``, tokenizer files...).
CONFIG_SUFFIXES = (".json", ".txt", ".model")

_lock = threading.Lock()
_memory: dict[str, dict[str, Any]] = {}


def _cache_file() -> Path:
    from app.settings import cache_dir

    return cache_dir() / "hashes.json"


def _load_cache() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(data: dict[str, dict[str, Any]]) -> None:
    path = _cache_file()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=0, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # the cache only saves time
        _log.debug("could not write the fingerprint cache: %s", exc)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, remembered by (absolute path, mtime, size)."""
    path = Path(path).resolve()
    st = path.stat()
    key = str(path)
    stamp = {"mtime_ns": st.st_mtime_ns, "size": st.st_size}
    with _lock:
        hit = _memory.get(key) or _load_cache().get(key)
        if hit and hit.get("mtime_ns") == stamp["mtime_ns"] and hit.get("size") == stamp["size"]:
            _memory[key] = hit
            return str(hit["sha256"])
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _lock:
        entry = dict(stamp, sha256=digest)
        _memory[key] = entry
        data = _load_cache()
        data[key] = entry
        _save_cache(data)
    return digest


def model_files(path: str | os.PathLike) -> list[Path]:
    """The files a fingerprint covers: the file itself, or a folder's weight and config files."""
    path = Path(path)
    if path.is_file():
        return [path]
    return [p for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and (p.suffix in WEIGHT_SUFFIXES or p.suffix in CONFIG_SUFFIXES)]


def model_fingerprint(path: str | os.PathLike) -> str:
    """The fingerprint of a model file or folder (see the module text). ``FileNotFoundError`` if
    ``path`` does not exist."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in model_files(path):
        h.update(f"{p.relative_to(path).as_posix()}:{file_sha256(p)}\n".encode())
    return h.hexdigest()
