"""The ``lookalike`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

from . import __version__

DEBUG_ENV = "LOOKALIKE_DEBUG"


def _catalog_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", metavar="DIR", default=None,
                   help="catalog folder (default: $LOOKALIKE_CATALOG or the user data folder)")
    p.add_argument("--model", metavar="PACK", default=None,
                   help="model pack name or folder (default: the catalog's own, else $LOOKALIKE_MODEL "
                        "or the bundled default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Visual product matching: a product photo in, its class and the matching catalog products out.")
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("index", help="add images, folders or product feeds (CSV) to the catalog")
    _catalog_arg(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or feed CSVs")
    p.add_argument("--allow-outside", action="store_true",
                   help="let a feed name images outside its own folder (absolute or ../ paths)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = sub.add_parser("search", help="find the catalog products that match query images")
    _catalog_arg(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-k", type=int, default=10, help="number of results per query (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per query per line")
    p.add_argument("--min-score", default="0", metavar="NAME|VALUE",
                   help="hide results below this score: a number in [0,1] or copy, same-product, similar")
    p.add_argument("--category", help="only this category (or a sub-category of it)")
    p.add_argument("--brand", help="only this brand")
    p.add_argument("--min-price", type=float)
    p.add_argument("--max-price", type=float)
    p.add_argument("--roi", metavar="X,Y,W,H", help="search with this region of the query image only")

    p = sub.add_parser("info", help="catalog size, model, execution provider, index parameters")
    _catalog_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--errors", type=int, default=5, metavar="N", help="show the N latest ingest errors")

    p = sub.add_parser("remove", help="remove images from the catalog")
    _catalog_arg(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders to forget")
    p.add_argument("--missing", action="store_true", help="forget images whose files no longer exist")
    p.add_argument("--id", type=int, action="append", default=[], metavar="IMAGE_ID")

    p = sub.add_parser("export", help="write the catalog's products or images as CSV")
    _catalog_arg(p)
    p.add_argument("what", choices=["products", "images"])
    p.add_argument("-o", "--output", default="-", metavar="FILE", help="CSV file (default: stdout)")

    p = sub.add_parser("gui", help="start the desktop application", add_help=False)
    p.add_argument("gui_args", nargs=argparse.REMAINDER)

    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Sub-commands that live next to the engine feature they run (eval, dupes, check, bench)."""
    found = []
    for name in ("engine.evaluation", "engine.duplicates", "engine.consistency", "engine.benchmark"):
        try:
            module = __import__(name, fromlist=["register_cli"])
        except ImportError:
            continue
        if hasattr(module, "register_cli"):
            found.append(module.register_cli)
    return found


# ---------------------------------------------------------------------- commands
def open_catalog(args, *, create: bool = True, readonly: bool = False):
    from .catalog import Catalog

    return Catalog.open(args.catalog, create=create, readonly=readonly)


def cmd_index(args) -> int:
    from tqdm import tqdm

    from .ingest import ingest
    from .session import load_model_for

    with open_catalog(args) as catalog:
        model = load_model_for(catalog, args.model)
        print(f"catalog {catalog.directory} · model {model.name} on {model.provider}", file=sys.stderr)
        bar = tqdm(total=0, unit="img", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)

        def progress(done: int, total: int, message: str) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.n = done
            bar.set_postfix_str(Path(message).name[-30:] if message else "", refresh=False)
            bar.update(0)

        cancel = threading.Event()
        try:
            report = ingest(catalog, model, args.paths, progress=progress, cancel=cancel,
                            allow_outside=args.allow_outside)
        except KeyboardInterrupt:
            bar.close()
            print("interrupted: images committed so far are kept; run the same command to resume",
                  file=sys.stderr)
            return 130
        bar.close()
        for path, reason in report.failed:
            print(one_line(f"error: {path}: {reason}"), file=sys.stderr)
        for feed, problem in report.problems:
            print(one_line(f"warning: {feed}: {problem}"), file=sys.stderr)
        print(report.summary() + f" ({report.images_per_second:.0f} images/s)")
        print(f"catalog now holds {catalog.count_images()} images of {catalog.count_products()} products")
        return 1 if report.failed else 0


def _filters(args):
    from .scoring import resolve_threshold
    from .search import SearchFilters

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


