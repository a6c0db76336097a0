"""The bundle's file filter (installer/spec_common.py) and runtime hook, without building."""

import importlib.util
import os
import runpy
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "installer"


@pytest.fixture
def common(monkeypatch):
    monkeypatch.delenv("IMPLICIT_STUDIO_NO_EXCLUDES", raising=False)
    spec = importlib.util.spec_from_file_location("spec_common_under_test", HERE / "spec_common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


KEPT = [
    "torch/lib/libtorch_cpu.so", "torch/bin/torch_shm_manager", "torch/testing/__init__.py",
    "PySide6/Qt/lib/libQt6Widgets.so.6", "PySide6/Qt/lib/libQt6Svg.so.6", "PySide6/Qt/lib/libQt6OpenGLWidgets.so.6",
    "PySide6/QtWidgets.abi3.so", "PySide6/Qt/plugins/platforms/libqxcb.so", "PySide6/Qt/plugins/platforms/libqwayland.so",
    "PySide6/Qt/translations/qtbase_de.qm", "onnxruntime/capi/libonnxruntime.so.1.31.1",
    "onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so",
]
DROPPED = [
    "torch/bin/test_api", "torch/bin/protoc", "torch/test/Dict_test", "torch/lib/libtorchbind_test.so",
    "torch/lib/libjitbackend_test.so", "torch/include/ATen/ATen.h",
    "PySide6/Qt/lib/libQt6WebEngineCore.so.6", "PySide6/Qt/lib/libQt6Quick.so.6", "PySide6/Qt/lib/libQt63DCore.so.6",
    "PySide6/Qt/lib/libQt6Pdf.so.6", "PySide6/QtWebEngineCore.abi3.so", "PySide6/Qt/qml/QtQuick/qmldir",
    "PySide6/Qt/translations/qtwebengine_de.qm", "PySide6/Qt/lib/libQt6VirtualKeyboard.so.6",
    "PySide6/Qt/plugins/sqldrivers/libqsqlite.so",
]


def test_cpu_filter_keeps_what_runs_and_drops_tests_and_unused_qt(common):
    for dest in KEPT:
        assert not common._drop(dest, cuda=False), dest
    for dest in DROPPED:
        assert common._drop(dest, cuda=False), dest
    assert common._drop("onnxruntime/capi/libonnxruntime_providers_cuda.so", cuda=False)
    assert common._drop("onnxruntime/capi/libonnxruntime_providers_tensorrt.so", cuda=False)


def test_cuda_filter_keeps_the_cuda_providers(common):
    assert not common._drop("onnxruntime/capi/libonnxruntime_providers_cuda.so", cuda=True)
    assert common._drop("torch/bin/test_api", cuda=True)


def test_no_excludes_keeps_everything(common, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_NO_EXCLUDES", "1")
    toc = [(d, "/src/" + d, "BINARY") for d in DROPPED]
    assert common.filter_toc(toc, cuda=False) == toc
    monkeypatch.delenv("IMPLICIT_STUDIO_NO_EXCLUDES")
    assert common.filter_toc(toc + [(KEPT[0], "/x", "BINARY")], cuda=False) == [(KEPT[0], "/x", "BINARY")]


def test_variant_is_checked(common, monkeypatch):
    monkeypatch.setenv("IMPLICIT_STUDIO_VARIANT", "rocm")
    with pytest.raises(SystemExit, match="must be 'cpu' or 'cuda'"):
        common.variant()


def test_runtime_hook_adds_existing_plugin_folders(tmp_path, monkeypatch):
    exe_dir = tmp_path / "bundle"
    (exe_dir / "plugins").mkdir(parents=True)
    data = tmp_path / "data"
    (data / "plugins").mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(exe_dir / "implicit-studio"))
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(data))
    monkeypatch.setenv("IMPLICIT_STUDIO_PLUGINS_DIR", str(tmp_path / "mine"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    runpy.run_path(str(HERE / "rthook_implicit_studio.py"))
    folders = os.environ["IMPLICIT_STUDIO_PLUGINS_DIR"].split(os.pathsep)
    expected = [str(tmp_path / "mine")]
    if sys.platform != "darwin":
        expected.append(str(exe_dir / "plugins"))
    expected.append(str(data / "plugins"))
    assert folders == expected
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_runtime_hook_skips_missing_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "implicit-studio"))
    monkeypatch.setenv("IMPLICIT_STUDIO_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.delenv("IMPLICIT_STUDIO_PLUGINS_DIR", raising=False)
    runpy.run_path(str(HERE / "rthook_implicit_studio.py"))
    assert "IMPLICIT_STUDIO_PLUGINS_DIR" not in os.environ


def _build_module():
    spec = importlib.util.spec_from_file_location("installer_build_under_test", HERE / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_refuses_resources_without_the_model(tmp_path):
    pytest.importorskip("PyInstaller")
    build = _build_module()
    (tmp_path / "icons").mkdir()
    with pytest.raises(build.BuildError, match="bundled model is missing"):
        build.check_environment("cpu", tmp_path)
    with pytest.raises(build.BuildError, match="does not exist"):
        build.check_environment("cpu", tmp_path / "nowhere")


def test_build_refuses_the_wrong_torch_for_the_variant(tmp_path):
    pytest.importorskip("PyInstaller")
    import torch

    build = _build_module()
    wrong = "cpu" if torch.version.cuda else "cuda"
    with pytest.raises(build.BuildError, match="variant needs"):
        build.check_environment(wrong, tmp_path)


def test_bundled_metadata_follows_what_pip_installed(common):
    # libraries read distribution metadata at import (kernels' __init__ asks for its own version;
    # transformers 5.25 started requiring kernels): the bundle copies the whole dependency closure
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    closure = set(common.dependency_closure())
    assert {"implicit-studio", "torch", "diffusers", "transformers", "pyside6"} <= closure
    # every installed requirement of transformers (not an extra) is in it, whatever this version needs
    for spec in md.distribution("transformers").requires or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        assert canonicalize_name(req.name) in closure, req.name
    # extras stay out (PyInstaller comes only with the [installer] extra)
    assert "pyinstaller" not in closure


def test_data_files_that_libraries_open_at_import_are_bundled(common):
    pytest.importorskip("PyInstaller")
    kernels = pytest.importorskip("kernels")
    # kernels' __init__ reads this file; without it the bundle's first generation fails
    wanted = Path(kernels.__file__).parent / "_internals" / "python_depends.json"
    assert wanted.is_file()
    sources = {Path(src).resolve() for src, _dest in common.datas()}
    assert wanted.resolve() in sources
