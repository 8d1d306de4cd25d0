"""``lookalike index``: add images, folders or product feeds to the catalog."""

from __future__ import annotations

import sys
import threading

from cli.common import (INTERRUPTED, OK, PROBLEMS, Progress, add_catalog_options, cancel_on_interrupt,
                        one_line, open_catalog, warn)


def register(sub) -> None:
    p = sub.add_parser("index", help="add images, folders or product feeds (CSV) to the catalog")
    add_catalog_options(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or feed CSVs")
    p.add_argument("--allow-outside", action="store_true",
                   help="let a feed name images outside its own folder (absolute or ../ paths)")
    p.add_argument("--read-text", action="store_true",
                   help="also read the text on each image (OCR, about 0.3-0.5 s per image) and store its "
                        "words for matching by product text; images indexed before are read too")
    p.add_argument("--product", metavar="ID",
                   help="make the images and folders (not a feed's rows) photos of this catalog product, "
                        "already indexed ones included: reference photos shot for it, or a photo confirmed "
                        "as it (the product is then matched by all its photos)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.ingest import ingest
    from engine.session import load_model_for

    with open_catalog(args) as catalog:
        model = load_model_for(catalog, args.model)
        print(f"catalog {catalog.directory} · model {model.name} on {model.provider}", file=sys.stderr)
        progress = Progress(disable=args.quiet, show="file")
        progress.stage("indexing")
        cancel = threading.Event()
        # Ctrl+C cancels at the next batch (the worker threads finish theirs and are joined);
        # a second one exits at once (cancel_on_interrupt). The images are searchable after the
        # first pass; the second computes their local features (engine.ingest)
        with progress, cancel_on_interrupt(cancel):
            report = ingest(catalog, model, args.paths, progress=progress, cancel=cancel,
                            allow_outside=args.allow_outside, read_text=args.read_text,
                            on_searchable=lambda _report: progress.stage("local features"),
                            product=args.product)
        for path, reason in report.failed:
            print(one_line(f"error: {path}: {reason}"), file=sys.stderr)
        for feed, problem in report.problems:
            warn(f"{feed}: {problem}")
        rate = f"{report.images_per_second:.0f} images/s"
        print(report.summary() + f" ({rate} until searchable)" if report.searchable_seconds is not None
              else report.summary() + f" ({rate})")
        print(f"catalog now holds {catalog.count_images()} images of {catalog.count_products()} products")
        if report.cancelled or cancel.is_set():
            if report.searchable_seconds is not None:
                print("lookalike: interrupted: the images are searchable; their local features "
                      "(match verification, duplicates) will be completed by the next `lookalike "
                      "index` or `lookalike check --repair`", file=sys.stderr)
            else:
                print("lookalike: interrupted: the images committed so far are kept; run the same "
                      "command to resume", file=sys.stderr)
            return INTERRUPTED
        return PROBLEMS if report.failed else OK
