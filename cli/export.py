"""``lookalike export``: the catalog's products or images as CSV (a file or stdout)."""

from __future__ import annotations

import sys

from cli.common import OK, add_catalog_options, open_catalog


def register(sub) -> None:
    p = sub.add_parser("export", help="write the catalog's products or images as CSV")
    add_catalog_options(p)
    p.add_argument("what", choices=["products", "images"])
    p.add_argument("-o", "--output", default="-", metavar="FILE",
                   help="CSV file, replaced only once complete; not inside the catalog folder (default: stdout)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.export import export_images, export_products, open_output

    # the output is checked (not a folder, its folder exists, not a file of the catalog) and
    # written under a temporary name, renamed over the file only once complete
    with open_catalog(args, create=False, readonly=True) as catalog, \
            open_output(args.output, protect=catalog.directory) as out:
        n = (export_products if args.what == "products" else export_images)(catalog, out)
    if args.output != "-":
        print(f"wrote {n} {args.what} to {args.output}", file=sys.stderr)
    return OK
