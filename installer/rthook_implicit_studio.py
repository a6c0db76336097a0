# PyInstaller runtime hook of the Implicit Studio bundles: runs before the app's first import.
#
# Third-party plugins: the folder "plugins" next to the executable and the folder "plugins" in
# the user's data folder (Linux: ~/.local/share/implicit-studio/plugins, Windows:
# %LOCALAPPDATA%\implicit-studio\plugins, macOS: ~/Library/Application Support/implicit-studio/plugins;
# IMPLICIT_STUDIO_DATA_DIR overrides it) are added to IMPLICIT_STUDIO_PLUGINS_DIR when they exist,
# so app.plugins loads every plugin module (*.py file or package) found there. Folders already
# in IMPLICIT_STUDIO_PLUGINS_DIR are kept and come first.
#
# The bundle never downloads models: HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE default to 1.
import os
import sys


def _implicit_studio_setup():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folders = []
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    if sys.platform != "darwin":  # inside a signed .app nothing may be added: use the user folder
        folders.append(os.path.join(exe_dir, "plugins"))
    data = os.environ.get("IMPLICIT_STUDIO_DATA_DIR")
    if not data:
        try:
            import platformdirs

            data = platformdirs.user_data_dir("implicit-studio", appauthor=False)
        except Exception:
            data = None
    if data:
        folders.append(os.path.join(data, "plugins"))
    current = [p for p in os.environ.get("IMPLICIT_STUDIO_PLUGINS_DIR", "").split(os.pathsep) if p.strip()]
    for folder in folders:
        if os.path.isdir(folder) and folder not in current:
            current.append(folder)
    if current:
        os.environ["IMPLICIT_STUDIO_PLUGINS_DIR"] = os.pathsep.join(current)


_implicit_studio_setup()
del _implicit_studio_setup
