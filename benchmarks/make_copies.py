"""Generate an edited-copy query set (independent of the Luma eval's own generator) for a sanity
check of match quality on images the score was not fitted on.

    python benchmarks/make_copies.py --images ../shared/datasets/luma/images --out /tmp/mycopies
    lookalike eval --gallery /tmp/mycopies/gallery.txt --queries /tmp/mycopies/queries.csv

Every other image (sorted by name, offset 1: the opposite half from nothing in particular) goes in
the gallery; edited copies are made of gallery images (relevant = the original) and of images
left out (relevant empty). Edits: crop, small rotation, 90/180/270 turn, mirror, text, grey or
hue shift, coloured border, downscale, blur, perspective, JPEG; 1-3 combined, seeded.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import cv2
import numpy as np


def _crop(im, rng):
    h, w = im.shape[:2]
    f = rng.uniform(0.6, 0.85)
    ch, cw = int(h * f), int(w * f)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return im[y:y + ch, x:x + cw]


def _rotate(im, rng):
    h, w = im.shape[:2]
    a = rng.uniform(-20, 20)
    M = cv2.getRotationMatrix2D((w / 2, h / 2), a, 1.0)
    return cv2.warpAffine(im, M, (w, h), borderValue=(255, 255, 255))


def _turn(im, rng):
    return np.rot90(im, int(rng.integers(1, 4)))


def _mirror(im, rng):
    return im[:, ::-1]


def _text(im, rng):
    im = np.ascontiguousarray(im).copy()
    h, w = im.shape[:2]
    for _ in range(int(rng.integers(1, 3))):
        word = str(rng.choice(["SOLD OUT", "NEW!", "(c) shop", "-30%", "FREE SHIPPING"]))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        scale = w / 400 * rng.uniform(0.8, 1.6)
        cv2.putText(im, word, (int(rng.uniform(0, w * 0.5)), int(rng.uniform(h * 0.2, h * 0.9))),
                    cv2.FONT_HERSHEY_DUPLEX, scale, colour, max(1, int(scale * 2)))
    return im


def _colour(im, rng):
    if rng.random() < 0.5:
        g = cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_BGR2GRAY)
        return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    hsv = cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(rng.integers(20, 160))) % 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _border(im, rng):
    h, w = im.shape[:2]
    p = int(min(h, w) * rng.uniform(0.05, 0.25))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    return cv2.copyMakeBorder(np.ascontiguousarray(im), p, p, p, p, cv2.BORDER_CONSTANT, value=colour)


def _downscale(im, rng):
    h, w = im.shape[:2]
    f = rng.uniform(0.2, 0.5)
    return cv2.resize(np.ascontiguousarray(im), (max(32, int(w * f)), max(32, int(h * f))), interpolation=cv2.INTER_AREA)


def _blur(im, rng):
    s = rng.uniform(1.0, 3.0) * max(im.shape[:2]) / 800
    return cv2.GaussianBlur(np.ascontiguousarray(im), (0, 0), s)


def _perspective(im, rng):
    h, w = im.shape[:2]
    d = 0.12
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + np.float32(rng.uniform(-d, d, (4, 2)) * [w, h])
    M = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(np.ascontiguousarray(im), M, (w, h), borderValue=(255, 255, 255))


EDITS = {"crop": _crop, "rotate": _rotate, "turn": _turn, "mirror": _mirror, "text": _text,
         "colour": _colour, "border": _border, "downscale": _downscale, "blur": _blur,
         "perspective": _perspective}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--positives", type=int, default=200)
    ap.add_argument("--negatives", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    images = sorted(str(p.resolve()) for p in Path(args.images).glob("*.jpg"))
    gallery, outside = images[1::2], images[0::2]
    out = Path(args.out)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    (out / "gallery.txt").write_text("".join(p + "\n" for p in gallery))
    rows = []
    # more copies than originals: some originals are copied twice (as offers often are)
    picks = [(p, True) for p in rng.choice(gallery, args.positives, replace=args.positives > len(gallery))] + \
            [(p, False) for p in rng.choice(outside, args.negatives, replace=args.negatives > len(outside))]
    for n, (src, positive) in enumerate(picks):
        im = cv2.imread(src)
        names = list(rng.choice(list(EDITS), int(rng.integers(1, 4)), replace=False))
        for e in names:
            im = EDITS[e](im, rng)
        q = out / "queries" / f"q{n:04d}.jpg"
        cv2.imwrite(str(q), np.ascontiguousarray(im), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 90))])
        rows.append((os.path.relpath(q, out), src if positive else "", "+".join(names)))
    with open(out / "queries.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "relevant", "edits"])
        w.writerows(rows)
    print(f"{len(rows)} queries, gallery {len(gallery)} images: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
