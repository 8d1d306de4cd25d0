"""Cost of the mirrored ORB descriptors stored at import (engine.features.extract(mirror=True)):
CPU time per image of the local-feature extraction with and without them, and the bytes stored.

    python benchmarks/mirror_cost.py [-n 200]

Images are decoded once, outside the timed part (the same decode ingest does); CPU time
(time.process_time) is the figure to read on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import features  # noqa: E402
from engine.imaging import load_image  # noqa: E402

LUMA = Path(os.environ.get("LOOKALIKE_LUMA", ROOT.parent / "shared" / "datasets" / "luma"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=200, help="Luma photos to use (every k-th of the sorted list)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ingest", metavar="DIR", help="also time a whole import of the photos into a new "
                    "catalog DIR with and without the mirrored descriptors (CPU of all threads)")
    args = ap.parse_args()
    files = sorted((LUMA / "images").glob("*.jpg"))
    files = files[:: max(1, len(files) // args.n)][: args.n]
    images = [load_image(p, min_short_side=256) for p in files]
    out = {"images": len(images), "load": round(os.getloadavg()[0], 1)}
    for mirror in (False, True, False, True):      # interleaved: load changes hit both alike
        best = None
        for _ in range(args.repeat):
            t = time.process_time()
            feats = [features.extract(rgb, mirror=mirror) for rgb in images]
            cpu = time.process_time() - t
            best = cpu if best is None else min(best, cpu)
        key = f"cpu_ms_per_image_{'mirror' if mirror else 'plain'}"
        out[key] = min(out.get(key, 1e9), round(1000 * best / len(images), 2))
    kp = sum(len(features.pack(f)[0]) for f in feats) / len(feats)
    desc = sum(len(features.pack(f)[1]) for f in feats) / len(feats)
    mirrored = sum(len(features.pack_mirrored(f)) for f in feats) / len(feats)
    out.update({"bytes_keypoints_and_thumb": round(kp), "bytes_descriptors": round(desc),
                "bytes_mirrored_descriptors": round(mirrored),
                "keypoints_per_image": round(sum(len(f) for f in feats) / len(feats), 1)})
    if args.ingest:
        from engine import ingest as ingest_mod
        from engine.catalog import Catalog
        from engine.model import load_model

        model = load_model()
        plain = lambda rgb: (features.FEATURES_VERSION, *features.pack(features.extract(rgb)), None)
        for name, fn in (("plain", plain), ("mirror", ingest_mod._local_features),
                         ("plain", plain), ("mirror", ingest_mod._local_features)):
            saved, ingest_mod._local_features = ingest_mod._local_features, fn
            try:
                folder = Path(args.ingest) / f"{name}-{time.monotonic_ns()}"
                with Catalog.open(folder) as cat:
                    t = time.process_time()
                    ingest_mod.ingest(cat, model, files)
                    cpu = time.process_time() - t
            finally:
                ingest_mod._local_features = saved
            key = f"ingest_cpu_ms_per_image_{name}"
            out[key] = min(out.get(key, 1e9), round(1000 * cpu / len(files), 1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
