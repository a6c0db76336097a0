"""``implicit-studio new-plugin``: bad names are refused clearly; a generated project installs
with pip and passes its own tests at once."""

from __future__ import annotations

import json
import re
import secrets
import subprocess

import pytest

from app import cli, scaffold


@pytest.mark.parametrize("name, message", [
    ("My Plugin", "not valid.*try 'my-plugin'"),
    ("my_plugin", "not valid.*try 'my-plugin'"),
    ("3d-tools", "not valid.*try 'plugin-3d-tools'"),
    ("double--dash", "not valid"),
    ("-lead", "not valid"),
    ("x" * 41, "too long"),
    ("class", "reserved"),
    ("app", "reserved"),
    ("json", "already importable"),
    ("", "give the plugin a name"),
])
def test_bad_names_are_refused_with_a_reason(name, message, tmp_path, capsys):
    assert scaffold.main(["--out", str(tmp_path), "--", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("implicit-studio new-plugin: error: ")
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_existing_folder_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "kit-taken").mkdir()
    (tmp_path / "kit-taken" / "mine.txt").write_text("keep me")
    assert scaffold.main(["kit-taken", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "kit-taken").iterdir()] == ["mine.txt"]


def test_names_of_installed_tools_are_refused(studio_env, plugin_dist, tmp_path):
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "kit_tool_owner.py").write_text(
        "from app.api import ToolSpec, hookimpl\n"
        "@hookimpl\n"
        "def studio_tools():\n"
        "    return [ToolSpec(id='kit-busy', title='Busy', run='kit_tool_owner:run', results=())]\n"
        "def run(ctx):\n    return None\n")
    plugin_dist("kit-tool-owner", {"kit_tool_owner": "kit_tool_owner"}, paths=[mod_dir])
    with pytest.raises(scaffold.NewPluginError, match="a tool called 'kit-busy' already exists"):
        scaffold.write_plugin_project("kit-busy", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_generated_files_are_complete_and_filled_in(tmp_path):
    root = scaffold.write_plugin_project("kit-files", tmp_path)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [".gitignore", "README.md", "pyproject.toml", "src/kit_files/__init__.py",
                     "src/kit_files/compute.py", "src/kit_files/plugin.py", "tests/conftest.py",
                     "tests/test_kit_files.py"]
    for path in root.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "kit-files"' in pyproject
    import tomllib

    authors = tomllib.loads(pyproject)["project"]["authors"]
    assert len(authors) == 1 and authors[0]["name"].strip(), authors  # git's user.name or the login name
    named = scaffold.write_plugin_project("kit-named", tmp_path, author='Ada "the" Lovelace', email="ada@example.org")
    assert tomllib.loads((named / "pyproject.toml").read_text())["project"]["authors"] == [
        {"name": 'Ada "the" Lovelace', "email": "ada@example.org"}]
    assert '[project.entry-points."implicit_studio.plugins"]\nkit_files = "kit_files.plugin"' in pyproject
    from app.api import API_VERSION

    assert f'REQUIRES_API = "{API_VERSION}"' in (root / "src/kit_files/plugin.py").read_text()
    # every generated Python file compiles
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_command_line_writes_the_project(tmp_path, capsys):
    # through the studio's own command line (`implicit-studio new-plugin NAME --dir DIR`)
    assert cli.main(["new-plugin", "kit-via-cli", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "kit-via-cli" / "src" / "kit_via_cli" / "plugin.py").is_file()
    assert cli.main(["new-plugin", "Bad Name", "--dir", str(tmp_path)]) == 2
    assert "not valid" in capsys.readouterr().err


@pytest.mark.install
def test_generated_project_installs_and_passes_its_own_tests(tmp_path, kit):
    name = f"kit-probe-{secrets.token_hex(3)}"
    package = name.replace("-", "_")
    root = scaffold.write_plugin_project(name, tmp_path, author="Kit Probe")
    try:
        # as the docs say: pip install -e ".[test]" in the project (its dependencies and the test
        # extra are resolved, and are already here; --no-build-isolation keeps CI offline)
        with kit.pip_installed(root, name, import_paths=(package,), extras="test"):
            assert kit.is_installed(name)
            proc = subprocess.run([kit.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root,
                                  capture_output=True, text=True, timeout=300,
                                  env=kit.env())
            assert proc.returncode == 0, f"the generated tests failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
            assert "5 passed" in proc.stdout, proc.stdout[-2000:]
            # the kit's fixtures are listed (each defined once: a duplicate made this crash)
            fixtures = subprocess.run([kit.python, "-m", "pytest", "--fixtures", "-q", "-p", "no:cacheprovider"],
                                      cwd=root, capture_output=True, text=True, timeout=300, env=kit.env())
            assert fixtures.returncode == 0, fixtures.stdout[-3000:] + fixtures.stderr[-2000:]
            for fixture in ("run_tool", "studio_cli", "studio_manager", "make_studio_window", "studio_window"):
                assert f"\n{fixture} -- " in fixtures.stdout, fixture
            # the Plugins dialog and `plugins` show its author
            listing = subprocess.run([kit.python, "-m", "app", "plugins", "--json"], capture_output=True, text=True,
                                     timeout=120, env=kit.env())
            rec = next(r for r in json.loads(listing.stdout) if r["name"] == package)
            assert rec["author"] == "Kit Probe" and rec["status"] == "loaded", rec
            # the console script finds the new tool too
            tools = subprocess.run([kit.python, "-m", "app", "tools", name], capture_output=True, text=True,
                                   timeout=120, env=kit.env())
            assert tools.returncode == 0 and "--levels" in tools.stdout, tools.stdout + tools.stderr
    finally:
        assert not kit.is_installed(name), f"{name} was left installed"
