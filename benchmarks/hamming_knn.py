"""The two nearest descriptors by Hamming distance (verification's ORB matching), by library.

    python benchmarks/hamming_knn.py

Times engine.geometry's faiss ``knn_hamming`` against the alternatives that would let the bundle
drop faiss (63 MiB with its OpenBLAS): OpenCV's ``batchDistance``, NumPy's ``bitwise_count`` on
64-bit words and, when installed, SimSIMD's ``cdist``; one thread each, for a verification at
MAX_KEYPOINTS (320 x 320 descriptors) and at DENSE_KEYPOINTS (1000 x 320). Every method's
distances are checked against faiss's. docs/packaging.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.features import DENSE_KEYPOINTS, MAX_KEYPOINTS  # noqa: E402


def _top2(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(len(d))
    first = d.argmin(1)
    d0 = d[rows, first].copy()
    d[rows, first] = np.iinfo(d.dtype).max if d.dtype.kind in "iu" else np.inf
    second = d.argmin(1)
    return np.stack([d0, d[rows, second]], 1), np.stack([first, second], 1)


def with_faiss(q, c):
    return faiss.knn_hamming(q, c, 2)


def with_opencv(q, c):
    return cv2.batchDistance(q, c, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)


def with_numpy(q, c):
    q64, c64 = q.view(np.uint64), c.view(np.uint64)
    d = np.bitwise_count(q64[:, 0, None] ^ c64[None, :, 0])
    for k in range(1, q64.shape[1]):
        d += np.bitwise_count(q64[:, k, None] ^ c64[None, :, k])
    return _top2(d)


def methods() -> dict:
    out = {"faiss knn_hamming": with_faiss, "OpenCV batchDistance": with_opencv,
           "NumPy bitwise_count": with_numpy}
    try:
        import simsimd

        out["SimSIMD cdist"] = lambda q, c: _top2(np.asarray(
            simsimd.cdist(q, c, metric="hamming", dtype="bin8", threads=1)))
    except ImportError:
        pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    args = ap.parse_args(argv)
    faiss.omp_set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    print(f"{'method':22} {'query x candidate':>18} {'ms per pair':>12}")
    for nq in (MAX_KEYPOINTS, DENSE_KEYPOINTS):
        queries = [rng.integers(0, 256, (nq, 32), np.uint8) for _ in range(args.pairs)]
        cands = [rng.integers(0, 256, (MAX_KEYPOINTS, 32), np.uint8) for _ in range(args.pairs)]
        reference = with_faiss(queries[0], cands[0])[0]
        for name, fn in methods().items():
            dist = np.asarray(fn(queries[0], cands[0])[0])
            assert np.array_equal(dist.astype(np.int64), reference.astype(np.int64)), name
            best = float("inf")
            for _ in range(args.rounds):
                t = time.perf_counter()
                for q, c in zip(queries, cands):
                    fn(q, c)
                best = min(best, (time.perf_counter() - t) / args.pairs)
            print(f"{name:22} {f'{nq} x {MAX_KEYPOINTS}':>18} {best * 1e3:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
