#!/usr/bin/env bash
# Smoke test of a built bundle: bash packaging/smoke_test.sh dist/Lookalike-VERSION-linux-x86_64.tar.gz
# (or an unpacked bundle folder). Unpacks it into a temporary folder and runs it with a bare
# environment (env -i: no Python on PATH, no PYTHONPATH, a fresh HOME), so nothing of a Python
# installation can leak in: --version, an import and a search of 20 Luma photos, the GUI's
# offscreen screenshot (checked non-blank), and the GUI start-up time (p50 of 5 runs).
# SMOKE_IMAGES=DIR picks another photo folder (default ../shared/datasets/luma/images).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
artefact=${1:?usage: smoke_test.sh DIST_TARBALL_OR_DIR}
images=${SMOKE_IMAGES:-$here/../shared/datasets/luma/images}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lookalike-smoke.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [[ -d $artefact ]]; then
    cp -a "$artefact" "$tmp/bundle"
else
    mkdir "$tmp/unpack" && tar -xzf "$artefact" -C "$tmp/unpack"
    mv "$tmp/unpack"/* "$tmp/bundle"
fi
b=$tmp/bundle
# a bare environment: system PATH without any Python of ours, its own HOME, offscreen Qt
run() { env -i HOME="$tmp/home" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen "$@"; }
mkdir -p "$tmp/home" "$tmp/photos"
step() { echo "smoke: $*"; }

for f in lookalike lookalike-gui lookalike.desktop icons/lookalike-256.png install-desktop-entry.sh licenses/INDEX.txt; do
    [[ -e $b/$f ]] || { echo "smoke: FAIL: $f missing at the bundle's top level" >&2; exit 1; }
done

step "--version"
run "$b/lookalike" --version | grep -q '^lookalike ' || { echo "smoke: FAIL: --version" >&2; exit 1; }
run "$b/lookalike-gui" --help | grep -q 'lookalike gui' || { echo "smoke: FAIL: lookalike-gui --help" >&2; exit 1; }

step "index 20 photos"
find "$images" -maxdepth 1 -name '*.jpg' | sort | head -20 | xargs -I{} cp {} "$tmp/photos/"
query=$(find "$tmp/photos" -name '*.jpg' | sort | head -1)
run "$b/lookalike" index "$tmp/photos" --catalog "$tmp/catalog" | tail -2
step "search"
# LD_DEBUG=libs (glibc) logs every shared library loaded, with its path
run env LD_DEBUG=libs LD_DEBUG_OUTPUT="$tmp/ld" "$b/lookalike" search "$query" --catalog "$tmp/catalog" --json \
    > "$tmp/search.json"
grep -q "\"path\": \"$query\"" "$tmp/search.json" \
    || { echo "smoke: FAIL: the query photo is not among its own results" >&2; head -c 600 "$tmp/search.json" >&2; exit 1; }

step "GUI screenshot (offscreen)"
run env LD_DEBUG=libs LD_DEBUG_OUTPUT="$tmp/ld" "$b/lookalike-gui" --catalog "$tmp/catalog" --query "$query" --screenshot "$tmp/shot.png" --timeout 120
[[ $(od -An -tx1 -N8 "$tmp/shot.png" | tr -d ' \n') == 89504e470d0a1a0a ]] || { echo "smoke: FAIL: not a PNG" >&2; exit 1; }
# non-blank: a blank window compresses to a few kB; a window with results and photos does not
size=$(stat -c %s "$tmp/shot.png")
(( size > 50000 )) || { echo "smoke: FAIL: screenshot only $size bytes (blank?)" >&2; exit 1; }
[[ -n ${SMOKE_KEEP_SCREENSHOT:-} ]] && cp "$tmp/shot.png" "$SMOKE_KEEP_SCREENSHOT"

step "libraries loaded from outside the bundle (search and GUI): the base system's only"
outside=$(cat "$tmp"/ld.* | sed -n 's/.*calling init: //p' | grep -v "^$b/" | sort -u)
echo "$outside" | sed 's/^/    /'
if grep -Eiq 'python|site-packages|pyenv|conda' <<<"$outside"; then
    echo "smoke: FAIL: a Python installation's library was loaded" >&2; exit 1
fi

step "GUI start-up (window shown, event loop running), 5 runs"
times=()
for _ in 1 2 3 4 5; do
    t0=$(date +%s.%N)
    run "$b/lookalike-gui" --ready-probe | grep -q READY
    times+=("$(echo "$(date +%s.%N) - $t0" | bc)")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "smoke: GUI start-up seconds: $sorted(p50 $(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p))"
echo "smoke: bundle unpacked: $(du -sm "$b" | cut -f1) MB"
echo "smoke: PASS"
