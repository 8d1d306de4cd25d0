"""Search latency with and without reading the pack, on the grocery phone photos.

    python benchmarks/text_latency.py --catalog /tmp/grocery-eval/products [--every 3] [-n 45]

The catalog is one `lookalike eval` (or `lookalike index ../shared/datasets/grocery/products.csv`)
built from the grocery feed. Every ``--every``-th val phone photo is searched twice, warm: with
the text read (OCR beside the visual stages) and without; prints p50 and p90 of the search's
total wall time (QueryResult.timings).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GROCERY = ROOT.parent / "shared" / "datasets" / "grocery"


def main() -> int:
    from engine.catalog import Catalog
    from engine.model import load_model
    from engine.search import Searcher

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", required=True)
    p.add_argument("--every", type=int, default=3)
    p.add_argument("-n", type=int, default=45)
    args = p.parse_args()
    queries = sorted((GROCERY / "images" / "val").rglob("*.jpg"))[::args.every][:args.n]
    model = load_model(None)
    with Catalog.open(args.catalog, create=False, readonly=True) as catalog:
        for read in (True, False):
            searcher = Searcher(catalog, model, read_text=read)
            searcher.search_path(queries[0], k=10)                 # warm: sessions, OCR models
            wall = sorted(searcher.search_path(q, k=10).timings["total"] for q in queries)
            print(f"read_text={read}: {len(wall)} queries, p50 {statistics.median(wall):.0f} ms, "
                  f"p90 {wall[int(0.9 * len(wall))]:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
