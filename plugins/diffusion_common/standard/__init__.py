"""Standard model configs and the CLIP tokenizer, shipped with the studio so that single-file
checkpoints load offline (see ``README.md`` here for where each file comes from)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIP_VOCAB = HERE / "clip_vocab.json"
CLIP_MERGES = HERE / "clip_merges.txt"


@functools.lru_cache(maxsize=1)
def clip_vocab() -> dict[str, int]:
    """CLIP's 49,408-token BPE vocabulary (token -> id)."""
    return json.loads(CLIP_VOCAB.read_text(encoding="utf-8"))
