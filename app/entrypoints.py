"""Entry-point discovery for start-up, without importing ``importlib.metadata``.

``importlib.metadata`` imports the ``email`` package and parses every distribution's METADATA as
an e-mail message: about 14 ms before the window can paint, for five lines of text per plugin.
This module reads the same files (``*.dist-info`` / ``*.egg-info`` folders on ``sys.path``:
``entry_points.txt`` and the header block of ``METADATA``/``PKG-INFO``) directly, with the same
rules: the first distribution of a name on ``sys.path`` wins. Where ``sys.path`` holds something
other than folders (zip files, as in a frozen bundle), it falls back to ``importlib.metadata``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

_DIST_DIR = re.compile(r"^(?P<name>[^-]+)(?:-(?P<version>[^-]+))?.*\.(?:dist|egg)-info$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class EntryPoint:
    """One ``name = module[:attr]`` line of a distribution's ``entry_points.txt``."""

    name: str
    value: str
    group: str
    dist_path: Optional[Path] = field(default=None, compare=False)

    def load(self):
        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj

    @property
    def metadata(self) -> dict[str, str]:
        """Name, Version, Summary, Author, Author-email of the distribution ('' when unknown)."""
        return read_metadata(self.dist_path) if self.dist_path is not None else {}


def read_metadata(dist_path: Path) -> dict[str, str]:
    """The header fields of a distribution's METADATA (or PKG-INFO) that the Plugins list shows."""
    wanted = {"name", "version", "summary", "author", "author-email"}
    for fname in ("METADATA", "PKG-INFO"):
        try:
            text = (dist_path / fname).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out: dict[str, str] = {}
        key = None
        for line in text.splitlines():
            if not line.strip():
                break  # the body (long description) starts after the first blank line
            if line[0] in " \t" and key:
                out[key] += " " + line.strip()  # a folded header line
                continue
            k, sep, v = line.partition(":")
            key = k.strip().lower() if sep else None
            if key in wanted and key not in out:
                out[key] = v.strip()
            elif key not in wanted:
                key = None
        return {k.title(): v for k, v in out.items()}
    return {}


def _parse_entry_points(text: str, group: str, dist_path: Path) -> list[EntryPoint]:
    out, current = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current == group and "=" in line:
            name, _, value = line.partition("=")
            out.append(EntryPoint(name.strip(), value.strip(), group, dist_path))
    return out


def entry_points(group: str) -> list:
    """Entry points of ``group`` from every distribution on ``sys.path``, first of a name wins."""
    paths = [p or "." for p in sys.path]
    if any(not os.path.isdir(p) and os.path.exists(p) for p in paths):
        import importlib.metadata as md  # zip files on the path: let the standard library read them

        return list(md.entry_points(group=group))
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for folder in paths:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            m = _DIST_DIR.match(name)
            if not m:
                continue
            dist = _norm(m.group("name"))
            if dist in seen:
                continue
            seen.add(dist)
            dist_path = Path(folder) / name
            try:
                text = (dist_path / "entry_points.txt").read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            found.extend(_parse_entry_points(text, group, dist_path))
    return found
