"""How much does a pack's output depend on how the JPEG was decoded (full size or reduced)?

``engine.imaging`` may decode large JPEGs at 1/2 or 1/4 size (much faster); the embedding of a
photo should not change much with that. For every 7th Luma photo (100), compares full decoding
with ``cv2.IMREAD_REDUCED_COLOR_2`` and ``_4``: mean/min cosine of the embeddings, top-1 agreement,
and the preprocess time per image. Run from the repository root::

    python models/check_decode_invariance.py [PACK ...] [--data ../shared/datasets/luma]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.model import DEFAULT_PACK, load_model  # noqa: E402

FLAGS = {"full": cv2.IMREAD_COLOR, "1/2": cv2.IMREAD_REDUCED_COLOR_2, "1/4": cv2.IMREAD_REDUCED_COLOR_4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("packs", nargs="*", default=[DEFAULT_PACK])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "luma")
    args = ap.parse_args()
    paths = sorted((args.data / "images").glob("*.jpg"))[::7][:100]
    print("| pack | decode | prep ms/img | mean cos vs full | min cos | top-1 agree |")
    print("|---|---|---|---|---|---|")
    for pack in args.packs:
        model = load_model(pack, providers=["CPUExecutionProvider"])
        ref = None
        for label, flag in FLAGS.items():
            imgs = [cv2.cvtColor(cv2.imread(str(p), flag), cv2.COLOR_BGR2RGB) for p in paths]
            t = time.perf_counter()
            x = np.stack([model.preprocess(im) for im in imgs])
            prep_ms = (time.perf_counter() - t) * 1000 / len(imgs)
            probs, embs = model.run_tensor(x)
            if ref is None:
                ref = probs, embs
            cos = (embs * ref[1]).sum(1)
            agree = (probs.argmax(1) == ref[0].argmax(1)).mean()
            print(f"| {model.name} ({model.downscale_interpolation}) | {label} | {prep_ms:.2f} | "
                  f"{cos.mean():.4f} | {cos.min():.4f} | {agree:.2f} |", flush=True)


if __name__ == "__main__":
    main()