def cmd_search(args) -> int:
    from .errors import LookalikeError
    from .search import Searcher
    from .session import load_model_for

    try:
        filters = _filters(args)
    except ValueError as exc:
        raise LookalikeError(str(exc)) from None
    roi = _parse_roi(args.roi)
    with open_catalog(args, create=False) as catalog:
        model = load_model_for(catalog, args.model)
        searcher = Searcher(catalog, model)
        failed = 0
        for image in args.images:
            result = searcher.search_path(image, k=args.k, filters=filters, roi=roi)
            failed += result.error is not None
            if args.json:
                print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
            else:
                _print_result(result)
        return 1 if failed else 0


def _print_result(result) -> None:
    from tabulate import tabulate

    print(f"\n{result.query}")
    if result.error:
        print(f"  error: {result.error}")
        return
    print("  class: " + ", ".join(f"{l.name} {l.score:.0%}" for l in result.labels))
    if not result.results:
        print("  no matches")
        return
    rows = []
    for m in result.results:
        j = m.to_json()
        rows.append([m.rank, f"{m.score:.3f}", m.strength, j["product_id"] or "", _clip(j["title"], 40),
                     j["price"] or "", _clip(os.path.basename(m.path), 36)])
    print(tabulate(rows, headers=["#", "score", "match", "product", "title", "price", "image"],
                   tablefmt="simple"))
    t = result.timings
    print(f"  {t.get('total', 0) + t.get('decode', 0):.0f} ms")


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def one_line(text: str) -> str:
    """``text`` as one printable line: control characters (a newline in a file name) escaped."""
    return str(text).translate(_CONTROL)


def _clip(text, n: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def cmd_info(args) -> int:
    from .model import load_model

    with open_catalog(args, create=False, readonly=True) as catalog:
        stats = catalog.stats()
        pack = args.model or catalog.meta("model_pack")
        model = load_model(pack)
        stats["model"] = {"name": model.name, "id": model.model_id, "provider": model.provider,
                          "embedding_dim": model.embedding_dim}
        stats["recent_errors"] = catalog.errors(limit=args.errors)
        if args.json:
            print(json.dumps(stats, indent=2, ensure_ascii=False))
            return 0
        print(f"catalog     {stats['catalog']}")
        print(f"images      {stats['images']}  ({stats['products_with_images']} products with images)")
        print(f"products    {stats['products']}")
        print(f"model       {model.name} ({model.model_id}), execution provider {model.provider}")
        idx = stats["index"]
        if idx:
            dims = (f"{idx['dim']} dims" if not idx.get("projection") else
                    f"{idx['dim']} dims stored as {idx['stored_dim']} (PCA {idx['projection']}, "
                    f"re-ranked with full embeddings)")
            print(f"index       HNSW cosine, {idx['count']} vectors of {dims}, M={idx['M']}, "
                  f"ef_construction={idx['ef_construction']}, ef={idx['ef']}")
        print(f"disk        {stats['disk_bytes'] / 1e6:.1f} MB")
        print(f"errors      {stats['errors']}")
        for e in stats["recent_errors"]:
            print(f"  {e['path']}: {e['reason']}")
        return 0


def cmd_remove(args) -> int:
    from .errors import LookalikeError

    if not (args.paths or args.missing or args.id):
        raise LookalikeError("lookalike remove: name PATHs, --id or --missing")
    with open_catalog(args, create=False) as catalog:
        n = 0
        if args.id:
            n += catalog.remove_images(args.id)
        if args.paths:
            n += catalog.remove_paths(args.paths)
        if args.missing:
            n += catalog.remove_missing()
        print(f"removed {n} images; catalog holds {catalog.count_images()}")
        return 0


def cmd_export(args) -> int:
    from .export import export_images, export_products, open_output

    with open_catalog(args, create=False, readonly=True) as catalog, open_output(args.output) as out:
        n = (export_products if args.what == "products" else export_images)(catalog, out)
    if args.output != "-":
        print(f"wrote {n} {args.what} to {args.output}", file=sys.stderr)
    return 0


def cmd_gui(args) -> int:
    from desktop.app import main as gui_main

    return gui_main(list(args.gui_args))


COMMANDS = {"index": cmd_index, "search": cmd_search, "info": cmd_info, "remove": cmd_remove,
            "export": cmd_export, "gui": cmd_gui}


def main(argv: list[str] | None = None) -> int:
    from .errors import LookalikeError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gui"]:          # the GUI parses its own options
        return cmd_gui(argparse.Namespace(gui_args=argv[1:]))
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None) or COMMANDS[args.command]
    try:
        return handler(args)
    except LookalikeError as exc:
        print(one_line(f"lookalike: error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        if os.environ.get(DEBUG_ENV):
            raise
        print(one_line(f"lookalike: internal error: {type(exc).__name__}: {exc} "
                       f"(set {DEBUG_ENV}=1 for details)"), file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
