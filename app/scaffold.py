"""``implicit-studio new-plugin NAME [--out DIR]``: write a ready plugin project.

The project (pyproject with the entry point and its authors, a package with a cheap entry module
and a compute module holding one tool, tests that use the studio's pytest fixtures, a README)
installs with ``pip install -e ".[test]"`` in its folder (the ``test`` extra brings pytest and
pytest-qt) and passes its own tests at once. The templates live in :mod:`app.scaffold_template`.

``NAME`` is kebab-case (``my-filters``): it becomes the folder, the distribution name and the
tool id; the Python package is the same with underscores (``my_filters``). Names that are not
valid, that would shadow an importable module, or whose tool id or plugin name is already taken
by an installed plugin are refused with a sentence saying why; an existing folder is never
overwritten.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import keyword
import logging
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

PROG = "implicit-studio new-plugin"
MAX_NAME_LENGTH = 40
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

#: Package names that would clash with the studio's own import packages.
_RESERVED_PACKAGES = {"app", "plugins", "storage", "tests", "test", "examples", "docs", "src"}


class NewPluginError(ValueError):
    """The name or the target folder is not usable; the message says why and what to do."""


def plugin_names(name: str) -> dict[str, str]:
    """Check ``name`` and derive the names used in the project.

    Returns ``{"name", "package", "title"}``; raises :class:`NewPluginError` for a bad name.
    """
    if not isinstance(name, str) or not name:
        raise NewPluginError("give the plugin a name, e.g. 'my-filters'")
    if len(name) > MAX_NAME_LENGTH:
        raise NewPluginError(f"plugin name {name!r} is too long ({len(name)} characters; at most {MAX_NAME_LENGTH})")
    if not _NAME.match(name):
        hint = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        if hint and not hint[0].isalpha():
            hint = "plugin-" + hint
        suggestion = f"; try {hint!r}" if hint and _NAME.match(hint) else ""
        raise NewPluginError(
            f"plugin name {name!r} is not valid: use lower-case letters, digits and single dashes, "
            f"starting with a letter (e.g. 'my-filters'){suggestion}")
    package = name.replace("-", "_")
    if keyword.iskeyword(package) or package in _RESERVED_PACKAGES:
        raise NewPluginError(f"plugin name {name!r} would make a Python package called {package!r}, which "
                             f"is reserved; choose another name")
    title = " ".join(part.capitalize() for part in name.split("-"))
    return {"name": name, "package": package, "title": title}


def check_not_taken(names: dict[str, str]) -> None:
    """Refuse names that clash with what is installed in this Python: an importable module of the
    same name, a distribution of the same name, a plugin entry point or a tool id already used."""
    name, package = names["name"], names["package"]
    if importlib.util.find_spec(package) is not None:
        raise NewPluginError(f"a Python module called {package!r} is already importable here; a plugin "
                             f"package of that name would clash with it. Choose another name")
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        pass
    else:
        raise NewPluginError(f"a distribution called {name!r} is already installed; choose another name")
    from app.plugins import ENTRY_POINT_GROUP, PluginManager

    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == package:
            raise NewPluginError(f"an installed plugin is already called {package!r} ({ep.value}); choose another name")
    plugin_log = logging.getLogger("implicit_studio.plugins")
    level = plugin_log.level
    plugin_log.setLevel(logging.CRITICAL)  # other plugins' failures are not this command's business
    try:
        manager = PluginManager(settings=None, env={}).load()
    finally:
        plugin_log.setLevel(level)
    if name in manager.tools:
        raise NewPluginError(f"a tool called {name!r} already exists (plugin {manager.tools[name].plugin!r}); "
                             f"choose another name")


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    leftover = re.findall(r"\{\{\w+\}\}", text)
    if leftover:  # a template names a value we do not have: a bug in the templates, not the user
        raise RuntimeError(f"template placeholders left unfilled: {sorted(set(leftover))}")
    return text


def default_author() -> tuple[str, str]:
    """``(name, email)`` for the new project's ``authors``: git's ``user.name``/``user.email``
    when git knows them, else the login name (and no email)."""
    import shutil
    import subprocess

    found = {}
    if shutil.which("git"):
        for key in ("user.name", "user.email"):
            try:
                out = subprocess.run(["git", "config", "--get", key], capture_output=True, text=True, timeout=5)
            except (OSError, subprocess.SubprocessError):
                continue
            if out.returncode == 0 and out.stdout.strip():
                found[key] = out.stdout.strip()
    name = found.get("user.name")
    if not name:
        import getpass

        try:
            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - no login name: still write a project
            name = "Plugin author"
    return name, found.get("user.email", "")


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    import json

    return json.dumps(text, ensure_ascii=False)


def template_values(names: dict[str, str], author: Optional[str] = None, email: Optional[str] = None) -> dict[str, str]:
    import app
    from app.api import API_VERSION

    if author is None:
        author, found_email = default_author()
        email = email if email is not None else found_email
    entry = f"name = {_toml_string(author)}" + (f", email = {_toml_string(email)}" if email else "")
    version = re.match(r"\d+(?:\.\d+)*", str(app.__version__))
    return {**names, "api_version": API_VERSION, "app_version": version.group(0) if version else "0",
            "author": author, "authors_toml": "{ " + entry + " }"}


def write_plugin_project(name: str, parent: str | Path = ".", *, check_installed: bool = True,
                         author: Optional[str] = None, email: Optional[str] = None) -> Path:
    """Write the project ``parent/NAME`` and return its folder. ``author``/``email`` fill the
    project's ``authors`` (default: :func:`default_author`); the Plugins dialog shows them.

    Raises :class:`NewPluginError` (a ``ValueError``) for a bad or taken name and
    ``FileExistsError`` if the folder exists. Nothing is written unless every check passes.
    """
    if author is not None and not author.strip():
        raise NewPluginError("the author's name is empty; give --author \"Your Name\" or leave it out")
    names = plugin_names(name)
    parent = Path(parent).expanduser()
    root = parent / names["name"]
    if root.exists():
        raise FileExistsError(f"{root} already exists; remove it or choose another name or --out folder "
                              f"(nothing was overwritten)")
    if parent.exists() and not parent.is_dir():
        raise NewPluginError(f"{parent} is a file, not a folder")
    if check_installed:
        check_not_taken(names)
    values = template_values(names, author, email)
    from app.scaffold_template import FILES

    package_files = resources.files("app.scaffold_template")
    rendered = {_render(rel, values): _render(package_files.joinpath(src).read_text(encoding="utf-8"), values)
                for rel, src in FILES.items()}
    parent.mkdir(parents=True, exist_ok=True)
    root.mkdir()  # fails if a concurrent process made it in the meantime: never overwrite
    for rel, text in rendered.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a ready-to-install Implicit Studio plugin project: pyproject with the entry "
                    "point, a package with one tool, tests using the studio's pytest fixtures, a README.",
        epilog="Then: cd NAME && pip install -e \".[test]\" && pytest",
    )
    parser.add_argument("name", help="kebab-case plugin name, e.g. my-filters (folder, distribution and tool id)")
    parser.add_argument("--out", "--dir", dest="out", default=".", metavar="DIR",
                        help="folder in which to create the project folder (default: the current folder)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the check against installed modules, distributions, plugins and tools")
    parser.add_argument("--author", metavar="NAME", help="the project's author (default: git's user.name, "
                                                          "else your login name)")
    parser.add_argument("--email", metavar="ADDRESS", help="the author's email (default: git's user.email)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: returns 0 on success, 2 for a bad name or an existing folder."""
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, or argparse's own usage error (already printed)
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    try:
        root = write_plugin_project(args.name, args.out, check_installed=not args.no_check, author=args.author,
                                    email=args.email)
    except (NewPluginError, FileExistsError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: cannot write the project: {exc}", file=sys.stderr)
        return 2
    package = plugin_names(args.name)["package"]
    print(f"created {root}")
    print("next steps:")
    print(f"  cd {root}")
    print('  pip install -e ".[test]"      # the plugin, and pytest with pytest-qt for its tests')
    print("  pytest")
    print(f"  implicit-studio run {args.name} --image picture.png --out results")
    print(f"edit {root / 'src' / package / 'compute.py'} to make the tool your own")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
