"""Duplicate-finder quality on Luma: plant the 300 edited copies of eval/copies.csv into a catalog
of the 637 gallery images (eval/copies_gallery.txt), scan, and measure pair precision and recall.

    python benchmarks/dupes_luma.py --catalog /tmp/dupes-luma-cat [--threshold copy] [--sweep]

The catalog is built on first use (about a minute on 2 cores) and reused afterwards.

Pairs: the truth is the 300 (copy, original) pairs. A reported group asserts that its images are
copies of each other, so every pair of images inside a group is a predicted pair ("group pairs");
the representative-member pairs alone are reported too ("star pairs"). precision = predicted pairs
that are true / predicted pairs; recall = true pairs that end up inside one group / 300.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import duplicates, scoring  # noqa: E402
from engine.catalog import Catalog  # noqa: E402

LUMA = Path(os.environ.get("LOOKALIKE_LUMA", ROOT.parent / "shared" / "datasets" / "luma"))


def build(catalog_dir: Path) -> Catalog:
    catalog = Catalog.open(catalog_dir)
    if catalog.count_images() == 0:
        from engine.ingest import ingest
        from engine.session import load_model_for

        files = [LUMA / p.strip() for p in (LUMA / "eval" / "copies_gallery.txt").read_text().split()]
        files += [LUMA / r["query"] for r in _positives()]
        report = ingest(catalog, load_model_for(catalog), files)
        print(report.summary(), file=sys.stderr)
    return catalog


def _positives() -> list[dict]:
    with open(LUMA / "eval" / "copies.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["relevant"]]


def truth_pairs(catalog: Catalog) -> set[tuple[int, int]]:
    out = set()
    for r in _positives():
        a = catalog.image_by_path(os.path.abspath(LUMA / r["query"]))["id"]
        b = catalog.image_by_path(os.path.abspath(LUMA / r["relevant"]))["id"]
        out.add((min(a, b), max(a, b)))
    return out


def evaluate(result: duplicates.ScanResult, truth: set[tuple[int, int]]) -> dict:
    group_pairs, star_pairs = set(), set()
    for g in result.groups:
        ids = sorted(g.image_ids)
        group_pairs.update(combinations(ids, 2))
        rep = g.representative.image_id
        star_pairs.update((min(rep, m.image_id), max(rep, m.image_id)) for m in g.members)

    def pr(pred: set) -> dict:
        tp = len(pred & truth)
        return {"predicted": len(pred), "true_positives": tp,
                "precision": round(tp / len(pred), 4) if pred else 1.0,
                "recall": round(tp / len(truth), 4)}

    return {"threshold": result.threshold, "scoring": result.scoring, "groups": len(result.groups),
            "candidates": result.candidates, "verified": result.verified, "seconds": round(result.seconds, 2),
            "group_pairs": pr(group_pairs), "star_pairs": pr(star_pairs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", default="/tmp/lookalike-dupes-luma")
    ap.add_argument("--threshold", default="copy")
    ap.add_argument("-k", type=int, default=duplicates.DEFAULT_K)
    ap.add_argument("--sweep", action="store_true", help="also report a range of thresholds")
    args = ap.parse_args()
    catalog = build(Path(args.catalog))
    truth = truth_pairs(catalog)
    t = time.perf_counter()
    result = duplicates.scan(catalog, threshold=args.threshold, k=args.k)
    print(json.dumps(evaluate(result, truth)))
    if args.sweep:
        for th in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
            print(json.dumps(evaluate(duplicates.scan(catalog, threshold=th, k=args.k), truth)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
