"""Does the bundle's trimmed OpenCV (packaging/build_opencv.sh) compute what the PyPI wheel does?

    python benchmarks/opencv_parity.py --other build/venv/lib/python3.11/site-packages

runs the same operations on Luma photos under this environment's cv2 and under the cv2 found in
``--other`` (each in its own process), and prints, per operation, how many photos gave different
bytes and the largest pixel difference; then the engine's decode, feature and verification times
under each. Run it after changing OpenCV's version or build options.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = ROOT.parent / "shared" / "datasets" / "luma" / "images"

# run in a child process: prints one JSON object
CHILD = r"""
import glob, json, sys, time
import numpy as np, cv2
sys.path.insert(0, sys.argv[1])
from engine import features, geometry, imaging
cv2.setNumThreads(1)
files = sorted(glob.glob(sys.argv[2] + "/*.jpg"))[: int(sys.argv[3])]
out = {"cv2": cv2.__file__, "ops": {}}
ops = out["ops"]
H = np.array([[1.02, 0.03, 4], [-0.02, 0.98, -3], [1e-4, -5e-5, 1]])
orb = cv2.ORB_create(nfeatures=320, scaleFactor=1.2, nlevels=6)
arrays = {}
for f in files:
    im = cv2.imread(f, cv2.IMREAD_COLOR)
    small = cv2.resize(im, (300, 300), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    results = {
        "imread": im,
        "resize area": small,
        "resize linear": cv2.resize(im, (300, 300), interpolation=cv2.INTER_LINEAR),
        "cvtColor grey": grey,
        "cvtColor HSV": cv2.cvtColor(small, cv2.COLOR_BGR2HSV),
        "GaussianBlur": cv2.GaussianBlur(small, (5, 5), 0),
        "ORB descriptors": orb.detectAndCompute(grey, None)[1],
        "warpAffine": cv2.warpAffine(small, cv2.getRotationMatrix2D((150, 150), 7, 1.0), (300, 300)),
        "warpPerspective": cv2.warpPerspective(small, H, (300, 300)),
    }
    for name, arr in results.items():
        arrays.setdefault(name, []).append(np.zeros(0, np.uint8) if arr is None else arr)
np.savez(sys.argv[4], **{f"{name}|{i}": a for name, lst in arrays.items() for i, a in enumerate(lst)})
raw = [open(f, "rb").read() for f in files]
t = time.perf_counter(); rgbs = [imaging.decode_image_bytes(b) for b in raw]; dec = time.perf_counter() - t
t = time.perf_counter(); feats = [features.catalog_features(x) for x in rgbs]; fea = time.perf_counter() - t
t = time.perf_counter()
for a, b in zip(feats, feats[1:]):
    geometry.verify(a, b); geometry.verify(a, a)
ver = time.perf_counter() - t
out["ms"] = {"decode": dec / len(raw) * 1e3, "features": fea / len(raw) * 1e3,
             "verify pair": ver / (2 * (len(feats) - 1)) * 1e3}
print(json.dumps(out))
"""


def run(env_extra: dict, images: Path, n: int, npz: Path) -> dict:
    env = dict(os.environ, **env_extra)
    res = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(images), str(n), str(npz)],
                         env=env, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", required=True, type=Path,
                    help="folder holding the other cv2 package (e.g. the bundle build's site-packages)")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("-n", type=int, default=60, help="photos (default 60)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/opencv-parity"))
    args = ap.parse_args(argv)
    import numpy as np

    args.work.mkdir(parents=True, exist_ok=True)
    # only the other cv2 package is put first on sys.path: the engine, NumPy and faiss are this
    # checkout's and this environment's in both runs
    alone = args.work / "other-cv2"
    shutil.rmtree(alone, ignore_errors=True)
    shutil.copytree(args.other / "cv2", alone / "cv2")
    here = run({}, args.images, args.n, args.work / "here.npz")
    other = run({"PYTHONPATH": str(alone)}, args.images, args.n, args.work / "other.npz")
    print(f"this environment: {here['cv2']}\nother:            {other['cv2']}")
    a, b = np.load(args.work / "here.npz"), np.load(args.work / "other.npz")
    names = sorted({k.split("|")[0] for k in a.files}, key=lambda k: a.files.index(f"{k}|0"))
    print(f"\n{'operation':18} photos differing   max |difference|   share of values differing")
    for name in names:
        keys = [k for k in a.files if k.split("|")[0] == name]
        diff = [(a[k].astype(np.int32), b[k].astype(np.int32)) for k in keys]
        differing = sum(1 for x, y in diff if x.shape != y.shape or not np.array_equal(x, y))
        same_shape = [(x, y) for x, y in diff if x.shape == y.shape and x.size]
        worst = max((int(np.abs(x - y).max()) for x, y in same_shape), default=0)
        share = (sum(int((x != y).sum()) for x, y in same_shape)
                 / max(1, sum(x.size for x, _ in same_shape)))
        print(f"{name:18} {differing:3d} of {len(keys):<9d} {worst:<18d} {share:.6f}")
    print(f"\n{'ms per photo':18} {'this':>8} {'other':>8}")
    for key in here["ms"]:
        print(f"{key:18} {here['ms'][key]:8.2f} {other['ms'][key]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
