"""Duplicate-finder quality on Luma: plant the 300 edited copies of eval/copies.csv into a catalog
of the 637 gallery images (eval/copies_gallery.txt), scan, and measure pair precision and recall.

    python benchmarks/dupes_luma.py --catalog /tmp/dupes-luma-cat [--thresholds copy,0.8] [--lone] [--missed]
    python benchmarks/dupes_luma.py --copies /tmp/mycopies --catalog /tmp/dupes-mycopies-cat   # another copy set

The catalog is built on first use (about a minute on 2 cores) and reused afterwards.

Pairs: the truth is the 300 (copy, original) pairs. A reported group asserts that its images are
copies of each other, so every pair of images inside a group is a predicted pair ("group pairs");
the representative-member pairs alone are reported too ("star pairs"). precision = predicted pairs
that are true / predicted pairs; recall = true pairs that end up inside one group / 300.

The Luma gallery itself holds recoloured copies: the colour variants of one style and view
(msh10-blue_main, msh10-green_main) are the same photo with the garment recoloured, and "colour
change" is one of the planted edits. Pairs whose two images come from colour variants of one
style and view are therefore counted apart ("colour variants"): "strict" precision counts them as
false, "excluding colour variants" leaves them out of precision.

The catalog is built the way a real one is: the gallery images come with their product data (a
feed of the rows of products.csv that show gallery images, written to a temporary folder with
absolute image paths and imported as a feed: id, item_group_id, color, ...), the planted copies are
imported as bare files (an uploaded or infringing image has no feed row). Pairs between *declared
variants* (different products of one item_group_id) are not reported by the scan unless asked
for; every threshold is therefore reported twice, "variants": "excluded" (what the scan reports by
default) and "included" (``--include-variants``, the grouping before declared variants existed).
The truth and the metrics do not depend on the product data.

The gallery also holds one genuine duplicate listing: mp07-blue_alt1.jpg and mp07-blue_side_b.jpg,
two images of the same product (MP07-blue) with the same pixels (a re-encode: mean difference
0.36 grey levels). The labels do not name it, so a scan that groups the two, or a copy of one with
the other, is counted wrong by the labels. ``same_photo`` in each result counts those predicted pairs
(gallery photos of identical size whose pixels differ by less than SAME_PHOTO_DIFF on average at a
quarter of their size, not declared variants, and the planted copies of either), and
``precision_same_photos_true`` / ``recall_same_photos_true`` count them as true. The headline
figures stay the labels'.

The candidate pairs are verified once; the sweep regroups the same scores at each threshold.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import duplicates, match_policy, scoring  # noqa: E402
from engine.catalog import Catalog  # noqa: E402

LUMA = Path(os.environ.get("LOOKALIKE_LUMA", ROOT.parent / "shared" / "datasets" / "luma"))
#: the planted copies (query paths relative to ``root``) and the gallery (paths relative to LUMA,
#: or absolute); ``--copies DIR`` takes a set made by benchmarks/make_copies.py instead
SET = {"queries": LUMA / "eval" / "copies.csv", "root": LUMA, "gallery": LUMA / "eval" / "copies_gallery.txt"}


def build(catalog_dir: Path) -> Catalog:
    """The benchmark catalog: the gallery through its product feed, the planted copies as bare
    files. A catalog built before product data was imported gets the feed now (its images are
    unchanged, so the import only links them to their products)."""
    catalog = Catalog.open(catalog_dir)
    if catalog.count_images() == 0 or catalog.count_products() == 0:
        import tempfile

        from engine.ingest import ingest
        from engine.session import load_model_for

        with tempfile.TemporaryDirectory(prefix="dupes-luma-feed-") as tmp:
            feed, rows = gallery_feed(Path(tmp))
            copies = [SET["root"] / r["query"] for r in _positives()]
            report = ingest(catalog, load_model_for(catalog), [feed, *copies], allow_outside=True)
        print(f"{rows} feed rows; " + report.summary(), file=sys.stderr)
    return catalog


def gallery_feed(folder: Path) -> tuple[Path, int]:
    """products.csv restricted to the gallery of eval/copies_gallery.txt: each row keeps only its
    gallery images (absolute paths; the first one becomes image_link) and rows without any are
    left out. Returns (the feed file, its rows)."""
    gallery = {os.path.abspath(LUMA / p.strip())
               for p in SET["gallery"].read_text().split()}
    out = folder / "gallery-products.csv"
    rows = 0
    with open(LUMA / "products.csv", newline="", encoding="utf-8") as f, \
            open(out, "w", newline="", encoding="utf-8") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, reader.fieldnames)
        writer.writeheader()
        for row in reader:
            links = [row["image_link"], *row["additional_image_link"].split(",")]
            kept = [p for p in (os.path.abspath(LUMA / x.strip()) for x in links if x.strip()) if p in gallery]
            if not kept:
                continue
            row["image_link"], row["additional_image_link"] = kept[0], ",".join(kept[1:])
            writer.writerow(row)
            rows += 1
    return out, rows


def _positives() -> list[dict]:
    with open(SET["queries"], newline="") as f:
        return [r for r in csv.DictReader(f) if r["relevant"]]


def _positive_ids(catalog: Catalog) -> list[tuple[int, int, str]]:
    """(copy id, original id, edits) of each planted copy."""
    def image_id(path: Path) -> int:
        return catalog.image_by_path(os.path.abspath(path))["id"]

    return [(image_id(SET["root"] / r["query"]), image_id(LUMA / r["relevant"]), r["edits"])
            for r in _positives()]


def truth_pairs(catalog: Catalog) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b, _ in _positive_ids(catalog)}


#: mean absolute difference (grey levels, at a quarter of the size) below which two gallery
#: images are the same photo
SAME_PHOTO_DIFF = 1.0


def same_photo_pairs(catalog: Catalog, declared) -> set[tuple[int, int]]:
    """Pairs that are duplicates though the labels do not say so: two gallery images of the same
    size with the same pixels (not declared variants: those share a photo by design and are not
    reported), and each planted copy of one of them with the other."""
    import cv2

    gallery = [os.path.abspath(LUMA / p.strip()) for p in SET["gallery"].read_text().split()]
    ids = {p: catalog.image_by_path(p)["id"] for p in gallery}
    by_shape: dict[tuple, list] = {}
    for p in gallery:
        im = cv2.imread(p, cv2.IMREAD_REDUCED_COLOR_4)
        by_shape.setdefault(im.shape, []).append((ids[p], im.astype(np.int16)))
    same = set()
    for group in by_shape.values():
        for (a, ia), (b, ib) in combinations(group, 2):
            if not declared(a, b) and float(np.abs(ia - ib).mean()) < SAME_PHOTO_DIFF:
                same.add((min(a, b), max(a, b)))
    copies: dict[int, list[int]] = {}
    for copy, original, _ in _positive_ids(catalog):
        copies.setdefault(original, []).append(copy)
    out = set(same)
    for a, b in same:
        for x, y in ((a, b), (b, a)):
            out.update((min(c, y), max(c, y)) for c in copies.get(x, ()))
    return out


def _source_key(path: str, copy_of: dict[str, str]) -> tuple[str, str, str]:
    """(style, view, stem) of the gallery image an image is, or is a copy of."""
    path = copy_of.get(path, path)
    stem = Path(path).stem
    style = stem if stem.startswith("luma-") else stem.split("-", 1)[0]
    view = stem.split("_", 1)[1] if "_" in stem else ""
    return style, view, stem


def pair_classes(catalog: Catalog) -> tuple[set, callable]:
    """(truth pairs, colour_variant(a, b))."""
    copy_of = {os.path.abspath(SET["root"] / r["query"]): os.path.abspath(LUMA / r["relevant"]) for r in _positives()}
    paths = {r[0]: r[1] for r in catalog.db.conn.execute("SELECT id, path FROM images")}
    key = {i: _source_key(p, copy_of) for i, p in paths.items()}

    def colour_variant(a: int, b: int) -> bool:
        (sa, va, ta), (sb, vb, tb) = key[a], key[b]
        return sa == sb and va == vb and ta != tb

    def same_style(a: int, b: int) -> bool:
        return key[a][0] == key[b][0]

    colour_variant.same_style = same_style
    family = duplicates.variant_families(catalog, list(paths))
    colour_variant.declared = lambda a, b: match_policy.declared_variants(family, a, b)
    colour_variant.family = family
    colour_variant.same_photo = same_photo_pairs(catalog, colour_variant.declared)
    return truth_pairs(catalog), colour_variant


def evaluate(groups: list[tuple[int, list]], truth: set, colour_variant) -> dict:
    group_pairs, star_pairs = set(), set()
    for rep, members in groups:
        ids = sorted([rep] + [m for m, _ in members])
        group_pairs.update(combinations(ids, 2))
        star_pairs.update((min(rep, m), max(rep, m)) for m, _ in members)

    def pr(pred: set) -> dict:
        tp = len(pred & truth)
        variants = sum(1 for a, b in pred - truth if colour_variant(a, b))
        rest = len(pred) - variants
        other_views = sum(1 for a, b in pred - truth if not colour_variant(a, b)
                          and colour_variant.same_style(a, b))
        declared = sum(1 for a, b in pred - truth if colour_variant.declared(a, b))
        same_photo = getattr(colour_variant, "same_photo", set()) - truth
        found_same = len(pred & same_photo)
        return {"predicted": len(pred), "true": tp, "colour_variant_pairs": variants,
                "declared_variant_pairs": declared, "same_style_other_view_pairs": other_views,
                "same_photo": found_same,
                "precision_strict": round(tp / len(pred), 4) if pred else 1.0,
                "precision_excl_variants": round(tp / rest, 4) if rest else 1.0,
                "recall": round(tp / len(truth), 4),
                "precision_same_photos_true": round((tp + found_same) / len(pred), 4) if pred else 1.0,
                "recall_same_photos_true": round((tp + found_same) / (len(truth) + len(same_photo)), 4)}

    return {"groups": len(groups), "group_pairs": pr(group_pairs), "star_pairs": pr(star_pairs)}


def _edits(catalog: Catalog) -> dict[tuple[int, int], str]:
    return {(min(a, b), max(a, b)): edits for a, b, edits in _positive_ids(catalog)}


def missed_pairs(catalog: Catalog, groups, truth: set, pairs: np.ndarray, scores: np.ndarray,
                 evidence: np.ndarray | None, threshold: float) -> dict:
    """Why each true pair not inside one group was missed (with the edits of those pairs)."""
    from collections import Counter

    inside = set()
    for rep, members in groups:
        inside.update(combinations(sorted([rep] + [m for m, _ in members]), 2))
    score = {tuple(p): s for p, s in zip(pairs.tolist(), scores.tolist())}
    missed = sorted(truth - inside)
    if evidence is not None:        # as the scan measured them
        row = {tuple(p): n for n, p in enumerate(pairs.tolist())}
        ev = [evidence[row[p]] if p in row else np.zeros(len(duplicates.EVIDENCE)) for p in missed]
    else:
        ev, _ = duplicates.pair_evidence(catalog, np.array(missed, np.int64).reshape(-1, 2))
    edits = _edits(catalog)
    reasons, by_edit, below = Counter(), {}, []
    for p, e in zip(missed, ev):
        s = score.get(p)
        turned = "rot" in edits[p] and s is None
        if s is None:
            why = "not a candidate" + (" (rot)" if turned else "")
        elif e[1] < scoring.MARGIN_MIN_INLIERS:
            why = "fewer than 15 inliers" + (" (flip)" if "flip" in edits[p] else "")
        elif s < threshold:
            why = "verified, scored below the threshold"
            below.append(s)
        else:
            why = "above the threshold, not grouped together"
        reasons[why] += 1
        by_edit.setdefault(why, Counter()).update(edits[p].split("+"))
    return {"missed": len(missed), "reasons": dict(reasons),
            "edits": {k: dict(v) for k, v in by_edit.items()},
            "below_threshold_score_quartiles": [round(float(q), 3) for q in np.quantile(below, [0.25, 0.5, 0.75])]
            if below else []}


def verification_rate(catalog: Catalog, n: int, k: int) -> int:
    pairs, cosine, _ = duplicates.knn_candidates(
        catalog, catalog.vectors.index(), since_version=-1, k=k, floor=duplicates.CANDIDATE_FLOOR,
        expand_above=duplicates.EXPAND_ABOVE, ef=duplicates.SEARCH_EF, progress=None, cancel=None)
    sel = np.random.default_rng(0).choice(len(pairs), min(n, len(pairs)), replace=False)
    pairs, cosine = pairs[sel], cosine[sel]
    limit = duplicates.VERIFY_THREADS_MAX
    for threads in sorted({1, duplicates.verify_workers()}):
        duplicates.VERIFY_THREADS_MAX = threads
        out = np.zeros((len(pairs), len(duplicates.EVIDENCE)))
        t, cpu = time.perf_counter(), time.process_time()
        duplicates.verify_parallel(catalog, duplicates.pair_evidence, pairs, cosine,
                                    np.arange(len(pairs)), out, None, None)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(json.dumps({"threads": threads, "pairs": len(pairs), "wall_s": round(wall, 1),
                          "cpu_s": round(cpu, 1), "pairs_per_wall_s": round(len(pairs) / wall),
                          "pairs_per_cpu_s": round(len(pairs) / cpu), "load": round(os.getloadavg()[0], 1)}))
    duplicates.VERIFY_THREADS_MAX = limit
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", default="/tmp/lookalike-dupes-luma")
    ap.add_argument("-k", type=int, default=duplicates.DEFAULT_K)
    ap.add_argument("--thresholds", default="copy,0.5,0.6,0.7,0.8,0.85,0.9,0.95,0.98",
                    help="comma-separated thresholds to report (names or numbers)")
    ap.add_argument("--lone", action="store_true",
                    help="score each pair alone (match_policy.pair_scores) instead of against its "
                         "images' other candidates (the scan's default)")
    ap.add_argument("--no-words", action="store_true",
                    help="without the visual-word candidates (engine.visual_words: turned copies)")
    ap.add_argument("--no-dense", action="store_true",
                    help="without matching unconfirmed images again from their files with more keypoints "
                         "(match_policy.dense_recheck: copies under text)")
    ap.add_argument("--no-turned", action="store_true",
                    help="without the turned pass (scan(turned=False): no more word candidates and no "
                         "turned embeddings for unconfirmed, isolated images)")
    ap.add_argument("--missed", action="store_true",
                    help="after the sweep, why the true pairs missed at the first threshold were missed")
    ap.add_argument("--rate", type=int, default=0, metavar="N",
                    help="only time the verification of N random candidate pairs (1 thread, then one per core)")
    ap.add_argument("--copies", metavar="DIR",
                    help="plant the copies of a set made by benchmarks/make_copies.py (DIR/queries.csv, "
                         "DIR/gallery.txt) instead of Luma's eval/copies.csv; use its own --catalog")
    args = ap.parse_args()
    if args.copies:
        d = Path(args.copies).resolve()
        SET.update(queries=d / "queries.csv", root=d, gallery=d / "gallery.txt")
    catalog = build(Path(args.catalog))
    if args.rate:
        return verification_rate(catalog, args.rate, args.k)
    truth, colour_variant = pair_classes(catalog)
    t, cpu = time.perf_counter(), time.process_time()
    result = duplicates.scan(catalog, threshold=1.0, k=args.k, with_records=False, keep_candidates=True,
                             verifier=duplicates.verify_pairs if args.lone else None, words=not args.no_words,
                             dense=not args.no_dense, turned=not args.no_turned,
                             model=None if args.no_dense or args.no_turned else duplicates.scan_model(catalog))
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    pairs, scores = result.candidate_pairs, result.candidate_scores
    found = {tuple(p) for p in pairs.tolist()}
    area = duplicates.image_areas(catalog, np.unique(pairs))
    print(json.dumps({"scoring": result.scoring, "images": result.images, "k": args.k,
                      "candidate_pairs": result.candidates, "scan_seconds": round(seconds, 1),
                      "scan_cpu_seconds": round(cpu, 1), "load": round(os.getloadavg()[0], 1),
                      "verify_seconds": round(result.timings.get("verify", 0), 1),
                      "words_seconds": round(result.timings.get("words", 0), 2),
                      "dense_seconds": round(result.timings.get("dense", 0), 1), "rechecked": result.rechecked,
                      "turned": result.turned,
                      "true_pairs_among_candidates": len(found & truth), "true_pairs": len(truth),
                      "colour_variant_candidates": sum(colour_variant(a, b) for a, b in found - truth),
                      "declared_variant_candidates": sum(colour_variant.declared(a, b) for a, b in found),
                      "images_with_item_group": len(colour_variant.family)}))
    family = colour_variant.family
    first = None
    for text in args.thresholds.split(","):
        th = scoring.resolve_threshold(text)
        keep = scores >= th
        kept_pairs, kept_scores = pairs[keep], scores[keep]
        declared = duplicates.declared_variant_mask(kept_pairs, family)
        for included in (True, False):
            # what scan() reports: declared-variant pairs dropped and kept apart unless included
            sel = np.ones(len(kept_pairs), bool) if included else ~declared
            groups = duplicates.group_pairs(kept_pairs[sel], kept_scores[sel], area=area,
                                            family=None if included else family)
            if not included:
                first = first or (groups, th)   # the default report at the first threshold
            print(json.dumps({"threshold": text, "value": th, "variants": "included" if included else "excluded",
                              "declared_variant_pairs_verified": int(declared.sum()),
                              **evaluate(groups, truth, colour_variant)}))
    if args.missed:
        print(json.dumps(missed_pairs(catalog, first[0], truth, pairs, scores, result.candidate_evidence, first[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
