"""``lookalike dupes``: groups of near-duplicate images in the whole catalog, or, with
--not-duplicate/--confirm/--reference/--forget, a decision recorded instead."""

from __future__ import annotations

import json
import sys
import threading

from cli.common import (INTERRUPTED, OK, Progress, add_catalog_option, add_model_option, cancel_on_interrupt,
                        clip, open_catalog, print_table)


def register(sub) -> None:
    from engine.duplicates import DEFAULT_K

    p = sub.add_parser(
        "dupes", help="find groups of near-duplicate images in the catalog",
        description="Find groups of near-duplicate images in the whole catalog (kNN graph + verified "
                    "scores; every member is a verified copy of its group's representative). "
                    "With --not-duplicate/--confirm/--reference/--forget it records a decision instead.")
    add_catalog_option(p)
    p.add_argument("--threshold", default="copy", metavar="NAME|VALUE",
                   help="minimum score of a duplicate: copy (default), same-product, similar or a number in [0,1]")
    p.add_argument("--csv", metavar="FILE", help="write the groups as CSV (one row per image; - for stdout)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--new", action="store_true", dest="only_new",
                   help="check only the images added since the last scan against the catalog")
    p.add_argument("-k", type=int, default=DEFAULT_K, help=f"neighbours per image in the graph (default {DEFAULT_K})")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="show at most N groups in the text output (default 50; 0 = all)")
    p.add_argument("--include-variants", action="store_true",
                   help="also report pairs between declared variants (different products of one "
                        "item_group_id in the product feed, e.g. two colours sharing a recoloured photo)")
    p.add_argument("--stored-only", action="store_false", dest="dense",
                   help="score from the stored keypoints only: no re-check of the images that no pair "
                        "confirms as copies with their dense keypoints, no turned pass (faster; copies "
                        "under text or logos and turned copies are then missed)")
    p.add_argument("--no-turned", action="store_false", dest="turned",
                   help="no turned pass: unmatched images far from every other get no more "
                        "visual-word candidates (catalogs of up to 10,000 images) and are not embedded "
                        "turned by 90/180/270 degrees (larger ones: about 20%% faster there); turned "
                        "copies that the embedding and the first visual words miss are then missed")
    add_model_option(p, help="model pack that embeds images turned (default: the catalog's own)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    g = p.add_argument_group("decisions (remembered in the catalog; IMAGE is a path or an image id)")
    g.add_argument("--not-duplicate", nargs=2, action="append", default=[], metavar=("IMAGE", "IMAGE"),
                   help="never report this pair again")
    g.add_argument("--confirm", nargs=2, action="append", default=[], metavar=("IMAGE", "IMAGE"),
                   help="record this pair as a confirmed duplicate (always grouped)")
    g.add_argument("--forget", nargs=2, action="append", default=[], metavar=("IMAGE", "IMAGE"),
                   help="drop the decision on this pair")
    g.add_argument("--reference", action="append", default=[], metavar="IMAGE",
                   help="prefer this image as its group's representative")
    g.add_argument("--no-reference", action="append", default=[], metavar="IMAGE",
                   help="stop preferring this image as representative")
    g.add_argument("--decisions", action="store_true", help="list the recorded decisions and exit")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine import scoring
    from engine.decision_store import CONFIRMED, NOT_DUPLICATE
    from engine.duplicates import ScanCancelled, export_csv, scan, scan_model
    from engine.errors import LookalikeError
    from engine.export import check_output

    try:
        threshold = scoring.resolve_threshold(args.threshold)
    except ValueError as exc:
        raise LookalikeError(str(exc)) from None
    decide = args.not_duplicate or args.confirm or args.forget or args.reference or args.no_reference
    # a listing never writes; --new remembers where this scan stopped (under the write lock)
    with open_catalog(args, create=False, readonly=not (decide or args.only_new)) as catalog:
        if args.decisions:
            return _print_decisions(catalog, args.json)
        changes = 0
        for decision, items in ((NOT_DUPLICATE, args.not_duplicate), (CONFIRMED, args.confirm)):
            if items:
                changes += catalog.decision_store.mark_pairs([(catalog.resolve_image(a), catalog.resolve_image(b))
                                                for a, b in items], decision)
        if args.forget:
            changes += catalog.decision_store.forget_pairs([(catalog.resolve_image(a), catalog.resolve_image(b))
                                              for a, b in args.forget])
        for text in args.reference:
            catalog.decision_store.set_reference(catalog.resolve_image(text), True)
            changes += 1
        for text in args.no_reference:
            catalog.decision_store.set_reference(catalog.resolve_image(text), False)
            changes += 1
        if decide:
            print(f"recorded {changes} decision(s) in {catalog.directory}", file=sys.stderr)
            return OK

        if args.csv:       # a folder, a missing folder or a catalog file: refused before the scan
            check_output(args.csv, protect=catalog.directory)
        cancel = threading.Event()     # Ctrl+C: the scan stops between chunks; twice: at once
        try:
            with Progress(disable=args.quiet or args.json, unit="", show="stage", leave=False) as progress, \
                    cancel_on_interrupt(cancel, "the current step"):
                result = scan(catalog, threshold=threshold, k=args.k, only_new=args.only_new,
                              include_variants=args.include_variants, progress=progress,
                              dense=args.dense, turned=args.turned,
                              model=scan_model(catalog, args.model) if args.dense and args.turned else None,
                              cancel=cancel)
        except ScanCancelled:
            print("lookalike: interrupted: the scan changed nothing", file=sys.stderr)
            return INTERRUPTED
        if args.csv:
            n = export_csv(result.groups, args.csv, protect=catalog.directory)
            if args.csv != "-":
                print(f"wrote {n} rows ({len(result.groups)} groups) to {args.csv}", file=sys.stderr)
        if args.json:
            print(json.dumps(result.to_json(), ensure_ascii=False))
        elif args.csv != "-":
            _print_groups(result, args.limit)
        return OK


def _print_groups(result, limit: int) -> None:
    shown = result.groups if limit <= 0 else result.groups[:limit]
    for g in shown:
        rep = g.representative
        print(f"\ngroup {g.group_id}: {g.size} images, representative {rep.path}"
              + (f" (product {rep.record.get('product_id')})" if rep.record.get("product_id") else ""))
        rows = [[f"{m.score:.3f}" + (" ✓" if m.confirmed else ""), m.record.get("product_id") or "",
                 clip(m.record.get("title"), 40), m.path] for m in g.members]
        print_table(rows, ["score", "product", "title", "image"])
    if len(shown) < len(result.groups):
        print(f"\n… {len(result.groups) - len(shown)} more groups (use --limit 0, --csv or --json)")
    print("\n" + result.summary())


def _print_decisions(catalog, as_json: bool) -> int:
    rows = catalog.decision_store.decisions()
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return OK
    print_table([[r["decision"], r["at"], r["a_path"] or f"(gone: {r['hash_a'][:12]})",
                  r["b_path"] or f"(gone: {r['hash_b'][:12]})"] for r in rows],
                ["decision", "at", "image", "image"])
    return OK
