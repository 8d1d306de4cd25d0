"""``lookalike vectors``: where the catalog's vectors live, and moving them."""

from __future__ import annotations

from cli.common import OK, add_catalog_option, open_catalog


def register(sub) -> None:
    p = sub.add_parser("vectors", help="show or move where the catalog's vectors live "
                       "(local HNSW index, Milvus Lite or a Milvus server)")
    add_catalog_option(p)
    p.add_argument("--to", metavar="local|milvus-lite|milvus://HOST:PORT/NAME", default=None,
                   help="move the vectors there from the stored embeddings (no re-embedding); "
                   "the records stay in the catalog's folder")
    p.set_defaults(handler=run)


def run(args) -> int:
    from engine.vector_moves import move_vectors

    with open_catalog(args, create=False, readonly=args.to is None) as catalog:
        if args.to:
            print(move_vectors(catalog, args.to))
        index = catalog.vectors.index()
        info = index.info() if index is not None else {}
        print(describe(info) if info else "no vectors (the catalog is empty)")
    return OK


def describe(info: dict) -> str:
    """One line: the backend and its parameters (also for ``lookalike info``)."""
    if info.get("error"):
        return f"unavailable: {info['error']}"
    if info.get("backend"):
        params = ", ".join(f"{k}={info[k]}" for k in ("nlist", "nprobe", "M", "efConstruction", "ef")
                           if k in info)
        return (f"{info['backend']} {info['uri']}, collection {info['collection']}, "
                f"{info.get('index_type')} {info.get('metric', 'IP')}"
                f"{' (' + params + ')' if params else ''}, {info['count']} vectors"
                + (f" ({info['unavailable']})" if info.get("unavailable") else ""))
    dims = (f"{info['dim']} dims" if not info.get("projection") else
            f"{info['dim']} dims stored as {info['stored_dim']} (PCA {info['projection']}, "
            f"re-ranked with full embeddings)")
    return (f"HNSW cosine, {info['count']} vectors of {dims}, M={info['M']}, "
            f"ef_construction={info['ef_construction']}, ef={info['ef']}")
