"""Fixtures for the INR tests: one torch thread, tiny networks."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def tiny_siren3():
    from plugins.inr.models import build_model, preset

    return build_model(preset("siren", 3, 1, hidden_features=16, hidden_layers=2), seed=1)


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def pytest_configure(config):
    # pyqtgraph's GL items keep shader programs per context: let GL widgets share one, as Qt
    # requires this attribute before the QApplication exists.
    try:
        from PySide6.QtCore import QCoreApplication, Qt

        if QCoreApplication.instance() is None:
            QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)
    except ImportError:  # pragma: no cover
        pass


SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "resources" / "samples" / "inr"


@pytest.fixture
def samples():
    if not (SAMPLES / "sdf-torus.json").exists():
        pytest.fail("bundled INR samples are missing: run python -m lab.inr_samples --out resources/samples/inr")
    return SAMPLES
