"""The catalog learning from use: phone photos confirmed as their product, then new phone photos.

    python benchmarks/grocery_feedback.py [--split test] [--photos 0 1 3] [--cache DIR]

A warehouse catalog starts as the store's feed (``products.csv``: one studio photo per
product). Each time a worker's phone photo is confirmed as a product (the app's "Add query photo
to product", ``lookalike index --product ID PHOTO``), the catalog holds one more photo of it. This
simulates that: for each K in ``--photos``, a copy of the feed's catalog gets K train phone
photos of every product (evenly spread over each product's train photos, so several sessions'
light and angles), imported with ``ingest(product=...)``, and the split's phone photos are
searched against it (``eval/<split>_phone_to_catalog.csv``, results per product: the right
product first counts, whichever of its photos represents it, so its confirmed photos are
relevant too). Printed per K: R@1 per group. The train photos are never queries, so nothing a
query shows is in the catalog.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GROCERY = Path(os.environ.get("LOOKALIKE_GROCERY",
                              Path(__file__).resolve().parent.parent.parent / "shared/datasets/grocery"))


def confirmed_photos(k: int) -> dict[str, list[Path]]:
    """product id (the catalog photo's name) -> K of its train phone photos, evenly spread."""
    by_product: dict[str, list[Path]] = {}
    for photo in sorted((GROCERY / "images" / "train").rglob("*.jpg")):
        by_product.setdefault(photo.parent.name, []).append(photo)
    out: dict[str, list[Path]] = {}
    for product, photos in by_product.items():
        if k:
            step = len(photos) / k
            out[product] = [photos[int(i * step)] for i in range(min(k, len(photos)))]
    return out


def main(argv=None) -> int:
    from engine.catalog import Catalog
    from engine.evaluation import build_gallery_catalog, read_gallery, read_queries, run_queries, summarise
    from engine.ingest import ingest
    from engine.model import load_model
    from engine.search import Searcher

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--photos", type=int, nargs="+", default=[0, 1, 3],
                    help="confirmed phone photos per product (0: the feed alone)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/grocery-feedback"))
    args = ap.parse_args(argv)
    if not (GROCERY / "products.csv").exists():
        print(f"grocery set not found at {GROCERY} (LOOKALIKE_GROCERY)", file=sys.stderr)
        return 2
    model = load_model()
    base = args.cache / "feed"
    build_gallery_catalog(read_gallery([str(GROCERY / "products.csv")]), model, base).close()
    queries = read_queries(GROCERY / "eval" / f"{args.split}_phone_to_catalog.csv")
    for k in args.photos:
        folder = args.cache / f"confirmed-{k}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(base, folder, ignore=shutil.ignore_patterns("write.lock"))
        with Catalog.open(folder) as cat:
            started = time.perf_counter()
            confirmed = confirmed_photos(k)
            for product, photos in confirmed.items():
                ingest(cat, model, photos, product=product)
            added = time.perf_counter() - started
            # a query's product is right whichever of its photos stands for it (the product id
            # is the name of its catalog photo, the query's one relevant path)
            asked = [replace(q, relevant=q.relevant | {str(p) for p in confirmed.get(Path(min(q.relevant)).stem, ())})
                     for q in queries]
            rankings = run_queries(Searcher(cat, model), asked)
            s = summarise(rankings)
            groups = " ".join(f"{g} {f['R@1']:.3f}" for g, f in s["groups"].items())
            print(f"{args.split}, {k} confirmed phone photo(s) per product ({cat.count_images()} images, "
                  f"added in {added:.1f} s): R@1 {s['R@1']:.3f} ({groups}); R@5 {s['R@5']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
