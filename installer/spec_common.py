"""What the three PyInstaller specs (linux.spec, windows.spec, macos.spec) share: the modules,
data and metadata to collect, what to leave out, and the filter that drops heavy unused files.

Driven by environment variables that ``installer/build.py`` sets:

- ``IMPLICIT_STUDIO_VARIANT``: ``cpu`` (default) or ``cuda``;
- ``IMPLICIT_STUDIO_NO_EXCLUDES=1``: collect everything (to measure what the exclusions save);
- ``IMPLICIT_STUDIO_BUILD_RESOURCES``: the resources folder to bundle (default: ``resources/``);
- ``IMPLICIT_STUDIO_ICON_DIR``: where build.py put the converted icons.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APP_NAME = "implicit-studio"
ENTRY_SCRIPT = str(HERE / "launcher.py")
RUNTIME_HOOKS = [str(HERE / "rthook_implicit_studio.py")]

#: Qt modules the app does not use (their libraries, QML files and plugins stay out).
UNUSED_QT = [
    "Qt3DAnimation", "Qt3DCore", "Qt3DExtras", "Qt3DInput", "Qt3DLogic", "Qt3DRender", "QtAxContainer",
    "QtBluetooth", "QtCharts", "QtConcurrent", "QtDataVisualization", "QtDesigner", "QtGraphs",
    "QtGraphsWidgets", "QtHelp", "QtHttpServer", "QtLocation", "QtMultimedia", "QtMultimediaWidgets",
    "QtNetworkAuth", "QtNfc", "QtPdf", "QtPdfWidgets", "QtPositioning", "QtQml", "QtQuick", "QtQuick3D",
    "QtQuickControls2", "QtQuickWidgets", "QtRemoteObjects", "QtScxml", "QtSensors", "QtSerialBus",
    "QtSerialPort", "QtSpatialAudio", "QtSql", "QtStateMachine", "QtTest", "QtTextToSpeech", "QtUiTools",
    "QtWebChannel", "QtWebEngineCore", "QtWebEngineQuick", "QtWebEngineWidgets", "QtWebSockets",
]

#: Python packages never needed at run time (test tools, notebooks, other frameworks).
UNUSED_PACKAGES = [
    "pytest", "_pytest", "pytestqt", "pytest_timeout", "hypothesis", "importlinter", "IPython", "jupyter",
    "notebook", "matplotlib", "tkinter", "_tkinter", "tensorboard", "torch.utils.tensorboard",
    "torch.utils.benchmark", "torch.utils.hipify", "tensorflow", "jax", "flax", "PyQt5", "PyQt6", "PySide2",
    "app.testing", "app.testing_kit", "PyInstaller",
]

#: Metadata (dist-info) the app or its libraries read at run time through importlib.metadata:
#: the app's own (its plugin entry points) and the version checks of diffusers/transformers.
METADATA = [
    "implicit-studio", "torch", "diffusers", "transformers", "safetensors", "huggingface-hub", "tokenizers",
    "numpy", "pillow", "peft", "accelerate", "onnx", "onnxruntime", "onnxruntime-gpu", "regex", "filelock",
    "requests", "packaging", "tqdm", "pyyaml", "pyside6", "pyqtgraph", "pluggy", "sqlalchemy", "alembic",
    "platformdirs", "superqt", "scikit-image", "trimesh", "gymnasium", "h5py", "scipy", "importlib-metadata",
]

#: Libraries without a PyInstaller hook that read non-Python files of their own at import time
#: (kernels, which transformers >= 5.25 imports, opens ``_internals/python_depends.json``).
DATA_PACKAGES = ["kernels"]


def resources_source() -> Path:
    """The resources folder copied into the bundle (``IMPLICIT_STUDIO_BUILD_RESOURCES`` overrides
    the repository's ``resources/``, e.g. to build a test bundle with a tiny model)."""
    return Path(os.environ.get("IMPLICIT_STUDIO_BUILD_RESOURCES") or ROOT / "resources")


def variant() -> str:
    value = os.environ.get("IMPLICIT_STUDIO_VARIANT", "cpu").strip().lower()
    if value not in ("cpu", "cuda"):
        raise SystemExit(f"IMPLICIT_STUDIO_VARIANT must be 'cpu' or 'cuda', not {value!r}")
    return value


def excludes_enabled() -> bool:
    return os.environ.get("IMPLICIT_STUDIO_NO_EXCLUDES", "") not in ("1", "true", "yes")


def dependency_closure(root: str = "implicit-studio") -> list[str]:
    """Every installed distribution the app's package requires, directly or not (extras left out).

    Libraries read their own or each other's metadata at import time (transformers 5.25 began
    requiring ``kernels``, whose ``__init__`` asks importlib.metadata for its version), so a
    hand-kept list falls behind a fresh install; the closure follows whatever pip resolved."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, None] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen[key] = None
        for spec in dist.requires or []:
            try:
                req = Requirement(spec)
            except Exception:  # noqa: BLE001 - an unparsable requirement line: skip it
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    return list(seen)


def _metadata() -> list:
    from PyInstaller.utils.hooks import copy_metadata

    out = []
    for name in dict.fromkeys([*METADATA, *dependency_closure()]):
        try:
            out += copy_metadata(name)
        except Exception:  # noqa: BLE001 - that distribution is not installed (e.g. onnxruntime vs -gpu)
            pass
    return out


def hidden_imports() -> list[str]:
    from PyInstaller.utils.hooks import collect_submodules

    skip = ("app.testing", "app.testing_kit", "app.scaffold_template")
    mods = []
    for pkg in ("app", "plugins", "storage", "lab"):  # lab: the commands that train and evaluate
        mods += [m for m in collect_submodules(pkg) if not m.startswith(skip)]
    # diffusers resolves its pipelines and models by name through lazy modules; collect the
    # PyTorch and ONNX ones (not Flax).
    mods += collect_submodules("diffusers", filter=lambda n: "flax" not in n and ".commands" not in n)
    # alembic runs storage/migrations/env.py from its file: what it imports is invisible to analysis
    mods += ["alembic", "alembic.context", "alembic.op", "alembic.runtime.migration", "alembic.ddl.sqlite",
             "alembic.script", "sqlalchemy.dialects.sqlite", "logging.config"]
    return mods


def datas() -> list:
    from PyInstaller.utils.hooks import collect_data_files

    out = [(str(resources_source()), "resources")]
    # Alembic needs the migration scripts as .py files next to storage/migrations/__init__.
    out += collect_data_files("storage", include_py_files=True, includes=["migrations/**/*.py", "migrations/*.mako"])
    out += collect_data_files("app", excludes=["**/__pycache__/**"])
    out += collect_data_files("plugins", excludes=["**/__pycache__/**"])
    out += collect_data_files("diffusers", excludes=["**/__pycache__/**", "**/*.py", "**/*.pyi"])
    for pkg in DATA_PACKAGES:
        try:
            out += collect_data_files(pkg, excludes=["**/__pycache__/**"])
        except Exception:  # noqa: BLE001 - not installed with this set of versions
            pass
    out += _metadata()
    return out


def excludes() -> list[str]:
    if not excludes_enabled():
        return ["app.testing", "app.testing_kit"]
    return list(UNUSED_PACKAGES) + [f"PySide6.{m}" for m in UNUSED_QT]


def _drop(dest: str, cuda: bool) -> bool:
    """Whether a collected file (by its path inside the bundle) is left out."""
    d = dest.replace("\\", "/")
    name = d.rsplit("/", 1)[-1]
    # torch: C++ test executables, test and example libraries, headers
    if d.startswith("torch/bin/") and name not in ("torch_shm_manager",):
        return True
    if d.startswith("torch/lib/") and name.split(".")[0] in (
            "libtorchbind_test", "libaoti_custom_ops", "libbackend_with_compiler", "libjitbackend_test",
            "torchbind_test", "aoti_custom_ops", "backend_with_compiler", "jitbackend_test"):
        return True
    if d.startswith(("torch/include/", "torch/share/cmake/", "torch/test/")):  # torch/test: C++ test programs
        return True
    # onnxruntime-gpu's CUDA and TensorRT providers cannot run in the CPU bundle (no CUDA libraries)
    if not cuda and d.startswith("onnxruntime/capi/") and ("providers_cuda" in name or "providers_tensorrt" in name):
        return True
    # Qt: libraries, QML, translations and plugins of modules the app does not use
    if d.startswith("PySide6/"):
        if "/qml/" in d or d.startswith("PySide6/qml/"):
            return True
        if "/translations/" in d and "qtbase" not in name:
            return True
        low = name.lower()
        if "virtualkeyboard" in low:  # needs QtQml/QtQuick, which are left out
            return True
        for mod in UNUSED_QT:
            stem = mod[2:].lower() if mod.startswith("Qt") else mod.lower()
            if low.startswith((f"libqt6{stem}", f"qt6{stem}", f"qt{stem}")):
                return True
        if any(f"/plugins/{p}/" in d for p in ("sqldrivers", "multimedia", "position", "sensors",
                                               "webview", "geometryloaders", "sceneparsers", "renderers",
                                               "renderplugins", "qmltooling", "designer", "texttospeech",
                                               "canbus", "assetimporters")):
            return True
    return False


def filter_toc(toc, cuda: bool):
    """The TOC (list of (dest, src, kind)) without the files :func:`_drop` leaves out."""
    if not excludes_enabled():
        return toc
    return [entry for entry in toc if not _drop(entry[0], cuda)]


def analysis(Analysis):
    """The shared ``Analysis`` (PyInstaller passes its classes into the spec's namespace)."""
    cuda = variant() == "cuda"
    sys.path.insert(0, str(ROOT))
    a = Analysis(
        [ENTRY_SCRIPT],
        pathex=[str(ROOT)],
        binaries=[],
        datas=datas(),
        hiddenimports=hidden_imports(),
        hookspath=[],
        runtime_hooks=RUNTIME_HOOKS,
        excludes=excludes(),
        noarchive=False,
        optimize=0,
    )
    a.binaries = filter_toc(a.binaries, cuda)
    a.datas = filter_toc(a.datas, cuda)
    return a


def icon_file(kind: str) -> str | None:
    """The app icon converted by build.py (``png``, ``ico`` or ``icns``) in the build folder."""
    path = Path(os.environ.get("IMPLICIT_STUDIO_ICON_DIR", ROOT / "build" / "icons")) / f"{APP_NAME}.{kind}"
    return str(path) if path.is_file() else None
