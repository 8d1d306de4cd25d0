#!/usr/bin/env bash
# Smoke test of a built bundle: bash packaging/smoke_test.sh dist/Lookalike-VERSION-linux-x86_64.tar.gz
# (or an unpacked bundle folder). Unpacks it into a temporary folder and runs it with a bare
# environment (env -i: no Python on PATH, no PYTHON* variables, a fresh HOME); as root it also
# hides every Python installation of this machine (tmpfs over /root/.pyenv, /usr/lib/python3*,
# ...; SMOKE_NO_HIDE=1 turns that off). Checks: --version, an import of 20 Luma photos (with OCR)
# and a search, a case with its HTML and PDF evidence report, the GUI's offscreen screenshot
# (a non-blank PNG), no library of a Python installation loaded; with the -extra-packs tarball
# beside the bundle's, an import and search with those packs; times GUI start-up (5 runs).
# SMOKE_IMAGES=DIR picks another photo folder (default ../shared/datasets/luma/images).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
artefact=${1:?usage: smoke_test.sh DIST_TARBALL_OR_DIR}
images=${SMOKE_IMAGES:-$here/../shared/datasets/luma/images}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lookalike-smoke.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
step() { echo "smoke: $*"; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

if [[ -d $artefact ]]; then
    cp -a "$artefact" "$tmp/bundle"
else
    mkdir "$tmp/unpack" && tar -xzf "$artefact" -C "$tmp/unpack"
    mv "$tmp/unpack"/* "$tmp/bundle"
fi
b=$tmp/bundle
mkdir -p "$tmp/home" "$tmp/photos"

hide=()
if [[ $(id -u) == 0 && -z ${SMOKE_NO_HIDE:-} ]] && command -v unshare >/dev/null; then
    for d in /root/.pyenv /root/.local/lib /usr/lib/python3* /usr/local/lib/python3* /opt/conda; do
        [[ -d $d ]] && hide+=("$d")
    done
fi
# run CMD in a bare environment, with this machine's Python installations hidden (own mount namespace)
run() {
    local cmd=(env -i HOME="$tmp/home" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen "$@")
    if (( ${#hide[@]} )); then
        unshare -m --propagation private /bin/sh -c \
            'n=$1; shift; while [ "$n" -gt 0 ]; do mount -t tmpfs none "$1"; shift; n=$((n-1)); done; exec "$@"' \
            sh "${#hide[@]}" "${hide[@]}" "${cmd[@]}"
    else
        "${cmd[@]}"
    fi
}

for f in lookalike lookalike-gui lookalike.desktop icons/lookalike-256.png install-desktop-entry.sh \
         licenses/INDEX.txt; do
    [[ -e $b/$f ]] || fail "$f missing at the bundle's top level"
done
if (( ${#hide[@]} )); then
    step "hidden: ${hide[*]}"
    ! run python3 -c 'import encodings' 2>/dev/null || fail "a Python still runs inside the sandbox"
fi

step "--version"
# (grep reads all its input: grep -q stops at the first match, and under pipefail the writer's
# closed pipe would fail the step)
run "$b/lookalike" --version | grep '^lookalike ' >/dev/null || fail "--version"
run "$b/lookalike-gui" --help | grep 'lookalike gui' >/dev/null || fail "lookalike-gui --help"

step "index 20 photos, reading their text (OCR)"
find "$images" -maxdepth 1 -name '*.jpg' | sort | sed -n 1,20p | xargs -I{} cp {} "$tmp/photos/"
query=$(find "$tmp/photos" -name '*.jpg' | sort | sed -n 1p)
run "$b/lookalike" index "$tmp/photos" --read-text --catalog "$tmp/catalog" 2>&1 | tail -2
step "search"
# LD_DEBUG=libs (glibc) logs every shared library loaded, with its path
run env LD_DEBUG=libs LD_DEBUG_OUTPUT="$tmp/ld" "$b/lookalike" search "$query" --catalog "$tmp/catalog" --json \
    > "$tmp/search.json"
grep -q "\"path\": \"$query\"" "$tmp/search.json" || fail "the query photo is not among its own results"

step "a case and its evidence report (HTML, PDF)"
run "$b/lookalike" case check smoke "$query" --catalog "$tmp/catalog" --quiet
for ext in html pdf; do
    run "$b/lookalike" case report smoke --min-score 0 -o "$tmp/report.$ext" --catalog "$tmp/catalog" --quiet
    [[ -s $tmp/report.$ext ]] || fail "no $ext report"
done
[[ $(head -c 5 "$tmp/report.pdf") == %PDF- ]] || fail "the PDF report is not a PDF"

step "GUI screenshot (offscreen)"
run env LD_DEBUG=libs LD_DEBUG_OUTPUT="$tmp/ld" "$b/lookalike-gui" --catalog "$tmp/catalog" \
    --query "$query" --screenshot "$tmp/shot.png" --timeout 120 2>&1 | grep -v propagateSizeHints
[[ $(od -An -tx1 -N8 "$tmp/shot.png" | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "the screenshot is not a PNG"
# non-blank: a blank window compresses to a few kB, one with results and photos to far more
size=$(stat -c %s "$tmp/shot.png")
(( size > 50000 )) || fail "the screenshot is only $size bytes (blank?)"
if [[ -n ${SMOKE_KEEP_SCREENSHOT:-} ]]; then cp "$tmp/shot.png" "$SMOKE_KEEP_SCREENSHOT"; fi

step "libraries loaded from outside the bundle (search, GUI): the base system's only"
outside=$(cat "$tmp"/ld.* | sed -n 's/.*calling init: //p' | grep -v "^$b/" | sort -u)
sed 's/^/    /' <<<"$outside"
if grep -Eiq 'python|site-packages|pyenv|conda' <<<"$outside"; then
    fail "a Python installation's library was loaded"
fi

echo "smoke: bundle unpacked: $(du -sm "$b" | cut -f1) MiB"
extras=${artefact%.tar.gz}-extra-packs.tar.gz
if [[ -f $artefact && -f $extras ]]; then
    step "extra model packs unpacked over the bundle: an import with the fp32 pack"
    tar -xzf "$extras" -C "$tmp/unpack"                  # Lookalike-VERSION/_internal/models/...
    cp -a "$tmp/unpack"/*/_internal/models/. "$b/_internal/models/"
    rm -rf "$tmp/unpack"
    run "$b/lookalike" index "$tmp/photos" --model efficientnet-lite0 --catalog "$tmp/catalog-fp32" \
        2>&1 | tail -1
    run "$b/lookalike" search "$query" --catalog "$tmp/catalog-fp32" --json > "$tmp/search-fp32.json"
    grep -q "\"path\": \"$query\"" "$tmp/search-fp32.json" || fail "fp32 pack: the query is not found"
fi

step "GUI start-up (launch to window shown and event loop running), 5 runs"
times=()
for _ in 1 2 3 4 5; do
    t0=$(date +%s%N)
    run "$b/lookalike-gui" --ready-probe 2>/dev/null | grep READY >/dev/null || fail "--ready-probe"
    times+=("$(( ($(date +%s%N) - t0) / 1000000 ))")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "smoke: GUI start-up ms: $(tr '\n' ' ' <<<"$sorted")(p50 $(sed -n 3p <<<"$sorted") ms)"
echo "smoke: PASS"
