"""Duplicate-finder scale benchmark on synthetic embeddings (no images, no model).

    python benchmarks/dupes_scale.py build --catalog /tmp/dupes-scale-100k -n 100000
    python benchmarks/dupes_scale.py scan --catalog /tmp/dupes-scale-100k

``build`` writes ``n`` synthetic image rows straight into a catalog and builds its HNSW index
(the import's job, not timed as part of the scan). The vectors imitate product photos: 2,000
"categories" whose members are alike (cosine about 0.6-0.8 between images of one category, the
way white-background product shots are) and, for 10% of the images, 1-3 near copies each
(cosine 0.93-0.99 to their original). ``scan`` runs the duplicate scan in a fresh process and
prints wall time per stage, peak resident memory and how many planted copy pairs were grouped.
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


def synthetic(n: int, seed: int = 0, categories: int = 2000, copy_share: float = 0.1):
    """(vectors [n, DIM], original index of each row or -1)."""
    rng = np.random.default_rng(seed)
    n_orig = int(round(n / (1 + 2 * copy_share)))         # copies average 2 per copied original
    centres = _unit(rng.standard_normal((categories, DIM)))
    cat = rng.integers(0, categories, n_orig)
    originals = _unit(centres[cat] + rng.standard_normal((n_orig, DIM)).astype(np.float32) * 0.022)
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
        catalog.rebuild_index()
        print(f"built the HNSW index in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    np.save(directory / "synthetic-source.npy", source)


def scan(directory: Path, k: int) -> dict:
    started = time.perf_counter()
    with Catalog.open(directory, create=False) as catalog:
        result = duplicates.scan(catalog, k=k, verifier=duplicates.embedding_verifier)
        wall = time.perf_counter() - started
        source = np.load(directory / "synthetic-source.npy")
        ids = np.array([r[0] for r in catalog.db.conn.execute("SELECT id FROM images ORDER BY path")])
    # truth: a copy and its original (and copies of one original) belong together
    root = np.where(source >= 0, source, np.arange(len(source)))
    root_of = dict(zip(ids.tolist(), root.tolist()))
    planted = int((source >= 0).sum())
    grouped_right = sum(root_of[m.image_id] == root_of[g.representative.image_id]
                        for g in result.groups for m in g.members)
    members = sum(len(g.members) for g in result.groups)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images": result.images, "k": k, "scan_seconds": round(result.seconds, 2),
            "wall_seconds_incl_open": round(wall, 2),
            "stages": {s: round(v, 2) for s, v in result.timings.items()},
            "candidates": result.candidates, "verified": result.verified, "groups": len(result.groups),
            "planted_copies": planted, "members": members,
            "members_with_their_original_family": grouped_right, "peak_rss_mb": round(peak_mb)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["build", "scan"])
    ap.add_argument("--catalog", required=True, type=Path)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("-k", type=int, default=duplicates.DEFAULT_K)
    args = ap.parse_args()
    if args.action == "build":
        build(args.catalog, args.n)
    else:
        print(json.dumps(scan(args.catalog, args.k)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
