"""The files of a new plugin project, written by ``implicit-studio new-plugin NAME``.

Each template is a ``.txt`` file in this package (so it ships as package data and is never
imported or collected by pytest). :data:`FILES` maps the path to write in the new project to
the template's file name; ``{{placeholders}}`` are replaced by :mod:`app.scaffold`.
"""

#: project path (may contain placeholders) -> template file in this folder
FILES = {
    "pyproject.toml": "pyproject.toml.txt",
    "README.md": "README.md.txt",
    ".gitignore": "gitignore.txt",
    "src/{{package}}/__init__.py": "package_init.py.txt",
    "src/{{package}}/plugin.py": "plugin.py.txt",
    "src/{{package}}/compute.py": "compute.py.txt",
    "tests/conftest.py": "conftest.py.txt",
    "tests/test_{{package}}.py": "test_plugin.py.txt",
}
