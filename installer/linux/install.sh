#!/bin/sh
# Install the unpacked Implicit Studio bundle for the current user (no root, no Python needed):
#   ./install.sh            -> ~/.local/opt/implicit-studio, ~/.local/bin/implicit-studio,
#                              a menu entry and the icon
#   ./install.sh --uninstall
# PREFIX=/some/where ./install.sh installs the program folder under $PREFIX instead.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
PREFIX=${PREFIX:-$HOME/.local/opt}
DEST="$PREFIX/implicit-studio"
BIN="$HOME/.local/bin"
if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$DEST" "$BIN/implicit-studio" "$DATA/applications/implicit-studio.desktop" \
    "$DATA/icons/hicolor/256x256/apps/implicit-studio.png" "$DATA/icons/hicolor/scalable/apps/implicit-studio.svg"
  echo "Implicit Studio removed (your sessions and plugins in $DATA/implicit-studio are kept)."
  exit 0
fi
if [ ! -x "$HERE/implicit-studio" ]; then
  echo "install.sh: run me from the unpacked implicit-studio folder" >&2
  exit 1
fi
mkdir -p "$PREFIX" "$BIN" "$DATA/applications" "$DATA/icons/hicolor/256x256/apps" "$DATA/icons/hicolor/scalable/apps"
if [ "$HERE" != "$DEST" ]; then
  rm -rf "$DEST"
  cp -a "$HERE" "$DEST"
fi
ln -sf "$DEST/implicit-studio" "$BIN/implicit-studio"
cp "$DEST/share/implicit-studio.png" "$DATA/icons/hicolor/256x256/apps/implicit-studio.png"
cp "$DEST/share/implicit-studio.svg" "$DATA/icons/hicolor/scalable/apps/implicit-studio.svg"
sed -e "s|^Exec=.*|Exec=\"$DEST/implicit-studio\"|" -e "s|^TryExec=.*|TryExec=$DEST/implicit-studio|" \
  "$DEST/share/implicit-studio.desktop" > "$DATA/applications/implicit-studio.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$DATA/applications" || true
echo "Implicit Studio installed in $DEST; start it from the menu or with $BIN/implicit-studio"
