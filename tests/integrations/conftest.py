"""Shared fixtures of the integration tests: a private copy of the bundled model."""

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bundled(tmp_path_factory) -> Path:
    """The bundled model (a copy, so a retrain replacing its files mid-run cannot mix versions)."""
    from app.paths import default_model_dir

    copy = tmp_path_factory.mktemp("bundled") / "default"
    shutil.copytree(default_model_dir(), copy)
    return copy
