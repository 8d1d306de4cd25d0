"""How the aligned comparison reads true copies and sibling colours on Luma: the ``unchanged``
share (and ``aligned`` correlation) of geometry.aligned_similarity for

* every (copy, original) pair of eval/copies.csv, grouped by edit (the query's features against
  the original's stored features, the plain or, with fewer than MARGIN_MIN_INLIERS inliers,
  the mirrored query's homography, as search does);
* every ordered pair of sibling colours, ``<style>-<colour>_<view>.jpg`` with the same style and
  view and another colour (the same photograph recoloured: ``unchanged`` should stay low).

    python benchmarks/aligned_unchanged.py [--luma DIR]

Figures and the round that used them: docs/match-quality.md ("Round 4").
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import features, geometry  # noqa: E402
from engine.imaging import load_image  # noqa: E402
from engine.scoring import MARGIN_MIN_INLIERS  # noqa: E402

LUMA = Path(os.environ.get("LOOKALIKE_LUMA", Path(__file__).resolve().parent.parent.parent / "shared/datasets/luma"))
GEOMETRY = {"rot", "persp", "scale", "crop", "pad", "blur", "flip"}
SIBLING = re.compile(r"^([a-z0-9]+)-([a-z]+)_(.+)\.jpg$")


def stored(path: Path) -> features.Features:
    return features.unpack(*features.pack(features.extract(load_image(path, min_short_side=256))))


def compare(query_path: Path, candidate: features.Features, mirror: bool = True) -> geometry.Alignment | None:
    q = features.extract(load_image(query_path, min_short_side=256), keep_image=True)
    v = geometry.verify(q, candidate)
    if mirror and v.inliers < MARGIN_MIN_INLIERS:
        m = features.mirrored_features(q)
        vm = geometry.verify(m, candidate)
        if vm.inliers > v.inliers:
            q, v = m, vm
    return geometry.aligned_similarity(q, candidate, v.homography) if v.homography is not None else None


def line(label: str, values: list[geometry.Alignment]) -> str:
    u = np.array([a.unchanged for a in values])
    c = np.array([a.ncc for a in values])
    if not len(u):
        return f"{label:34} n   0"
    return (f"{label:34} n {len(u):3d}  unchanged median {np.median(u):.3f} p10 {np.percentile(u, 10):.3f} "
            f"p90 {np.percentile(u, 90):.3f} <0.9 {np.mean(u < 0.9):.2f} >0.95 {np.mean(u > 0.95):.3f}  "
            f"aligned median {np.median(c):.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--luma", default=str(LUMA))
    args = ap.parse_args(argv)
    luma = Path(args.luma)
    cache: dict[str, features.Features] = {}
    groups: dict[str, list[geometry.Alignment]] = defaultdict(list)
    for row in csv.DictReader(open(luma / "eval/copies.csv")):
        if not row["relevant"]:
            continue
        edits = set(row["edits"].strip().split("+"))
        if row["relevant"] not in cache:
            cache[row["relevant"]] = stored(luma / row["relevant"])
        a = compare(luma / row["query"], cache[row["relevant"]])
        if a is None:
            continue
        groups["all"].append(a)
        if edits <= GEOMETRY:
            groups["geometry only"].append(a)
            groups["geometry only, with rot" if "rot" in edits else
                   "geometry only, with persp" if "persp" in edits else "geometry only, other"].append(a)
        groups["with color" if "color" in edits else "with text, no color" if "text" in edits
               else "no color, no text"].append(a)
    print("copies (query vs its original):")
    for label in ("all", "geometry only", "geometry only, with rot", "geometry only, with persp",
                  "geometry only, other", "no color, no text", "with text, no color", "with color"):
        print(" ", line(label, groups[label]))
    views = defaultdict(list)
    for path in sorted((luma / "images").glob("*.jpg")):
        m = SIBLING.match(path.name)
        if m:
            views[(m.group(1), m.group(3))].append(path)
    siblings = []
    for paths in views.values():
        for c in paths:
            cf = stored(c)
            for q in paths:
                if q != c:
                    a = compare(q, cf, mirror=False)
                    if a is not None:
                        siblings.append(a)
    print("sibling colours (same style and view, other colour):")
    print(" ", line("all ordered pairs", siblings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
