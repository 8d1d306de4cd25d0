"""A catalog's vectors in Milvus (Lite or a server) vs the local HNSW index: the figures of
docs/milvus.md.

    python benchmarks/milvus_store.py search LOCAL LITE --queries DIR   # search p50, nearest p50
    python benchmarks/milvus_store.py recall LITE --queries DIR          # recall@10 vs exact by nprobe
    python benchmarks/milvus_store.py dupes LOCAL LITE                   # duplicate-scan seconds
    python benchmarks/milvus_store.py candidates LOCAL LITE              # the scan's candidate graph and its index
    python benchmarks/milvus_store.py filters LOCAL LITE --queries DIR  # selective filters: scanned vs pushed down

LOCAL and LITE are copies of one catalog, LITE moved with `lookalike vectors --to milvus-lite`
(or `--to milvus://HOST:PORT/NAME`: a server; recall then varies HNSW's ef).
Queries are image files (e.g. the Luma copies, eval/copies), embedded once by the bundled model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.catalog import Catalog  # noqa: E402


def _queries(folder: str, n: int) -> list[Path]:
    return sorted(Path(folder).glob("*.jpg"))[:n]


def _embed(paths: list[Path]) -> np.ndarray:
    from engine.imaging import load_image
    from engine.model import load_model

    model = load_model()
    return np.concatenate([model.embed([load_image(p, min_short_side=model.resize_short_side)])
                           for p in paths])


def _p50(times: list[float]) -> float:
    return round(float(np.median(times)) * 1000, 2)


def search(args) -> None:
    from engine.model import load_model
    from engine.search import Searcher

    model = load_model()
    paths = _queries(args.queries, args.n)
    embs = _embed(paths)
    for folder in (args.local, args.lite):
        with Catalog.open(folder, create=False, readonly=True) as cat:
            searcher = Searcher(cat, model, read_text=False)
            cat.vectors.nearest(embs[:1], 10)                # warm: open, load
            near, full = [], []
            for q in embs:
                t = time.perf_counter()
                cat.vectors.nearest(q, 10)
                near.append(time.perf_counter() - t)
            for p in paths[: args.full]:
                t = time.perf_counter()
                searcher.search_path(p, k=10)
                full.append(time.perf_counter() - t)
            print(f"{folder}: {cat.count_images()} images, {type(cat.vectors).__name__}: nearest p50 "
                  f"{_p50(near)} ms, search p50 {_p50(full) if full else '-'} ms", flush=True)


def recall(args) -> None:
    from engine import milvus_store

    embs = _embed(_queries(args.queries, args.n))
    with Catalog.open(args.lite, create=False, readonly=True) as cat:
        if args.rows:
            # harder queries: stored rows picked at random (in the 100k bench catalog mostly
            # synthetic rows among their own clusters), each finding itself first
            rng = np.random.default_rng(0)
            pick = rng.choice(cat.image_ids(), size=args.rows, replace=False)
            embs = cat.embeddings(sorted(int(i) for i in pick))
        exact = np.full((len(embs), 10), -1.0, np.float32)
        exact_ids = np.zeros((len(embs), 10), np.int64)
        for ids, vecs in cat.iter_embeddings(batch=20_000):
            sims = embs @ vecs.T
            all_s = np.concatenate([exact, sims], axis=1)
            all_i = np.concatenate([exact_ids, np.broadcast_to(ids, sims.shape)], axis=1)
            top = np.argsort(-all_s, axis=1)[:, :10]
            exact, exact_ids = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
        store = cat.vectors
        print(store.info())
        settings = store.index_settings()
        nlist = settings.get("nlist")
        hnsw = settings.get("index_type") == "HNSW"        # a server: vary ef instead
        for nprobe in (args.ef if hnsw else args.nprobe):
            store._cached_settings = ({"index_type": "HNSW", "ef": nprobe} if hnsw else
                                      {"index_type": "IVF_FLAT", "nlist": nlist, "nprobe": nprobe})
            store.nearest(embs[:1], 10)
            t = []
            hits = 0
            for q, want in zip(embs, exact_ids):
                t0 = time.perf_counter()
                got, _ = store.nearest(q, 10)
                t.append(time.perf_counter() - t0)
                hits += len(set(got[0].tolist()) & set(want.tolist()))
            setting = (f"HNSW ef {nprobe}" if hnsw else f"nlist {nlist} nprobe {nprobe}")
            default = milvus_store.HNSW_EF if hnsw else milvus_store.best_nprobe(nlist or 1)
            print(f"{setting}: recall@10 {hits / exact_ids.size:.4f}, nearest p50 {_p50(t)} ms "
                  f"(the default: {default})", flush=True)


def dupes(args) -> None:
    from engine import duplicates

    for folder in (args.local, args.lite):
        with Catalog.open(folder, create=False, readonly=True) as cat:
            cat.vectors.index()
            t = time.perf_counter()
            result = duplicates.scan(cat, only_new=False)
            print(f"{folder}: duplicate scan {time.perf_counter() - t:.1f} s, {len(result.groups)} groups, "
                  f"candidates {result.seconds and round(result.timings.get('candidates', 0), 2)} s",
                  flush=True)


def candidates(args) -> None:
    """The one stage of the duplicate scan that depends on the vector store: the kNN candidate
    graph of every image (engine.duplicates.candidates, the scan's own parameters), with the index
    it queries (``catalog.vectors.graph_index()``: the local catalog's HNSW index; a Milvus
    catalog's local graph index, built and saved in its records folder the first time, loaded
    after). The stages after it get the same pairs from either store, so they cost the same.
    ``--via-milvus`` queries the Milvus collection instead (the former way)."""
    from engine.duplicates import candidates as c

    pair_sets = []
    for folder in (args.local, args.lite):
        for attempt in ("first", "again"):
            with Catalog.open(folder, create=False) as cat:
                t = time.perf_counter()
                index = cat.vectors.index() if args.via_milvus else cat.vectors.graph_index()
                t_index = time.perf_counter() - t
                t = time.perf_counter()
                pairs, _, queried = c.knn_candidates(cat, index, since_version=-1, k=c.DEFAULT_K,
                                                     floor=c.CANDIDATE_FLOOR, expand_above=c.EXPAND_ABOVE,
                                                     ef=c.SEARCH_EF, progress=None, cancel=None)
                t_graph = time.perf_counter() - t
            print(f"{folder} ({attempt}): index {t_index:.1f} s + candidate graph {t_graph:.1f} s = "
                  f"{t_index + t_graph:.1f} s for {queried} images, {len(pairs)} pairs", flush=True)
        pair_sets.append(set(map(tuple, pairs.tolist())))
    local, lite = pair_sets
    print(f"pairs in both: {len(local & lite)}; local only {len(local - lite)}, Milvus catalog only "
          f"{len(lite - local)}")


def _synthetic_products(cat, seed: int = 0) -> int:
    """Give a catalog without products synthetic ones (5 images each, 1,000 brands, 50
    categories under 5 departments, prices 1-500), the same for every copy of one catalog (by
    image id); returns how many images were linked."""
    if cat.count_products():
        return 0
    ids = cat.image_ids()
    paths = cat.paths_of(ids)
    rng = np.random.default_rng(seed)
    n = len(ids) // 5 + 1
    brands, cats = rng.integers(0, 1000, n), rng.integers(0, 50, n)
    prices = np.round(rng.uniform(1, 500, n), 2)
    with cat.writer():
        cat.upsert_products([{"id": f"p{j}", "title": f"product {j}", "brand": f"brand {brands[j]}",
                              "category": f"Dept {cats[j] % 5} > Cat {cats[j]}", "price": float(prices[j]),
                              "extra": {}} for j in range(n)])
        cat.link_images([(paths[i], f"p{k // 5}") for k, i in enumerate(ids)])
    return len(ids)


def filters(args) -> None:
    """Searches with filters of three selectivities on a local catalog and its Milvus copy:
    p50 of full searches, and how many of the top 10 the two agree on. Selective filters take
    the search's exact path (engine.search._scan): the local catalog reads every image's filter
    fields, a Milvus catalog pushes the filter into its search."""
    from engine.model import load_model
    from engine.search import SearchFilters, Searcher

    model = load_model()
    paths = _queries(args.queries, args.full)
    cases = {"brand (0.1%)": SearchFilters(brand="brand 7"),
             "category (2%)": SearchFilters(category="Dept 2 > Cat 12"),
             "department + price (about 1.5%)": SearchFilters(category="Dept 3", price_min=100.0, price_max=130.0)}
    answers = {}
    for folder in (args.local, args.lite):
        with Catalog.open(folder, create=False) as cat:
            linked = _synthetic_products(cat)
            if linked:
                print(f"{folder}: {linked} images linked to synthetic products", flush=True)
                cat.vectors.save()
        with Catalog.open(folder, create=False, readonly=True) as cat:
            searcher = Searcher(cat, model, read_text=False)
            searcher.search_path(paths[0], k=10)                       # warm
            for name, f in cases.items():
                times, tops = [], []
                for q in paths:
                    t = time.perf_counter()
                    res = searcher.search_path(q, k=10, filters=f, group="image")
                    times.append(time.perf_counter() - t)
                    tops.append([m.image_id for m in res.results])
                answers[(folder, name)] = tops
                print(f"{folder} [{type(cat.vectors).__name__}] {name}: search p50 {_p50(times)} ms, "
                      f"{sum(map(len, tops)) / len(tops):.1f} results", flush=True)
    for name in cases:
        a, b = answers[(args.local, name)], answers[(args.lite, name)]
        same = sum(len(set(x) & set(y)) for x, y in zip(a, b)) / max(1, sum(map(len, a)))
        first = sum(bool(x) and bool(y) and x[0] == y[0] for x, y in zip(a, b)) / len(a)
        print(f"{name}: top-10 overlap {same:.3f}, same first result {first:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("search")
    s.add_argument("local")
    s.add_argument("lite")
    s.add_argument("--queries", required=True)
    s.add_argument("-n", type=int, default=100)
    s.add_argument("--full", type=int, default=40, help="full searches (decode, verify) per catalog")
    r = sub.add_parser("recall")
    r.add_argument("lite")
    r.add_argument("--queries", required=True)
    r.add_argument("-n", type=int, default=200)
    r.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 80, 128])
    r.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512],
                   help="HNSW search breadths to try (a server collection)")
    r.add_argument("--rows", type=int, default=0,
                   help="query with this many stored embeddings instead of the query photos")
    d = sub.add_parser("dupes")
    d.add_argument("local")
    d.add_argument("lite")
    g = sub.add_parser("candidates")
    g.add_argument("local")
    g.add_argument("lite")
    g.add_argument("--via-milvus", action="store_true", help="query the Milvus collection (slow)")
    f = sub.add_parser("filters", help="selective filters: the records scanned vs pushed down")
    f.add_argument("local")
    f.add_argument("lite")
    f.add_argument("--queries", required=True)
    f.add_argument("--full", type=int, default=20, help="searches per filter and catalog")
    args = p.parse_args()
    {"search": search, "recall": recall, "dupes": dupes, "candidates": candidates,
     "filters": filters}[args.what](args)


if __name__ == "__main__":
    main()
