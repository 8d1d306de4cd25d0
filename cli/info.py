"""``lookalike info``: catalog size, model, execution provider, index parameters, latest errors."""

from __future__ import annotations

import json

from cli.common import OK, add_catalog_options, open_catalog
from cli.vectors import describe


def register(sub) -> None:
    p = sub.add_parser("info", help="catalog size, model, execution provider, index parameters")
    add_catalog_options(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--errors", type=int, default=5, metavar="N", help="show the N latest ingest errors")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.model import load_model

    with open_catalog(args, create=False, readonly=True) as catalog:
        stats = catalog.stats()
        pack = args.model or catalog.meta("model_pack")
        model = load_model(pack)
        stats["model"] = {"name": model.name, "id": model.model_id, "provider": model.provider,
                          "embedding_dim": model.embedding_dim}
        stats["recent_errors"] = catalog.errors(limit=args.errors)
        if args.json:
            print(json.dumps(stats, indent=2, ensure_ascii=False))
            return OK
        print(f"catalog     {stats['catalog']}")
        print(f"images      {stats['images']}  ({stats['products_with_images']} products with images)")
        print(f"products    {stats['products']}")
        print(f"model       {model.name} ({model.model_id}), execution provider {model.provider}")
        if stats["index"]:
            print(f"index       {describe(stats['index'])}")
        print(f"disk        {stats['disk_bytes'] / 1e6:.1f} MB")
        print(f"errors      {stats['errors']}")
        for e in stats["recent_errors"]:
            print(f"  {e['path']}: {e['reason']}")
        return OK
