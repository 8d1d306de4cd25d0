"""``lookalike check [--repair]``: verify the catalog (database, index, embeddings, files,
thumbnails) and optionally repair it. Exit 0 healthy or repaired, 1 problems remain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cli.common import OK, PROBLEMS, add_catalog_option, add_model_option, open_catalog


def register(sub) -> None:
    p = sub.add_parser("check", help="verify the catalog (database, index, files) and optionally repair it")
    add_catalog_option(p)
    add_model_option(p, help="model pack used to re-embed images during a repair (default: the catalog's own)")
    p.add_argument("--repair", action="store_true",
                   help="repair what can be repaired (rebuild the index, re-embed changed files, ...)")
    p.add_argument("--forget-missing", action="store_true",
                   help="with --repair: forget images whose files are gone from disk")
    p.add_argument("--full", action="store_true", help="SQLite integrity_check instead of quick_check (slower)")
    p.add_argument("--no-files", action="store_true", help="do not stat the image files")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.catalog_recovery import recover_folder
    from engine.consistency import check_catalog, damaged_report, emptied_report, repair_catalog
    from engine.errors import CatalogDamagedError, EmptiedCatalogError, LookalikeError
    from engine.paths import default_catalog_dir

    if args.forget_missing and not args.repair:
        raise LookalikeError("lookalike check: --forget-missing needs --repair")
    recovery = None
    try:
        # --repair starts an emptied database again empty (and says so); a check only reports it
        catalog = open_catalog(args, create=False, readonly=not args.repair, recreate_emptied=args.repair)
    except EmptiedCatalogError:
        return _print(args, emptied_report(Path(args.catalog).expanduser() if args.catalog
                                           else default_catalog_dir()))
    except CatalogDamagedError as exc:      # a database SQLite cannot open: report, or recover it
        if not args.repair:
            return _print(args, damaged_report(exc))
        recovery = recover_folder(Path(exc.path).parent)
        catalog = open_catalog(args, create=False)
    with catalog:
        if args.repair:
            model = None
            if args.model:
                from engine.session import load_model_for

                model = load_model_for(catalog, args.model)
            report = repair_catalog(catalog, forget_missing=args.forget_missing, full=args.full,
                                    model=model, recovery=recovery)
        else:
            report = check_catalog(catalog, full=args.full, files=not args.no_files)
    return _print(args, report)


def _print(args, report) -> int:
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print(report.text())
    sys.stdout.flush()
    return OK if report.healthy else PROBLEMS
