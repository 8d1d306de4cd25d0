"""Make the README screenshots: three users' tasks, with real photos.

    python docs/screenshots/make_screenshots.py --catalog DIR [--luma ../shared/datasets/luma]
        [--grocery ../shared/datasets/grocery] [--grocery-catalog DIR2] [--only NAME ...]
    python docs/screenshots/make_screenshots.py --survey [--grocery-catalog DIR2]

DIR is a catalog of the whole Luma feed (``lookalike index <luma>/products.csv --catalog DIR``);
DIR2 a catalog of the grocery sample's store feed (``lookalike index <grocery>/products.csv
--catalog DIR2``: 41 products, one store photo each), imported into a temporary folder when not
given. The Luma query photos are made from Luma images into a temporary folder (never into the
repo):

* merchandiser.png -- a duplicate listing: the same product photo, re-cropped and re-compressed
  by another seller;
* brand-protection.png -- an edited copy (rotated, cropped, brightened, a price banner over it),
  shown in the compare view's difference mode;
* warehouse.png -- a real phone photo of a carton in a store, from the grocery sample's test
  split (WAREHOUSE_PHOTO), searched against the store's catalog photos: the details panel shows
  why it matched, with the words read on the carton that are in the product's text.

Each is taken with ``lookalike gui --screenshot`` (a real window under Xvfb when ``xvfb-run`` is
installed, else offscreen) and saved as an optimised PNG.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 300_000
#: the warehouse query: a phone photo of a Packages product from the grocery test split, the
#: first in file order whose product comes first as "same product" with matched words (how
#: typical that is: docs/desktop.md)
WAREHOUSE_PHOTO = "images/test/Packages/Juice/Bravo-Apple-Juice/Bravo-Apple-Juice_002.jpg"


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


def run_on_display(cmd: list[str]) -> None:
    """Run a command that opens a window: under Xvfb when ``xvfb-run`` is installed (the window
    as a desktop draws it), offscreen otherwise."""
    env = dict(os.environ)
    if shutil.which("xvfb-run"):
        env.pop("QT_QPA_PLATFORM", None)
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *cmd]
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def shoot(catalog: Path, query: Path, out: Path, *extra: str) -> None:
    run_on_display([sys.executable, "-m", "cli", "gui", "--catalog", str(catalog), "--query", str(query),
                    "--screenshot", str(out), *extra])
    shrink(out)


def grocery_catalog(grocery: Path, folder: Path) -> Path:
    """The grocery store's feed (products.csv: 41 products, one store photo each) imported as
    ``lookalike index`` imports it."""
    cmd = [sys.executable, "-m", "cli", "index", str(grocery / "products.csv"), "--catalog",
           str(folder), "--quiet"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)
    return folder


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


def survey(catalog: Path, grocery: Path) -> int:
    """Search every test Packages photo of the grocery sample against ``catalog`` as the app
    does (whole photo, results per product), and print how often its product comes first, badged
    "same product", with matched words, and the first such photo in file order: the figures
    docs/desktop.md gives for the warehouse screenshot."""
    import csv

    sys.path.insert(0, str(ROOT))
    from engine.catalog import Catalog
    from engine.search import Searcher
    from engine.session import load_model_for

    with open(grocery / "eval" / "test_phone_to_catalog.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["group"] == "Packages"]
    counts = dict.fromkeys(("read", "first", "first same", "first same words", "same", "same right"), 0)
    chosen = None
    with Catalog.open(catalog, create=False) as cat:
        searcher = Searcher(cat, load_model_for(cat))
        for row in rows:
            result = searcher.search_path(str(grocery / row["query"]), k=10)
            top = result.results[0] if result.results else None
            right = top is not None and Path(top.path).name == Path(row["relevant"]).name
            same = top is not None and top.strength == "same product"
            words = bool(top is not None and top.evidence is not None and top.evidence.words)
            counts["read"] += bool(result.read)
            counts["first"] += right
            counts["first same"] += right and same
            counts["first same words"] += right and same and words
            counts["same"] += same
            counts["same right"] += same and right
            if chosen is None and right and same and words:
                chosen = row["query"]
    print(f"{len(rows)} test Packages photos: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"first in file order with its product first, 'same product', matched words: {chosen}")
    return 0


SHOTS = ("merchandiser", "brand-protection", "warehouse")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, help="a catalog of the Luma feed")
    parser.add_argument("--luma", type=Path, default=ROOT.parent / "shared" / "datasets" / "luma")
    parser.add_argument(
        "--grocery", type=Path, default=ROOT.parent / "shared" / "datasets" / "grocery"
    )
    parser.add_argument("--grocery-catalog", type=Path, help="a catalog of <grocery>/products.csv")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "--only", choices=SHOTS, action="append", help="make only this screenshot (repeatable)"
    )
    parser.add_argument(
        "--survey", action="store_true",
        help="print how typical the warehouse screenshot is (all test Packages photos) and exit",
    )  # fmt: skip
    args = parser.parse_args()
    if args.survey:
        with tempfile.TemporaryDirectory() as tmp:
            grocery = args.grocery_catalog or grocery_catalog(args.grocery, Path(tmp) / "grocery")
            return survey(grocery, args.grocery)
    shots = set(args.only or SHOTS)
    if shots - {"warehouse"} and args.catalog is None:
        parser.error("--catalog (a catalog of the Luma feed) is needed for the Luma screenshots")
    images = args.luma / "images"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "merchandiser" in shots:
            dup = duplicate_listing(images / "mj03-black_main.jpg", tmp / "listing-48213.jpg")
            shoot(args.catalog, dup, args.out / "merchandiser.png")
        if "brand-protection" in shots:
            copy = edited_copy(images / "mb02-blue-0.jpg", tmp / "marketplace-offer.jpg")
            shoot(args.catalog, copy, args.out / "brand-protection.png", "--compare", "difference")
        if "warehouse" in shots:
            grocery = args.grocery_catalog or grocery_catalog(args.grocery, tmp / "grocery-catalog")
            shoot(grocery, args.grocery / WAREHOUSE_PHOTO, args.out / "warehouse.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
