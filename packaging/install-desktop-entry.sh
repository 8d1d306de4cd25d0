#!/bin/sh
# Puts Lookalike into the desktop menu: a .desktop entry pointing at this unpacked bundle and its
# icon, for the current user (~/.local/share). Run it again after moving the bundle;
# `install-desktop-entry.sh --remove` takes the entry out again.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
apps=$data/applications
icons=$data/icons/hicolor
if [ "${1:-}" = "--remove" ]; then
    rm -f "$apps/lookalike.desktop"
    for size in 48 128 256; do rm -f "$icons/${size}x$size/apps/lookalike.png"; done
    rm -f "$icons/scalable/apps/lookalike.svg"
    echo "removed the Lookalike desktop entry"
    exit 0
fi
mkdir -p "$apps"
for size in 48 128 256; do
    mkdir -p "$icons/${size}x$size/apps"
    cp "$here/icons/lookalike-$size.png" "$icons/${size}x$size/apps/lookalike.png"
done
mkdir -p "$icons/scalable/apps" && cp "$here/icons/lookalike.svg" "$icons/scalable/apps/lookalike.svg"
# absolute paths: the menu does not search the bundle folder; quoted for paths with spaces
sed -e "s|^Exec=.*|Exec=\"$here/lookalike-gui\" %F|" -e "s|^TryExec=.*|TryExec=$here/lookalike-gui|" \
    "$here/lookalike.desktop" > "$apps/lookalike.desktop"
chmod 644 "$apps/lookalike.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$icons" || true
echo "installed $apps/lookalike.desktop -> $here/lookalike-gui"
