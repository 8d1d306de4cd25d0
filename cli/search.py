"""``lookalike search``: the catalog products that match query images, as a table or JSON lines:
one result per product (its best image, with how many of its photos matched), or per image with
``--all-images``."""

from __future__ import annotations

import json
import os

from cli.common import OK, PROBLEMS, add_catalog_options, clip, open_catalog, print_table


def register(sub) -> None:
    p = sub.add_parser("search", help="find the catalog products that match query images")
    add_catalog_options(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-k", type=int, default=10,
                   help="number of results (products, or images with --all-images) per query (default 10)")
    p.add_argument("--all-images", action="store_true",
                   help="one result per matching image, instead of one per product (its best "
                        "image, with how many of its photos matched)")
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")
    p.add_argument("--min-score", default="0", metavar="NAME|VALUE",
                   help="hide results below this score: a number in [0,1] or copy, same-product, similar")
    p.add_argument("--category", help="only this category (or a sub-category of it)")
    p.add_argument("--brand", help="only this brand")
    p.add_argument("--min-price", type=float)
    p.add_argument("--max-price", type=float)
    p.add_argument("--roi", metavar="X,Y,W,H", help="search with this region of the query image only")
    p.set_defaults(handler=run)


def _filters(args):
    from engine.scoring import resolve_threshold
    from engine.search import SearchFilters

    return SearchFilters(category=args.category, brand=args.brand, price_min=args.min_price,
                         price_max=args.max_price, min_score=resolve_threshold(args.min_score))


def _parse_roi(text: str | None):
    if not text:
        return None
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"lookalike search: error: --roi takes X,Y,W,H, got {text!r}") from None
    return (x, y, w, h)


def run(args) -> int:
    from engine.errors import LookalikeError
    from engine.search import Searcher
    from engine.session import load_model_for

    try:
        filters = _filters(args)
    except ValueError as exc:
        raise LookalikeError(str(exc)) from None
    roi = _parse_roi(args.roi)
    with open_catalog(args, create=False, readonly=True) as catalog:     # a search never writes
        model = load_model_for(catalog, args.model)
        searcher = Searcher(catalog, model)
        failed = 0
        for image in args.images:
            result = searcher.search_path(image, k=args.k, filters=filters, roi=roi,
                                          group="image" if args.all_images else "product")
            failed += result.error is not None
            if args.json:
                print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
            else:
                _print_result(result)
        return PROBLEMS if failed else OK


def _print_result(result) -> None:
    print(f"\n{result.query}")
    if result.error:
        print(f"  error: {result.error}")
        return
    print("  class: " + ", ".join(f"{l.name} {l.score:.0%}" for l in result.labels))
    if not result.results:
        print("  no matches")
        return
    per_product = result.group == "product"
    rows = []
    for m in result.results:
        j = m.to_json()
        rows.append([m.rank, f"{m.score:.3f}", m.strength, j["product_id"] or "", clip(j["title"], 40),
                     j["price"] or "", *([m.image_count] if per_product else []),
                     clip(os.path.basename(m.path), 36)])
    # per product: "photos" counts the product's matching images; "image" is its best one
    print_table(rows, ["#", "score", "match", "product", "title", "price",
                       *(["photos"] if per_product else []), "image"])
    t = result.timings
    print(f"  {t.get('total', 0) + t.get('decode', 0):.0f} ms")
