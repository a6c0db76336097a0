"""Build the desktop bundle of Implicit Studio for the current OS with PyInstaller.

    python installer/build.py [--variant cpu|cuda] [--out dist/] [--resources DIR] [--no-excludes]
                              [--no-archive] [--check]

Produces ``OUT/implicit-studio/`` (a one-folder bundle; ``Implicit Studio.app`` on macOS), and on
Linux also ``OUT/implicit-studio-VERSION-linux-ARCH-VARIANT.tar.gz`` holding the folder with a
``.desktop`` file, the icon and ``install.sh``. ``OUT/build-info.json`` records the build time,
the sizes and the torch/onnxruntime builds inside. ``--check`` then runs the bundle's
``--self-test`` and ``--exit-after-paint`` with no Python on PATH and records their times.

The CPU variant needs a venv with the CPU torch wheel; the CUDA variant a venv with a CUDA torch
wheel (and onnxruntime-gpu). See installer/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
APP_NAME = "implicit-studio"


class BuildError(Exception):
    """The build cannot go on; the message says why."""


def _version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return m.group(1) if m else "0"


def folder_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def spec_for_platform() -> Path:
    if sys.platform.startswith("linux"):
        return HERE / "linux.spec"
    if sys.platform == "win32":
        return HERE / "windows.spec"
    if sys.platform == "darwin":
        return HERE / "macos.spec"
    raise BuildError(f"no bundle spec for platform {sys.platform!r} (Linux, Windows and macOS are supported)")


def check_environment(variant: str, resources: Path) -> dict:
    """Check PyInstaller, the torch build matching the variant, and the bundled model; return
    the versions found."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise BuildError("PyInstaller is not installed in this Python; run: pip install -e '.[installer]'") from None
    import importlib.metadata as md

    import torch

    info = {"python": platform.python_version(), "pyinstaller": md.version("pyinstaller"),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda}
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            info["onnxruntime"] = f"{dist} {md.version(dist)}"
            break
        except md.PackageNotFoundError:
            continue
    else:
        info["onnxruntime"] = None
    if variant == "cpu" and torch.version.cuda:
        raise BuildError(f"the CPU variant needs the CPU torch wheel; this venv has torch {torch.__version__} built "
                         f"for CUDA {torch.version.cuda} (install torch==X+cpu from the PyTorch CPU index)")
    if variant == "cuda" and not torch.version.cuda:
        raise BuildError(f"the CUDA variant needs a CUDA torch wheel; this venv has torch {torch.__version__} "
                         f"(CPU only). Install e.g. torch from https://download.pytorch.org/whl/cu128")
    if not resources.is_dir():
        raise BuildError(f"resources folder {resources} does not exist")
    if not (resources / "models" / "default" / "model_index.json").is_file():
        raise BuildError(f"the bundled model is missing: {resources / 'models' / 'default'} has no model_index.json "
                         f"(train it first, or pass --resources DIR with a models/default folder)")
    if not (resources / "icons" / "app.svg").is_file():
        raise BuildError(f"the app icon {resources / 'icons' / 'app.svg'} is missing")
    return info


