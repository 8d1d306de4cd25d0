"""``lookalike remove``: forget images (by path, folder, id, or all whose files are gone)."""

from __future__ import annotations

from cli.common import OK, add_catalog_options, open_catalog


def register(sub) -> None:
    p = sub.add_parser("remove", help="remove images from the catalog")
    add_catalog_options(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files or folders to forget")
    p.add_argument("--missing", action="store_true", help="forget images whose files no longer exist")
    p.add_argument("--id", type=int, action="append", default=[], metavar="IMAGE_ID")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.errors import LookalikeError

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
        return OK
