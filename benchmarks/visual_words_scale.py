"""Cost of the visual-word candidates (engine.visual_words) as the catalog grows, on synthetic
local features made from a real catalog's: image i of n gets the stored ORB descriptors (plain and
mirrored) of source image i mod N with FLIP of their bits flipped at random and a random 80% of
its keypoints, so every image is distinct but the descriptors keep real ORB statistics (bit
correlations, background patterns).

    python benchmarks/visual_words_scale.py --catalog /tmp/dmirror-cat -n 1000,2500,5000,10000

Prints, per size, the CPU seconds and peak memory growth of ``candidate_pairs`` over the whole
catalog (a full scan) and for 100 queried images (``--new``). The source catalog is only read.
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

from engine import features, visual_words  # noqa: E402
from engine.catalog import Catalog  # noqa: E402

FLIP = 0.06


class _Synthetic:
    """The two things candidate_pairs reads from a catalog: image ids and local-feature blobs."""

    def __init__(self, sources: list[tuple[bytes, bytes, bytes]], n: int, seed: int = 0):
        self.n = n
        self.db = self
        rng = np.random.default_rng(seed)
        self.blobs = {}
        for i in range(1, n + 1):        # made before the timing starts
            _, desc, mirrored = sources[(i - 1) % len(sources)]
            d = np.frombuffer(desc, np.uint8).reshape(-1, 32)
            m = np.frombuffer(mirrored, np.uint8).reshape(-1, 32)
            keep = rng.random(len(d)) < 0.8
            noise = np.packbits(rng.random((len(d), 256)) < FLIP, axis=1)
            self.blobs[i] = (b"", (d ^ noise)[keep].tobytes(), (m ^ noise)[keep].tobytes())

    @property
    def conn(self):
        return self

    def execute(self, sql, *args):
        return [(i,) for i in range(1, self.n + 1)]

    def local_feature_blobs(self, ids, version):
        return {i: self.blobs[i] for i in ids}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", required=True, help="a catalog with local features (mirrored too)")
    ap.add_argument("-n", default="1000,2500,5000,10000")
    args = ap.parse_args()
    cat = Catalog.open(args.catalog, create=False, readonly=True)
    ids = [r[0] for r in cat.db.conn.execute("SELECT id FROM images ORDER BY id")]
    blobs = cat.local_feature_blobs(ids, features.FEATURES_VERSION)
    sources = [b for b in blobs.values() if b[2] is not None]
    for n in (int(v) for v in args.n.split(",")):
        syn = _Synthetic(sources, n)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.process_time()
        pairs = visual_words.candidate_pairs(syn)
        full = time.process_time() - t
        t = time.process_time()
        visual_words.candidate_pairs(syn, list(range(n - 99, n + 1)))
        new = time.process_time() - t
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
        print(json.dumps({"images": n, "bits": visual_words.word_bits(n), "full_cpu_s": round(full, 2),
                          "full_cpu_ms_per_image": round(1000 * full / n, 2), "new_100_cpu_s": round(new, 2),
                          "pairs": len(pairs), "peak_rss_growth_mb": round(grew / 1024),
                          "load": round(os.getloadavg()[0], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
