"""Duplicate-finder scale benchmark, index only: synthetic embeddings (no images, no model).

Not the duplicate finder's speed on photos: there is no local-feature verification, re-check or
turned pass here (benchmarks/real_scale.py measures those on real photos).

    python benchmarks/dupes_scale.py build --catalog /tmp/dupes-scale-100k -n 100000
    python benchmarks/dupes_scale.py scan --catalog /tmp/dupes-scale-100k
    python benchmarks/dupes_scale.py new --catalog /tmp/dupes-scale-100k -n 1000

``build`` writes ``n`` synthetic image rows straight into a catalog and builds its HNSW index
(the import's job, not timed as part of the scan). The vectors imitate product photos: 2,000
"categories" whose members are alike (cosine about 0.6-0.8 between images of one category, the
way white-background product shots are) and, for 10% of the images, 1-3 near copies each
(cosine 0.93-0.99 to their original). ``scan`` runs the duplicate scan in a fresh process and
prints wall time per stage, peak resident memory and how many planted copy pairs were grouped.
``new`` imports ``n`` more rows (half of them copies of catalog images) and times the incremental
check of only those (``scan(only_new=True)``, what ``lookalike dupes --new`` runs after an import).
The scan scores pairs with the embedding score here: synthetic rows have no pixels to verify.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import duplicates  # noqa: E402
from engine.catalog import Catalog  # noqa: E402

DIM = 1280
MODEL_ID = "synthetic@benchmark"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int, seed: int = 0, categories: int = 2000, copy_share: float = 0.1,
              rank: int = 512, shared: float = 0.8):
    """(vectors [n, DIM], original index of each row or -1).

    Shaped like real embeddings (measured on the Luma photos with the bundled model: mean vector
    of norm 0.70, variance spread over a few hundred directions with a power-law spectrum, median
    cosine of two random photos 0.49): v = mean + sum_k s_k g_k u_k, normalised, where the latent
    g of an image is ``shared`` parts its category's and the rest its own. Copies add isotropic
    noise to an original (cosine 0.93-0.99)."""
    rng = np.random.default_rng(seed)
    mean = np.abs(rng.standard_normal(DIM)).astype(np.float32)
    mean *= 0.70 / np.linalg.norm(mean)
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, rank)).astype(np.float32))   # DIM x rank, orthonormal
    spectrum = np.arange(1, rank + 1, dtype=np.float32) ** -0.46
    spectrum *= np.sqrt(0.51 / (spectrum ** 2).sum())
    n_orig = int(round(n / (1 + 2 * copy_share)))         # copied originals get 1-3 copies, 2 on average
    cat_latent = rng.standard_normal((categories, rank)).astype(np.float32)
    cat = rng.integers(0, categories, n_orig)
    originals = np.empty((n_orig, DIM), np.float32)
    for start in range(0, n_orig, 20000):
        sl = slice(start, min(n_orig, start + 20000))
        g = shared * cat_latent[cat[sl]] + np.sqrt(1 - shared ** 2) * rng.standard_normal(
            (sl.stop - sl.start, rank)).astype(np.float32)
        originals[sl] = _unit(mean + (g * spectrum) @ basis.T)
    vecs = [originals]
    source = [np.full(n_orig, -1)]
    left = n - n_orig
    while left > 0:
        src = rng.choice(n_orig, size=min(left, max(1, int(n_orig * copy_share))), replace=False)
        noise = rng.uniform(0.004, 0.011, (len(src), 1)).astype(np.float32)
        vecs.append(_unit(originals[src] + rng.standard_normal((len(src), DIM)).astype(np.float32) * noise))
        source.append(src)
        left -= len(src)
    return np.concatenate(vecs)[:n], np.concatenate(source)[:n]


def build(directory: Path, n: int) -> None:
    t = time.perf_counter()
    vecs, source = synthetic(n)
    print(f"generated {n} vectors in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    with Catalog.open(directory) as catalog:
        if catalog.count_images():
            raise SystemExit(f"{directory} is not empty")
        t = time.perf_counter()
        with catalog.writer():
            for start in range(0, n, 5000):
                rows = [{"path": f"/synthetic/{i:07d}.jpg", "content_hash": f"{i:032x}",
                         "file_size": 100_000, "mtime": 0.0, "width": 1000 + i % 500, "height": 1200,
                         "model_id": MODEL_ID, "embedding": vecs[i], "labels": []}
                        for i in range(start, min(n, start + 5000))]
                catalog.put_images(rows)
        print(f"wrote {n} rows in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        t = time.perf_counter()
        if catalog.vectors.maybe_fit_projection() is None:     # as an import does: 10,000+ images get the PCA index
            catalog.vectors.rebuild()
        print(f"built the HNSW index in {time.perf_counter() - t:.1f} s "
              f"({'PCA-projected' if catalog.vectors.projection() is not None else 'full dimension'})", file=sys.stderr)
    np.save(directory / "synthetic-source.npy", source)


def scan(directory: Path, k: int, ef: int) -> dict:
    started = time.perf_counter()
    cpu = time.process_time()
    with Catalog.open(directory, create=False) as catalog:
        result = duplicates.scan(catalog, k=k, ef=ef, verifier=duplicates.embedding_verifier)
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - started
        source = np.load(directory / "synthetic-source.npy")
        ids = np.array([r[0] for r in catalog.db.conn.execute(
            "SELECT id FROM images WHERE path NOT LIKE '/synthetic/new-%' ORDER BY path")])
    # truth: a copy and its original (and copies of one original) belong together
    root = np.where(source >= 0, source, np.arange(len(source)))
    root_of = dict(zip(ids.tolist(), root.tolist()))
    planted = int((source >= 0).sum())
    grouped_right = sum(root_of.get(m.image_id, -1) == root_of.get(g.representative.image_id, -2)
                        for g in result.groups for m in g.members)
    members = sum(len(g.members) for g in result.groups)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images": result.images, "k": k, "ef": ef, "scan_seconds": round(result.seconds, 2),
            "cpu_seconds": round(cpu, 1), "load_average": round(os.getloadavg()[0], 1),
            "wall_seconds_incl_open": round(wall, 2),
            "stages": {s: round(v, 2) for s, v in result.timings.items()},
            "candidates": result.candidates, "verified": result.verified, "groups": len(result.groups),
            "planted_copies": planted, "members": members,
            "members_with_their_original_family": grouped_right, "peak_rss_mb": round(peak_mb)}


def add_new(directory: Path, n: int) -> dict:
    rng = np.random.default_rng(1)
    with Catalog.open(directory, create=False) as catalog:
        duplicates.scan(catalog, k=1, verifier=duplicates.embedding_verifier, floor=2.0)  \
            if catalog.meta(duplicates.SCANNED_VERSION_KEY) is None else None
        start = catalog.count_images()
        ids = np.array([r[0] for r in catalog.db.conn.execute("SELECT id FROM images ORDER BY random() LIMIT ?",
                                                              (n // 2,))])
        originals = catalog.embeddings(ids.tolist())
        copies = _unit(originals + rng.standard_normal(originals.shape).astype(np.float32) * 0.006)
        fresh = _unit(rng.standard_normal((n - len(ids), DIM)))
        vecs = np.concatenate([copies, fresh])
        t = time.perf_counter()
        with catalog.writer():
            catalog.put_images([{"path": f"/synthetic/new-{start + i:07d}.jpg", "content_hash": f"n{start + i:031d}",
                                 "file_size": 1, "mtime": 0.0, "width": 800, "height": 800,
                                 "model_id": MODEL_ID, "embedding": v, "labels": []} for i, v in enumerate(vecs)])
            catalog.vectors.sync(save=True)
        import_s = time.perf_counter() - t
        result = duplicates.scan(catalog, only_new=True, verifier=duplicates.embedding_verifier)
        new_in_groups = sum(1 for g in result.groups for i in g.image_ids
                            if catalog.image_record(i)["path"].startswith("/synthetic/new-"))
    return {"catalog_images": result.images, "new_images": n, "planted_copies": len(ids),
            "index_add_seconds": round(import_s, 2), "check_new_seconds": round(result.seconds, 2),
            "queried": result.queried, "groups": len(result.groups), "new_images_in_groups": new_in_groups,
            "stages": {s: round(v, 2) for s, v in result.timings.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["build", "scan", "new"])
    ap.add_argument("--catalog", required=True, type=Path)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("-k", type=int, default=duplicates.DEFAULT_K)
    ap.add_argument("--ef", type=int, default=duplicates.SEARCH_EF)
    args = ap.parse_args()
    if args.action == "build":
        build(args.catalog, args.n)
    elif args.action == "new":
        print(json.dumps(add_new(args.catalog, args.n)))
    else:
        print(json.dumps(scan(args.catalog, args.k, args.ef)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
