"""``lookalike eval``: search quality (R@1, R@5, mAP, micro-AP, P/R per threshold) on labelled queries,
per group when the query file has a ``group`` column, next to the raw embedding's ranking."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cli.common import OK, Progress, add_model_option, warn


def register(sub) -> None:
    from engine.evaluation import DEFAULT_K

    p = sub.add_parser("eval", help="measure search quality on labelled queries (R@1, R@5, mAP, micro-AP)")
    p.add_argument("--gallery", nargs="+", required=True, metavar="PATH",
                   help="gallery: image files, folders, .txt lists of paths or product feeds "
                        "(Merchant CSV, Shopify export; imported with their products)")
    p.add_argument("--queries", required=True, metavar="CSV",
                   help="CSV with columns query,relevant (optional group: figures per group)")
    p.add_argument("-k", "--k", type=int, default=DEFAULT_K, help="results per query (default 10)")
    p.add_argument("--root", metavar="DIR", help="folder relative paths in the CSV and .txt lists are relative to")
    add_model_option(p, help="model pack (default: the bundled default)")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="catalog folder to build/reuse for the gallery (default: a cache folder keyed by the gallery)")
    p.add_argument("--reference", choices=("cosine", "none"), default="cosine",
                   help="also rank by raw embedding cosine (exact, no verification) and report it "
                        "next to the search's figures (default: cosine)")
    p.add_argument("--read-text", action="store_true",
                   help="import the gallery reading the text on each image, as `lookalike index --read-text` "
                        "does (its words then match the words read on a query)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--details", metavar="JSONL", help="write every query's ranked results and evidence here")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.errors import LookalikeError
    from engine.evaluation import evaluate, format_summary, read_gallery, read_queries, write_details
    from engine.model import load_model

    if args.k < 1:
        raise LookalikeError("--k must be at least 1")
    queries = read_queries(args.queries, args.root)
    gallery = read_gallery(args.gallery, args.root)
    model = load_model(args.model)
    started = time.perf_counter()
    with Progress(disable=args.quiet) as progress:
        summary, rankings = evaluate(gallery, queries, model, k=args.k,
                                     catalog_dir=Path(args.cache).expanduser() if args.cache else None,
                                     reference=args.reference, progress=progress, warn=warn,
                                     read_text=args.read_text)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["gallery"] = len(gallery)
    if args.details:
        write_details(rankings, args.details)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        feeds = f" from {len(gallery.feeds)} product feed(s)" if gallery.feeds else ""
        print(f"gallery {len(gallery)} images{feeds}, {summary['seconds']} s")
        print(format_summary(summary))
    return OK
