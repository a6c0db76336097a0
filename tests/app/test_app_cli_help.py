"""Issue 28, item 15: ``implicit-studio run TOOL --help`` works for every built-in tool (a bare
``%`` in a help text made h-Edit's crash) and lists every parameter; bad image inputs are refused
with exit status 2 before any work."""

from __future__ import annotations

import pytest

from app import cli


def _builtin_tools():
    from app.plugins import get_manager
    from app.settings import Settings

    return sorted(get_manager(Settings()).tools.values(), key=lambda t: t.id)


@pytest.mark.parametrize("tool", _builtin_tools(), ids=lambda t: t.id)
def test_every_tools_help_works(tool, capsys):
    assert cli.main(["run", tool.id, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"run {tool.id}" in out
    from app.cli_commands import tool_option

    for p in tool.params:
        assert tool_option(p) in out, p.name
    assert "%%" not in out


def test_the_list_of_tools_names_every_tool(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for t in _builtin_tools():
        assert t.id in out


@pytest.fixture
def pictures(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 30, 30)).save(tmp_path / "image.png")
    Image.new("L", (32, 32), 255).save(tmp_path / "small-mask.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    return tmp_path


@pytest.mark.parametrize("args, option", [
    (["run", "inpaint", "--image", "{d}/image.png", "--mask", "{d}/small-mask.png"], "--mask"),
    (["run", "inpaint", "--image", "{d}/notes.txt", "--mask", "{d}/small-mask.png"], "--image"),
    (["run", "h-edit", "--image", "{d}/notes.txt", "--target-prompt", "a blue circle"], "--image"),
    (["run", "h-edit", "--image", "{d}/image.png", "--region", "{d}/small-mask.png"], "--region"),
])
def test_bad_image_inputs_exit_2_before_any_work(args, option, pictures, capsys, monkeypatch):
    import sys

    args = [a.format(d=pictures) for a in args] + ["--no-session"]
    loaded_before = "diffusers" in sys.modules
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert option in err and ("not an image" in err or "the mask is 32x32 but the image is 64x64" in err), err
    assert ("diffusers" in sys.modules) == loaded_before  # refused before any model was loaded
    # a mask the tool may resize is let through to the tool (checked without running it here)
    from app.inputs import check_image_inputs
    from app.plugins import get_manager

    tool = get_manager().tool("inpaint")
    check_image_inputs(tool, {"image": str(pictures / "image.png"), "mask": str(pictures / "small-mask.png"),
                              "resize_mask": True})
