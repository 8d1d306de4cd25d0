"""Would an IVF index (faiss, k-means lists) over the same 128-d leading part of the projection reach
recall@10 >= 0.99 within 1 ms at 1M vectors, where the HNSW walk does not (docs/benchmarks.md)?

    python benchmarks/ivf_1m.py [N]        # default 1,000,000; ~8 GB RAM, ~15 min on 2 cores

The same pipeline as engine.index at 1M, with the graph walk replaced by an IVF probe:
synthetic embeddings (engine.benchmark), an uncentred PCA to 512 dims fitted on the first 50,000
(SVD), the leading 128 dims (re-normalised) in an IndexIVFFlat, its top L re-scored with the
512-d int8 code (one scale per vector), the best 32 re-ranked with the exact 1280-d vectors;
recall@10 against the exact top 10 of 200 queries (engine.benchmark.synthetic_queries). The time is
the IVF probe + the code re-score, one query at a time on one thread (the exact re-rank reads
SQLite in the app and is left out, as in the "index" column of the benchmark).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.benchmark import synthetic_embeddings, synthetic_queries  # noqa: E402


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    t = time.time()
    x = np.empty((n, 1280), np.float32)
    done = 0
    for chunk in synthetic_embeddings(n):
        x[done:done + len(chunk)] = chunk
        done += len(chunk)
    print("generated", round(time.time() - t, 1), "s", flush=True)
    _, _, vt = np.linalg.svd(x[:50000], full_matrices=False)
    comps = np.ascontiguousarray(vt[:512])
    p = np.empty((n, 512), np.float32)
    for i in range(0, n, 100000):
        p[i:i + 100000] = x[i:i + 100000] @ comps.T
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    g = np.ascontiguousarray(p[:, :128])
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = synthetic_queries(x, 200)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    qp = q @ comps.T
    qp /= np.linalg.norm(qp, axis=1, keepdims=True)
    qg = np.ascontiguousarray(qp[:, :128])
    qg /= np.linalg.norm(qg, axis=1, keepdims=True)
    scale = np.abs(p).max(axis=1, keepdims=True) / 127        # the int8 code, one scale per vector
    code = np.round(p / scale).astype(np.int8)
    print("projected, exact top 10", round(time.time() - t, 1), "s", flush=True)
    for nlist in (4096, 16384):
        faiss.omp_set_num_threads(2)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(128), 128, nlist, faiss.METRIC_INNER_PRODUCT)
        tt = time.time()
        ivf.train(g[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
        ivf.add(g)
        print(f"nlist {nlist} build {time.time() - tt:.1f}s", flush=True)
        faiss.omp_set_num_threads(1)
        for nprobe in (16, 32, 64, 128, 256):
            ivf.nprobe = nprobe
            for shortlist in (256, 512):
                recall, times = [], []
                for i in range(len(q)):
                    t0 = time.perf_counter()
                    _, found = ivf.search(qg[i:i + 1], shortlist)
                    found = found[0][found[0] >= 0]
                    approx = (code[found].astype(np.float32) @ qp[i]) * scale[found, 0]
                    top = found[np.argsort(-approx)[:32]]
                    times.append(time.perf_counter() - t0)
                    best = top[np.argsort(-(x[top] @ q[i]))[:10]]
                    recall.append(len(set(best.tolist()) & set(truth[i].tolist())) / 10)
                print(f"nlist {nlist} nprobe {nprobe} L {shortlist}: recall@10 {np.mean(recall):.4f}  "
                      f"index+code p50 {np.median(times) * 1000:.2f} ms p95 {np.quantile(times, .95) * 1000:.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
