"""The code in the plugin docs runs: every Python block of docs/plugins.md and
docs/plugin-tutorial.md is either marked runnable, and run here, or says why it is only an
illustration. A wrong example (a missing import, a renamed argument) fails this test.

Markers, an HTML comment right before a fenced ``python`` block:

``<!-- runnable -->``
    run the block as a script;
``<!-- runnable: pytest -->``
    run the block as a test module with pytest (the studio's fixtures are there, as for a
    plugin author);
``<!-- runnable: file PATH [entry-point NAME] -->``
    write the block to PATH in the document's project folder (packages get an ``__init__.py``);
    with ``entry-point NAME`` the module is also registered as the plugin NAME, as
    ``pip install -e .`` of a project with that entry point would;
``<!-- runnable: append PATH -->``
    add the block to the end of PATH;
``<!-- illustration: REASON -->``
    not run (it needs a GPU model, a file the reader does not have...): say why.

The blocks of one document run in order in one project folder, each script and test file in a
fresh interpreter with the repository, the project and its registered entry points importable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.testing import install_plugin_dist

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "plugins.md", ROOT / "docs" / "plugin-tutorial.md"]

_BLOCK = re.compile(r"(?:<!--\s*(?P<marker>runnable|illustration)(?::\s*(?P<spec>[^>]*?))?\s*-->\s*\n\s*)?"
                    r"^```(?P<lang>[\w+-]*)[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    marker: str | None
    spec: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.doc.name}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for m in _BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("code")) + 1  # the first line of code
        out.append(Block(doc, line, m.group("lang"), m.group("marker"), (m.group("spec") or "").strip(),
                         m.group("code")))
    return out


def _env(project: Path, site: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("IMPLICIT_STUDIO_NO_PLUGINS", "IMPLICIT_STUDIO_LOAD_PLUGINS", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(site), str(ROOT)])
    env.update(IMPLICIT_STUDIO_CONFIG_DIR=str(home / "config"), IMPLICIT_STUDIO_DATA_DIR=str(home / "data"),
               IMPLICIT_STUDIO_LOG_DIR=str(home / "log"), HF_HUB_OFFLINE="1", QT_QPA_PLATFORM="offscreen")
    return env


def _write_module(project: Path, rel: str, code: str, append: bool = False) -> Path:
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(project).parents:
        if str(parent) != "." and not (project / parent / "__init__.py").exists():
            (project / parent / "__init__.py").write_text("")
    if append and path.exists():
        code = path.read_text() + "\n\n" + code
    path.write_text(code)
    return path


def run_blocks(doc: Path, tmp: Path) -> int:
    """Run the runnable blocks of ``doc``; returns how many ran. ``AssertionError`` naming the
    block (file and line) and its output when one fails."""
    project, site, home = tmp / "project", tmp / "site", tmp / "home"
    for p in (project, site, home):
        p.mkdir(parents=True, exist_ok=True)
    env = _env(project, site, home)
    ran = 0
    for i, b in enumerate(blocks(doc)):
        if b.marker != "runnable":
            continue
        words = b.spec.split()
        if not words:
            script = project / f"doc_block_{i}.py"
            script.write_text(b.code)
            cmd = [sys.executable, str(script)]
        elif words[0] == "pytest":
            test = project / "tests" / f"test_doc_block_{i}.py"
            test.parent.mkdir(exist_ok=True)
            test.write_text(b.code)
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)]
        elif words[0] in ("file", "append"):
            path = _write_module(project, words[1], b.code, append=words[0] == "append")
            if "entry-point" in words:
                name = words[words.index("entry-point") + 1]
                module = ".".join(path.relative_to(project).with_suffix("").parts)
                install_plugin_dist(site, f"doc-{name.replace('_', '-')}", {name: module})
            ran += 1
            continue
        else:
            raise AssertionError(f"{b.where}: unknown runnable marker {b.spec!r}")
        proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"the block at {b.where} failed (exit {proc.returncode}):\n{b.code}\n"
                                 f"--- output ---\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        ran += 1
    return ran


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_python_block_is_runnable_or_says_why(doc):
    unmarked = [b.where for b in blocks(doc) if b.lang in ("python", "py") and b.marker is None]
    assert not unmarked, (f"mark these Python blocks <!-- runnable... --> (and make them run) or "
                          f"<!-- illustration: why -->: {unmarked}")
    bad = [b.where for b in blocks(doc) if b.marker == "illustration" and not b.spec]
    assert not bad, f"an illustration says why it is not run: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_runnable_blocks_run(doc, tmp_path):
    assert run_blocks(doc, tmp_path) >= 3


def test_a_wrong_example_fails(tmp_path):
    """The runner is not a rubber stamp: the example the issue found (ImageResult given as a
    positional argument and never imported) fails, naming its line."""
    doc = tmp_path / "bad.md"
    doc.write_text("# Bad\n\n<!-- runnable -->\n```python\nimport numpy as np\n\n"
                   "print(ImageResult(np.zeros((2, 2, 3), np.uint8)))\n```\n")
    with pytest.raises(AssertionError, match=r"(?s)bad.md:5 failed.*NameError: name 'ImageResult'"):
        run_blocks(doc, tmp_path / "run")


def test_the_example_in_the_api_module_docstring_runs():
    """``app/api.py`` opens with a minimal plugin and its run function; both run as written."""
    import textwrap

    from app import api

    examples = re.findall(r"::\n\n((?:    .*\n|\n)+)", api.__doc__)
    namespace: dict = {}
    for code in examples[:2]:
        exec(compile(textwrap.dedent(code), "app.api docstring", "exec"), namespace)  # noqa: S102
    (tool,) = namespace["studio_tools"]()
    result = namespace["make_noise"](api.RunContext(), size=8, seed=0)
    assert tool.id == "noise-image" and result.image.shape == (8, 8, 3)