def make_icons(svg: Path, out_dir: Path) -> dict[str, Path]:
    """Render the SVG icon to PNG (256 px) with Qt in a subprocess, then ICO and ICNS with Pillow."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{APP_NAME}.png"
    code = (
        "import sys\n"
        "from PySide6.QtGui import QGuiApplication, QImage, QPainter, QColor\n"
        "from PySide6.QtSvg import QSvgRenderer\n"
        "app = QGuiApplication(['icons'])\n"
        "r = QSvgRenderer(sys.argv[1])\n"
        "if not r.isValid(): sys.exit('invalid svg')\n"
        "img = QImage(256, 256, QImage.Format_ARGB32)\n"
        "img.fill(QColor(0, 0, 0, 0))\n"
        "p = QPainter(img); r.render(p); p.end()\n"
        "sys.exit(0 if img.save(sys.argv[2]) else 'save failed')\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", code, str(svg), str(png)], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not png.is_file():
        raise BuildError(f"rendering the icon {svg} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    from PIL import Image

    with Image.open(png) as im:
        im.save(out_dir / f"{APP_NAME}.ico", sizes=[(16, 16), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
        try:
            im.save(out_dir / f"{APP_NAME}.icns")
        except Exception:  # noqa: BLE001 - only the macOS spec needs it
            pass
    return {"png": png, "svg": svg}


def run_pyinstaller(spec: Path, out: Path, work: Path, env: dict) -> None:
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(out), "--workpath", str(work), str(spec)]
    print("build:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        raise BuildError(f"PyInstaller failed with exit status {proc.returncode} (see the output above)")


def finish_linux(bundle: Path, icons: dict[str, Path], out: Path, variant: str, archive: bool) -> Path | None:
    """Add the .desktop file, icons, install.sh and the plugins folder; make the tarball."""
    share = bundle / "share"
    share.mkdir(exist_ok=True)
    shutil.copy2(HERE / "linux" / "implicit-studio.desktop", share / "implicit-studio.desktop")
    shutil.copy2(icons["png"], share / "implicit-studio.png")
    shutil.copy2(icons["svg"], share / "implicit-studio.svg")
    shutil.copy2(HERE / "linux" / "install.sh", bundle / "install.sh")
    (bundle / "install.sh").chmod(0o755)
    plugins = bundle / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "README.txt").write_text(
        "Third-party plugins for this Implicit Studio bundle.\n\n"
        "Put a plugin module here (a .py file, or a folder with __init__.py) and restart the app:\n"
        "it is loaded like an installed plugin and shown in Plugins. Your own folder\n"
        "~/.local/share/implicit-studio/plugins works the same and survives reinstalling.\n"
        "A plugin here can import the app (app.api) and the libraries in this bundle\n"
        "(torch, numpy, diffusers, PySide6 ...), but not packages that are not bundled.\n",
        encoding="utf-8")
    if not archive:
        return None
    arch = platform.machine() or "x86_64"
    tarball = out / f"{APP_NAME}-{_version()}-linux-{arch}-{variant}.tar.gz"
    tarball.unlink(missing_ok=True)
    print(f"build: writing {tarball.name}", flush=True)
    if shutil.which("tar"):
        proc = subprocess.run(["tar", "-C", str(bundle.parent), "-czf", str(tarball), bundle.name])
        if proc.returncode != 0:
            raise BuildError(f"tar failed with exit status {proc.returncode}")
    else:
        import tarfile

        with tarfile.open(tarball, "w:gz") as tf:
            tf.add(bundle, arcname=bundle.name)
    return tarball


def bundle_executable(out: Path) -> Path:
    if sys.platform == "win32":
        return out / APP_NAME / f"{APP_NAME}-cli.exe"
    if sys.platform == "darwin":
        return out / "Implicit Studio.app" / "Contents" / "MacOS" / APP_NAME
    return out / APP_NAME / APP_NAME


def clean_env(home: Path) -> dict:
    """An environment with no Python on PATH and no venv: what a double-click gives."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "QT_QPA_PLATFORM": os.environ.get("BUNDLE_QT_QPA_PLATFORM",
                                                                                         "offscreen"),
           "LANG": "C.UTF-8"}
    for key in ("DISPLAY", "XAUTHORITY", "OMP_NUM_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    if sys.platform == "win32":
        env = dict(os.environ, HOME=str(home))
    return env


def check_bundle(exe: Path, timeout: float = 900) -> dict:
    """Run ``--self-test`` and ``--exit-after-paint`` of the built bundle in a clean environment."""
    if not exe.is_file():
        raise BuildError(f"the bundle's executable {exe} was not built")
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="implicit-studio-check-") as tmp:
        home = Path(tmp)
        env = clean_env(home)
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "--self-test", "--json"], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=tmp)
        result["self_test_s"] = round(time.perf_counter() - t0, 1)
        result["self_test_rc"] = proc.returncode
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", flush=True)
        if proc.returncode != 0:
            raise BuildError(f"the bundle's --self-test failed (exit {proc.returncode})")
        t0 = time.perf_counter()
        proc = subprocess.run([str(exe), "--exit-after-paint", "--session", str(home / "session")], env=env,
                              capture_output=True, text=True, timeout=300, cwd=tmp)
        result["window_s"] = round(time.perf_counter() - t0, 1)
        m = re.search(r"first-paint-ms:\s*(\d+)", proc.stdout)
        if proc.returncode != 0 or not m:
            raise BuildError(f"the bundle's window did not open (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout)[-2000:]}")
        result["first_paint_ms"] = int(m.group(1))
        print(f"build: window opened, first-paint-ms {result['first_paint_ms']}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="installer/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("cpu", "cuda"), default="cpu", help="torch build inside (default cpu)")
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default dist/)")
    parser.add_argument("--work", default=None, help="PyInstaller work folder (default build/pyinstaller-VARIANT)")
    parser.add_argument("--resources", default=None, help="resources folder to bundle (default resources/)")
    parser.add_argument("--no-excludes", action="store_true", help="bundle everything (to measure the exclusions)")
    parser.add_argument("--no-archive", action="store_true", help="do not write the Linux tarball")
    parser.add_argument("--check", action="store_true", help="run the bundle's self-test and window check")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    work = Path(args.work).resolve() if args.work else ROOT / "build" / f"pyinstaller-{args.variant}"
    resources = Path(args.resources).resolve() if args.resources else ROOT / "resources"
    try:
        versions = check_environment(args.variant, resources)
        spec = spec_for_platform()
        t_start = time.perf_counter()
        icons = make_icons(resources / "icons" / "app.svg", work / "icons")
        env = dict(os.environ, IMPLICIT_STUDIO_VARIANT=args.variant, IMPLICIT_STUDIO_ICON_DIR=str(work / "icons"),
                   IMPLICIT_STUDIO_BUILD_RESOURCES=str(resources),
                   IMPLICIT_STUDIO_NO_EXCLUDES="1" if args.no_excludes else "")
        out.mkdir(parents=True, exist_ok=True)
        run_pyinstaller(spec, out, work, env)
        t_bundle = time.perf_counter() - t_start
        bundle = out / APP_NAME
        tarball = None
        if sys.platform.startswith("linux"):
            tarball = finish_linux(bundle, icons, out, args.variant, archive=not args.no_archive)
        elif sys.platform == "darwin":
            bundle = out / "Implicit Studio.app"
        info = {
            "variant": args.variant, "excludes": not args.no_excludes, "platform": sys.platform,
            "version": _version(), **versions,
            "pyinstaller_s": round(t_bundle, 1), "build_s": round(time.perf_counter() - t_start, 1),
            "bundle": str(bundle), "bundle_bytes": folder_size(bundle),
            "tarball": str(tarball) if tarball else None,
            "tarball_bytes": tarball.stat().st_size if tarball else None,
        }
        if args.check:
            info.update(check_bundle(bundle_executable(out)))
    except BuildError as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 1
    (out / "build-info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    print(f"build: {bundle} {mib(info['bundle_bytes'])}"
          + (f"; {Path(info['tarball']).name} {mib(info['tarball_bytes'])}" if tarball else "")
          + f"; built in {info['build_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
