"""Text-only product matching on the grocery set: phone photo -> product, by the words read on it.

    python benchmarks/text_match_grocery.py [--split val test] [--cache DIR] [--ocr-only] [--import-cost N]

The gallery is ``products.csv`` imported with its catalog photos (``ingest(read_text=True)``,
so each photo's words are stored as an import stores them). For each query of
``eval/<split>_phone_to_catalog.csv`` the words read on the phone photo are matched to the
products (engine.text_match) and the top product counts if it is the query's product (a tie of
k products for the top counts 1/k; no words matched: a miss). Printed per split: text-only R@1
per group, with and without the catalog photos' words in the products' text; how well the score
separates the right product from the wrong ones over all queries at once (pooled average
precision and ROC AUC); and the reading time per phone photo, as measured when it was read (the
cache keeps it: a busy machine inflates it). ``--import-cost N`` also times fresh imports.

OCR results are cached in ``--cache`` (default ``$XDG_CACHE_HOME/lookalike-bench/grocery-text``,
keyed by the reader), so a rerun only matches.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.text_reading import READER_ID, normalise_words  # noqa: E402

GROCERY = Path(os.environ.get("LOOKALIKE_GROCERY",
                              Path(__file__).resolve().parent.parent.parent / "shared/datasets/grocery"))
GROUPS = ("Packages", "Fruit", "Vegetables")


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "lookalike-bench" / "grocery-text"


def queries(split: str) -> list[dict]:
    with open(GROCERY / "eval" / f"{split}_phone_to_catalog.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def product_of(catalog_photo: str) -> str:
    """catalog/<Product>.jpg -> the product id products.csv gives it."""
    return Path(catalog_photo).stem


# ---------------------------------------------------------------------- reading (cached)
def read_all(paths: list[str], cache: Path) -> dict[str, dict]:
    """relative path -> {"lines": [[text, confidence], ...], "seconds": s}, read once."""
    from engine.imaging import load_image
    from engine.text_reading import read_text

    fn = cache / f"ocr-{READER_ID.replace('/', '_')}.json"
    done = json.loads(fn.read_text()) if fn.exists() else {}
    todo = [p for p in paths if p not in done]
    last = time.monotonic()
    for i, p in enumerate(todo):
        r = read_text(load_image(GROCERY / p))
        done[p] = {"lines": [[x.text, round(x.confidence, 4)] for x in r.lines], "seconds": r.seconds}
        if time.monotonic() - last > 30 or i == len(todo) - 1:
            fn.parent.mkdir(parents=True, exist_ok=True)
            tmp = fn.with_suffix(".tmp")
            tmp.write_text(json.dumps(done))
            os.replace(tmp, fn)
            last = time.monotonic()
            print(f"  read {i + 1}/{len(todo)}", file=sys.stderr, flush=True)
    return done


def words_of(entry: dict) -> list[str]:
    from engine.text_reading import MIN_CONFIDENCE

    out: dict[str, None] = {}
    for text, conf in entry["lines"]:
        if conf >= MIN_CONFIDENCE:
            out.update(dict.fromkeys(normalise_words(text)))
    return list(out)


# ---------------------------------------------------------------------- the gallery
def gallery_catalog(cache: Path, model):
    """products.csv and its catalog photos imported with read_text, kept in the cache."""
    from engine.catalog import Catalog
    from engine.ingest import ingest

    folder = cache / f"catalog-{model.model_id.replace('@', '-')}-{READER_ID.replace('/', '_')}"
    cat = Catalog.open(folder)
    report = ingest(cat, model, [GROCERY / "products.csv"], read_text=True)
    if report.failed:
        raise SystemExit(f"gallery import failed: {report.failed[:3]}")
    return cat


def evaluate(index, rows: list[dict], ocr: dict) -> dict:
    """Text-only R@1 per group, and the pooled separation of right and wrong products."""
    products = index.product_ids
    scores = np.zeros((len(rows), len(products)))
    col = {p: j for j, p in enumerate(products)}
    truth = np.array([col[product_of(r["relevant"])] for r in rows])
    for i, r in enumerate(rows):
        for pid, m in index.match(words_of(ocr[r["query"]])).items():
            scores[i, col[pid]] = m.score
    # a tie for the top counts 1/k (a random pick among the k tied); no match at all is a miss
    best = scores.max(axis=1, keepdims=True)
    tied = (scores == best) & (best > 0)
    hit = tied[np.arange(len(rows)), truth] / np.maximum(tied.sum(axis=1), 1)
    groups = np.array([r["group"] for r in rows])
    right = np.zeros_like(scores, bool)
    right[np.arange(len(rows)), truth] = True
    out = {g: float(hit[groups == g].mean()) for g in GROUPS if (groups == g).any()}
    out["all"] = float(hit.mean())
    pk = groups == "Packages"
    out["AP Packages"], out["AUC Packages"] = separation(scores[pk].ravel(), right[pk].ravel())
    out["AP all"], out["AUC all"] = separation(scores.ravel(), right.ravel())
    return out


def separation(scores: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """Average precision and ROC AUC of ``scores`` for telling right (query, product) pairs from
    wrong ones, over all queries at once (so a score must mean the same in every query)."""
    order = np.argsort(-scores, kind="stable")
    hits = right[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    ap = float((precision * hits).sum() / max(hits.sum(), 1))
    ranks = _ranks(scores)
    n_pos, n_neg = int(right.sum()), int((~right).sum())
    auc = float((ranks[right].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1))
    return ap, auc


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def reading_times(ocr: dict, rows: list[dict]) -> str:
    out = []
    for g in GROUPS:
        t = np.array([ocr[r["query"]]["seconds"] for r in rows if r["group"] == g]) * 1000
        if len(t):
            out.append(f"{g} {t.mean():.0f} ms (median {np.median(t):.0f}, p90 {np.percentile(t, 90):.0f})")
    return "; ".join(out)


def import_cost(model, paths: list[Path], rounds: int = 2) -> str:
    """Seconds per image of a fresh import of ``paths``, without and with read_text, alternated."""
    import tempfile

    from engine.catalog import Catalog
    from engine.ingest import ingest

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for read in (False, True):
            with tempfile.TemporaryDirectory() as tmp, Catalog.open(tmp) as cat:
                report = ingest(cat, model, paths, read_text=read)
                times[read].append(report.seconds / max(report.added, 1))
    plain, read = min(times[False]), min(times[True])
    return (f"{len(paths)} images: {plain * 1000:.0f} ms/image plain, {read * 1000:.0f} ms/image with "
            f"read_text (+{(read - plain) * 1000:.0f} ms; best of {rounds})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", nargs="+", default=["val", "test"], choices=["val", "test"])
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--ocr-only", action="store_true", help="read the query photos into the cache, then stop")
    ap.add_argument("--import-cost", type=int, default=0, metavar="N",
                    help="also time importing N phone photos and the catalog photos, with and without read_text")
    args = ap.parse_args(argv)
    if not (GROCERY / "products.csv").exists():
        print(f"grocery set not found at {GROCERY} (LOOKALIKE_GROCERY)", file=sys.stderr)
        return 2
    rows = {s: queries(s) for s in args.split}
    ocr = read_all([r["query"] for s in args.split for r in rows[s]], args.cache)
    if args.ocr_only:
        return 0
    from engine.model import load_model
    from engine.text_match import ProductTextIndex

    model = load_model()
    with gallery_catalog(args.cache, model) as cat:
        t = time.perf_counter()
        with_read = ProductTextIndex.build(cat)
        build_ms = (time.perf_counter() - t) * 1000
        without = ProductTextIndex.build(cat, read_words=False)
    print(f"gallery: {with_read.n_products} products; index built in {build_ms:.1f} ms")
    if args.import_cost:
        phone = [GROCERY / r["query"] for r in rows[args.split[0]]][:: max(1, len(rows[args.split[0]]) // args.import_cost)]
        print("import, phone photos (348 px):", import_cost(model, phone[:args.import_cost]))
        print("import, catalog photos:", import_cost(model, sorted((GROCERY / "catalog").glob("*.jpg"))))
    for split in args.split:
        print(f"\n{split}: {len(rows[split])} queries; reading time per phone photo: "
              f"{reading_times(ocr, rows[split])}")
        for name, index in (("product data", without), ("+ catalog photos' words", with_read)):
            m = evaluate(index, rows[split], ocr)
            r1 = " ".join(f"{g} {m[g]:.3f}" for g in GROUPS + ("all",))
            print(f"  {name:26s} text-only R@1: {r1} | pooled AP/AUC Packages {m['AP Packages']:.3f}/"
                  f"{m['AUC Packages']:.3f}, all {m['AP all']:.3f}/{m['AUC all']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
