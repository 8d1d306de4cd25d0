"""Make the README screenshots: three users' tasks on the Luma catalog, with real photos.

    python docs/screenshots/make_screenshots.py --catalog DIR [--luma ../shared/datasets/luma]

DIR is a catalog of the whole Luma feed (``lookalike index <luma>/products.csv --catalog DIR``).
The query photos are made from Luma images into a temporary folder (never into the repo):

* merchandiser.png -- a duplicate listing: the same product photo, re-cropped and re-compressed
  by another seller;
* brand-protection.png -- an edited copy (rotated, cropped, brightened, a price banner over it),
  shown in the compare view's difference mode;
* warehouse.png -- a phone-like photo: the product in perspective on a cluttered background, in
  warm light, noisy and a little blurred, searched with a region drawn around the product.

Each is taken with ``lookalike gui --screenshot`` (offscreen) and saved as an optimised PNG.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 300_000


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def duplicate_listing(src: Path, out: Path) -> Path:
    im = Image.open(src).convert("RGB")
    w, h = im.size
    im = im.crop((int(w * 0.04), int(h * 0.03), int(w * 0.97), int(h * 0.98))).resize(
        (820, 1000), Image.LANCZOS
    )
    im.save(out, quality=72)
    return out


def edited_copy(src: Path, out: Path) -> Path:
    rgb = np.asarray(Image.open(src).convert("RGB"))
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 7, 1.05)
    rgb = cv2.warpAffine(rgb, m, (w, h), borderValue=(255, 255, 255))
    rgb = rgb[int(h * 0.06) : int(h * 0.94), int(w * 0.05) : int(w * 0.95)]
    rgb = np.clip(rgb.astype(np.float32) * 1.06 + 4, 0, 255).astype(np.uint8)  # brighter
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    W, H = im.size
    draw.rectangle((0, int(H * 0.80), W, int(H * 0.92)), fill=(200, 16, 46))
    draw.text(
        (W // 2, int(H * 0.86)), "-50% TODAY ONLY", fill="white", font=_font(W // 12), anchor="mm"
    )
    im.save(out, quality=85)
    return out


def phone_photo(src: Path, out: Path) -> tuple[Path, tuple[int, int, int, int]]:
    """The product cut out of its white studio background, put in perspective on a cluttered
    scene (a brick wall, a gravel floor, a coffee cup from scikit-image's sample photos).
    Returns the photo and the product's box (x, y, w, h) with a small margin."""
    from skimage import data

    W, H = 1600, 1200
    wall = cv2.resize(data.brick(), (W, H // 2 + 40))
    floor = cv2.resize(data.gravel(), (W, H // 2))
    scene = np.zeros((H, W, 3), np.float32)
    scene[: H // 2 + 40] = (wall[..., None] * np.array([1.0, 0.72, 0.55]))[: H // 2 + 40]
    scene[H // 2 :] = floor[..., None] * np.array([0.75, 0.72, 0.68])
    cup = cv2.resize(data.coffee(), (420, 280))
    scene[H - 330 : H - 50, 60:480] = cup
    scene = scene.astype(np.uint8)

    product = np.asarray(Image.open(src).convert("RGB"))
    ph, pw = product.shape[:2]
    mask = (product.min(axis=2) < 235).astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    mask = cv2.GaussianBlur(mask, (5, 5), 0)
    src_quad = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    x0, y0, sw, sh = 620, 230, 760, 860
    dst_quad = np.float32(
        [[x0 + 60, y0], [x0 + sw, y0 + 50], [x0 + sw - 30, y0 + sh], [x0, y0 + sh - 40]]
    )
    M = cv2.getPerspectiveTransform(src_quad, dst_quad)
    warped = cv2.warpPerspective(product, M, (W, H))
    alpha2d = cv2.warpPerspective(mask, M, (W, H)).astype(np.float32) / 255.0
    shadow = cv2.GaussianBlur(np.roll(alpha2d, (25, 30), axis=(0, 1)), (61, 61), 0)[..., None]
    alpha = alpha2d[..., None]
    out_rgb = scene.astype(np.float32) * (1 - 0.55 * shadow)
    out_rgb = out_rgb * (1 - alpha) + warped.astype(np.float32) * alpha
    out_rgb *= np.array([1.08, 1.0, 0.86])  # warm indoor light
    yy, xx = np.mgrid[0:H, 0:W]
    vignette = 1 - 0.35 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2) * 2
    out_rgb *= vignette[..., None]
    out_rgb += np.random.default_rng(7).normal(0, 6, out_rgb.shape)
    out_rgb = cv2.GaussianBlur(np.clip(out_rgb, 0, 255).astype(np.uint8), (3, 3), 0)
    Image.fromarray(out_rgb).save(out, quality=80)
    ys, xs = np.nonzero(alpha2d > 0.5)  # the region a user would draw: the product, a small margin
    x0, y0 = max(0, int(xs.min()) - 30), max(0, int(ys.min()) - 30)
    x1, y1 = min(W, int(xs.max()) + 30), min(H, int(ys.max()) + 30)
    return out, (x0, y0, x1 - x0, y1 - y0)


def shoot(catalog: Path, query: Path, out: Path, *extra: str) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cmd = [sys.executable, "-m", "cli", "gui", "--catalog", str(catalog), "--query", str(query),
           "--screenshot", str(out), *extra]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    shrink(out)


def shrink(path: Path) -> None:
    """Optimised PNG; if still over MAX_BYTES, a 256-colour octree palette (keeps the few
    saturated UI colours -- badges, frames -- that a median cut merges away), dithered."""
    im = Image.open(path).convert("RGB")
    im.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        print(f"{path}: {path.stat().st_size / 1000:.0f} kB as a true-colour PNG, quantising")
        im.quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG
        ).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size / 1000:.0f} kB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--luma", type=Path, default=ROOT.parent / "shared" / "datasets" / "luma")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    images = args.luma / "images"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dup = duplicate_listing(images / "mj03-black_main.jpg", tmp / "listing-48213.jpg")
        shoot(args.catalog, dup, args.out / "merchandiser.png")
        copy = edited_copy(images / "mb02-blue-0.jpg", tmp / "marketplace-offer.jpg")
        shoot(args.catalog, copy, args.out / "brand-protection.png", "--compare", "difference")
        phone, box = phone_photo(images / "mb01-blue-0.jpg", tmp / "IMG_2041.jpg")
        shoot(args.catalog, phone, args.out / "warehouse.png", "--roi", ",".join(map(str, box)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
