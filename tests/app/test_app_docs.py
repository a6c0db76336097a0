"""docs/plugins.md carries a reference generated from the docstrings; it must be current, and
every public name and hook must be in it. The README keeps exactly two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from app import api, docs_reference, hookspecs

ROOT = Path(__file__).resolve().parents[2]


def test_plugin_reference_is_up_to_date():
    text = docs_reference.DOC_PATH.read_text(encoding="utf-8")
    assert docs_reference.updated_text(text) == text, "run: python -m app.docs_reference --write"


def test_reference_mentions_every_public_name_and_hook():
    rendered = docs_reference.render()
    for name in api.__all__:
        assert f"`{name}" in rendered, name
    for hook in hookspecs.__all__:
        if hook.startswith("studio_"):
            assert f"#### `{hook}(" in rendered, hook


def test_readme_has_exactly_two_setup_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 2, blocks
    launch, test = (b.strip() for b in blocks)
    assert "pip install -e ." in launch and launch.endswith("implicit-studio")
    assert 'pip install -e ".[test,installer,ray]"' in test and "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test in ci, ".ci/run must run exactly the README test command"
