#!/usr/bin/env bash
# Builds the self-contained Linux bundle: dist/Lookalike-VERSION-linux-x86_64.tar.gz, which
# unpacks to Lookalike-VERSION/ with `lookalike` (CLI), `lookalike-gui` (app), the .desktop
# entry, icons, install-desktop-entry.sh and licenses/. Needs Python 3.11 with venv and pip (the
# packages come from PyPI, into build/venv); a few minutes. Test it with packaging/smoke_test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
venv=build/venv
start=$(date +%s)

# the build environment: the run-time dependencies and PyInstaller only (no test tools, no
# torch), with OpenCV rebuilt without the parts the app never loads (build_opencv.sh);
# reinstalled when pyproject.toml or the OpenCV build changes
stamp=$(cat pyproject.toml packaging/build_opencv.sh | sha256sum | cut -c1-16)
if [[ ! -x $venv/bin/python || $(cat "$venv/.stamp" 2>/dev/null) != "$stamp" ]]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q -e ".[bundle]"
    opencv=$(bash packaging/build_opencv.sh "$venv/bin/python" build/wheels)
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$opencv"
    echo "$stamp" > "$venv/.stamp"
fi
version=$("$venv/bin/python" -c 'import engine; print(engine.__version__)')
name=Lookalike-$version
echo "build: $name with $("$venv/bin/python" --version), PyInstaller $("$venv/bin/python" -m PyInstaller --version)"

"$venv/bin/python" -m PyInstaller --noconfirm --log-level WARN --distpath build/pyinstaller \
    --workpath build/pyinstaller-work packaging/lookalike.spec

stage=build/stage/$name
rm -rf build/stage && mkdir -p build/stage
mv build/pyinstaller/lookalike "$stage"
# strip debug symbols, but never from the libraries auditwheel edited with patchelf (those it
# vendors into *.libs/, and the modules it pointed there with an $ORIGIN run path): strip breaks
# them ("ELF load command address/offset not page-aligned"). libpython and lib-dynload keep the
# build machine's absolute run path; they strip cleanly (libpython 22 -> 5.5 MiB).
find "$stage/_internal" -type f -name '*.so*' -not -path '*.libs/*' -print0 |
    while IFS= read -r -d '' lib; do
        if file -b "$lib" | grep 'not stripped' >/dev/null && ! readelf -d "$lib" | grep -E '(RPATH|RUNPATH).*\$ORIGIN' >/dev/null; then
            strip --strip-unneeded "$lib"
        fi
    done
ln -s lookalike "$stage/lookalike-gui"            # same executable; started by this name, the app
cp packaging/lookalike.desktop packaging/install-desktop-entry.sh "$stage/"
QT_QPA_PLATFORM=offscreen "$venv/bin/python" packaging/make_icons.py "$stage/icons"
"$venv/bin/python" packaging/collect_licenses.py "$stage"
cat > "$stage/README.txt" <<TXT
Lookalike $version for Linux x86_64: visual product matching, no Python or network needed.

  ./lookalike-gui                  the desktop app
  ./lookalike --help               the command line (lookalike index DIR, lookalike search IMAGE, ...)
  ./install-desktop-entry.sh       put Lookalike into the desktop menu (run it again after moving
                                   this folder; --remove takes it out)

licenses/INDEX.txt lists the bundled third-party components and their licences.
TXT

mkdir -p dist
tarball=dist/$name-linux-x86_64.tar.gz
tar -C build/stage -cf - "$name" | gzip -6 > "$tarball"
# the model packs left out of the bundle (bundle_data.BUNDLED_PACKS), as a tarball that unpacks
# over it: tar -xzf ...-extra-packs.tar.gz in the folder that holds Lookalike-VERSION/
rm -rf build/extras && mkdir -p build/extras
"$venv/bin/python" packaging/bundle_data.py | while IFS=$'\t' read -r src dest; do
    mkdir -p "build/extras/$name/_internal/$dest" && cp "$src" "build/extras/$name/_internal/$dest/"
done
extras=dist/$name-linux-x86_64-extra-packs.tar.gz
tar -C build/extras -cf - "$name" | gzip -6 > "$extras"
echo "build: $tarball ($(du -sm "$tarball" | cut -f1) MiB; unpacked $(du -sm "$stage" | cut -f1) MiB;" \
    "$(du -sb "$stage" | cut -f1) bytes), $extras, in $(( $(date +%s) - start )) s"
