"""Issue 28, item 15: every command-line run printed three transformers warnings that
``CLIPImageProcessor`` and two others "require torchvision" (not a dependency): the diffusion
library drops those records, and only those."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = ("import sys, logging\n"
         "if sys.argv[1] == 'with': import plugins.diffusion_common\n"
         "import transformers\n"
         "transformers.CLIPImageProcessor\n"
         "logging.getLogger('transformers.utils.import_utils').warning('another warning passes')\n")


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed: no fallback")
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
def test_the_torchvision_fallback_notes_are_dropped():
    def stderr(mode: str) -> str:
        return subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}).stderr

    assert "requires torchvision" in stderr("without")  # what transformers says on its own
    quiet = stderr("with")
    assert "requires torchvision" not in quiet
    assert "another warning passes" in quiet
