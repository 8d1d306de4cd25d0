"""A catalog folder of N distinct images made from real photos, with planted edited copies.

    python -m benchmarks.real_catalog --out /tmp/real-10k -n 10000 [--seed 0] [--copy-share 0.1]

Sources: the Luma studio photos (``../shared/datasets/luma/images``) and the Grocery phone photos
(``../shared/datasets/grocery/images``). They are read from there and never copied.

**What makes the originals distinct (the rule).** Every source photo is cut into a grid of
disjoint *cells*; an original is made of cells, never of arbitrary crops, so two originals can
only ever share whole cells, never overlapping regions at another scale:

* Luma photos that are one photograph (the colour variants of one style and view are the same
  photo recoloured, and two views of a style may be the same pixels) form one source *group*,
  found by name (style, view) and merged within a style when their silhouettes agree. A group is
  cut once, with the grid of its first photo; each cell is taken from one of the group's photos.
  The grid's cell size (180, 260 or 360 px) is drawn per group: crops at different scales.
  Cells that are mostly white background or flat (too few edges) are dropped.
* A Grocery phone photo (348 px) is four cells, its quadrants.
* Kinds of originals: ``crop`` (one Luma cell of 260 px or more alone, enlarged at most 2.5x),
  ``strip`` (two Luma cells side by side), ``collage`` (a large Luma cell and a column of 2-3
  small cells), ``grid`` (2 x 2 cells). A grid's or collage's cells come from different source
  photos (a strip's two may be neighbours in one photo).
* **Exclusive** cells (a crop's, a strip's two, a collage's large one: each at least half of its
  image) are Luma cells used once in the whole folder; once they run out, the originals still to
  make become grids. **Shared** cells (a grid's four, a collage's small ones: each at most a
  quarter of its image) are the Grocery quadrants, used fresh first and, once every one is used,
  again, but no two originals ever have two cells in common.

So any two originals share at most one cell, covering at most a quarter of each, in another
layout and next to other photos: never near-duplicates. Every original also gets a mild colour
change and its own size (long side 600-1000 px; a grid's 600-760 px, a crop's at most 2.5x its
cell), and is written as a JPEG at quality 90. Grocery photos of one product shot one after the
other can look alike; they are only ever quarters of an image.

**Planted copies.** ``copy_share`` of the N images (default 10%) are edited copies of distinct
originals (one copy each), one edit per copy, the kinds in turn: ``recompress`` (JPEG q 25-50),
``resize`` (45-70%), ``crop`` (10-20% of the area cut away), ``pad`` (a 6-15% border),
``mirror``, ``recolour`` (hue shift or grey), ``rotate90`` (90, 180 or 270 degrees), ``text``
(one or two words laid over). The folder holds ``originals/`` and ``uploads/`` (the copies, so
that an import of the folder adds them after their originals, as a copy usually arrives), and
``truth.json`` (and ``truth.csv``: copy, original, edit) with the edit's parameters. Everything is
determined by the seed: the same seed and N make the same files.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("LOOKALIKE_DATASETS", ROOT.parent / "shared" / "datasets"))
GENERATOR_VERSION = 1
JPEG_QUALITY = 90
LONG_SIDE = (600, 1000)
LUMA_CELL_SIDES = (180, 260, 360)   # full-resolution pixels
KIND_WEIGHTS = {"crop": 0.2, "strip": 0.1, "collage": 0.3, "grid": 0.4}
EDITS = ("recompress", "resize", "crop", "pad", "mirror", "recolour", "rotate90", "text")
WHITE = 235                          # a pixel brighter than this in every channel is backdrop


@dataclass(frozen=True)
class Cell:
    cell_id: int
    source: str        # the photo the pixels come from (absolute path)
    group: str         # its source group (photos that are one photograph share it)
    box: tuple[int, int, int, int]    # x, y, w, h in the photo's full-resolution pixels
    luma: bool


# ---------------------------------------------------------------------- source cells
def _luma_key(stem: str) -> tuple[str, str]:
    """(style, view) from a Luma file name: ``mh07-green_main``, ``mb02-blue-0``,
    ``luma-stability-ball-gray`` (the last: style = its first three words, no view)."""
    if stem.startswith("luma-"):
        return "-".join(stem.split("-")[:3]), ""
    style = stem.split("-", 1)[0]
    view = stem.split("_", 1)[1] if "_" in stem else stem.rsplit("-", 1)[-1]
    return style, view


def product_of(source: str) -> str:
    """The product a source photo shows: a Grocery photo's product folder, a Luma photo's style."""
    path = Path(source)
    if "grocery" in path.parts:
        return "grocery:" + path.parent.name
    return "luma:" + _luma_key(path.stem)[0]


def _silhouette(im: np.ndarray) -> np.ndarray:
    return cv2.resize((im.min(axis=2) < WHITE).astype(np.uint8), (32, 40), interpolation=cv2.INTER_AREA) > 0


def luma_groups(luma: Path, images: dict[str, np.ndarray]) -> list[list[str]]:
    """Luma photos grouped into photographs: same (style, view), then groups of one style merged
    when their silhouettes overlap by IoU >= 0.85 (the same photo under two names)."""
    by_key: dict[tuple[str, str], list[str]] = {}
    for p in sorted(images):
        by_key.setdefault(_luma_key(Path(p).stem), []).append(p)
    groups = [sorted(v) for _, v in sorted(by_key.items())]
    sil = [_silhouette(images[g[0]]) for g in groups]
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_style: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_style.setdefault(_luma_key(Path(g[0]).stem)[0], []).append(i)
    for i, j in (pair for members in by_style.values() for pair in combinations(members, 2)):
        inter = np.logical_and(sil[i], sil[j]).sum()
        union = np.logical_or(sil[i], sil[j]).sum()
        if union and inter / union >= 0.85:
            parent[root(j)] = root(i)
    merged: dict[int, list[str]] = {}
    for i, g in enumerate(groups):
        merged.setdefault(root(i), []).extend(g)
    return [sorted(v) for _, v in sorted(merged.items())]


def _textured(cell: np.ndarray) -> bool:
    """Mostly product, not backdrop, with real edges (flat fabric looks alike across photos)."""
    if (cell.min(axis=2) < WHITE).mean() < 0.5:
        return False
    edges = cv2.Canny(cv2.cvtColor(cell, cv2.COLOR_BGR2GRAY), 60, 150)
    return (edges > 0).mean() >= 0.02


@functools.lru_cache(maxsize=4)
def source_cells(datasets: Path, seed: int, photos: int | None = None) -> list[Cell]:
    """Every usable cell of the source photos (see the module docstring), in a fixed order:
    the Luma cells, then the Grocery quadrants. ``photos``: only the first so many photos of
    each source, by name (a quick folder for tests)."""
    rng = np.random.default_rng([seed, 1])
    luma = datasets / "luma" / "images"
    grocery = datasets / "grocery" / "images"
    if not luma.is_dir() or not grocery.is_dir():
        raise FileNotFoundError(f"{datasets}: needs luma/images and grocery/images")
    small = {str(p): cv2.imread(str(p), cv2.IMREAD_REDUCED_COLOR_2) for p in sorted(luma.glob("*.jpg"))[:photos]}
    small = {p: im for p, im in small.items() if im is not None}
    cells: list[Cell] = []
    for group in luma_groups(luma, small):
        first = small[group[0]]
        ys, xs = np.nonzero(first.min(axis=2) < WHITE)
        if ys.size == 0:
            continue
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1     # half-resolution box
        side = int(rng.choice(LUMA_CELL_SIDES)) // 2
        cols, rows = max(1, (x1 - x0) // side), max(1, (y1 - y0) // side)
        ox, oy = x0 + ((x1 - x0) - cols * side) // 2, y0 + ((y1 - y0) - rows * side) // 2
        for r in range(rows):
            for c in range(cols):
                x, y = max(0, ox + c * side), max(0, oy + r * side)
                photo = group[int(rng.integers(len(group)))]
                im = small[photo]
                if y + side > im.shape[0] or x + side > im.shape[1]:
                    continue
                if _textured(im[y:y + side, x:x + side]):
                    cells.append(Cell(len(cells), photo, group[0], (int(2 * x), int(2 * y), 2 * side, 2 * side), True))
    looks = [_look(small[c.source][c.box[1] // 2:(c.box[1] + c.box[3]) // 2,
                           c.box[0] // 2:(c.box[0] + c.box[2]) // 2]) for c in cells]
    for p in sorted(grocery.rglob("*.jpg"))[:photos]:
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)      # 348 x 348 phone photos: four quadrants each
        if im is None:
            continue
        h, w = im.shape[:2]
        for q in range(4):
            box = (q % 2 * (w // 2), q // 2 * (h // 2), w // 2, h // 2)
            cells.append(Cell(len(cells), str(p), str(p), box, False))
            looks.append(_look(im[box[1]:box[1] + box[3], box[0]:box[0] + box[2]]))
    keep = _distinct(np.stack(looks))
    return [Cell(i, c.source, c.group, c.box, c.luma) for i, c in enumerate(c for c, k in zip(cells, keep) if k)]


def _look(cell: np.ndarray) -> np.ndarray:
    """A cell's coarse appearance: its 16 x 16 grey thumbnail, zero mean, unit norm."""
    g = cv2.resize(cv2.cvtColor(cell, cv2.COLOR_BGR2GRAY), (16, 16), interpolation=cv2.INTER_AREA)
    v = g.astype(np.float32).ravel()
    v -= v.mean()
    return v / max(float(np.linalg.norm(v)), 1e-6)


def _distinct(looks: np.ndarray, limit: float = 0.9) -> np.ndarray:
    """Which cells to keep: a cell that looks like an earlier kept one (correlation of the grey
    thumbnails above ``limit``: neighbouring cells along a zip or a stripe, two shots of one
    shelf in a row) is dropped, so no two cells are alike even where their pixels differ."""
    keep = np.ones(len(looks), bool)
    for start in range(0, len(looks), 2048):
        sims = looks[start:start + 2048] @ looks.T
        for r in range(sims.shape[0]):
            i = start + r
            if keep[i]:
                later = np.nonzero(sims[r, i + 1:] > limit)[0] + i + 1
                keep[later] = False
    return keep


# ---------------------------------------------------------------------- plan
@dataclass
class Original:
    name: str
    kind: str
    cells: list[int]
    long_side: int
    aspect: float          # height / width of the canvas (crop: of the cell)
    variant: int           # layout variant: strip direction, collage small-cell count
    gap: int
    colour: tuple[float, float, float]   # brightness, contrast, saturation


@dataclass
class Copy:
    name: str
    original: int
    edit: str
    params: dict


def _layout_slots(o: Original) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """(width, height, slot boxes) of an original's canvas, one slot per cell, large one first."""
    if o.kind == "crop":
        w = o.long_side if o.aspect <= 1 else round(o.long_side / o.aspect)
        h = round(w * o.aspect)
        return w, h, [(0, 0, w, h)]
    w, h = o.long_side, round(o.long_side * o.aspect)
    g = o.gap
    if o.kind == "strip":
        if o.variant == 0:       # side by side
            half = (w - g) // 2
            return w, h, [(0, 0, half, h), (half + g, 0, w - half - g, h)]
        h, w = w, h              # one above the other: the long side is the height
        half = (h - g) // 2
        return w, h, [(0, 0, w, half), (0, half + g, w, h - half - g)]
    if o.kind == "grid":
        hw, hh = (w - g) // 2, (h - g) // 2
        return w, h, [(0, 0, hw, hh), (hw + g, 0, w - hw - g, hh), (0, hh + g, hw, h - hh - g),
                      (hw + g, hh + g, w - hw - g, h - hh - g)]
    big = (2 * w) // 3                          # collage: a large cell and a column of small ones
    m = o.variant
    slots = [(0, 0, big, h)]
    step = (h - (m - 1) * g) / m
    for i in range(m):
        y = round(i * (step + g))
        slots.append((big + g, y, w - big - g, round(step) if i < m - 1 else h - y))
    return w, h, slots


def plan(n: int, seed: int = 0, datasets: Path = DATASETS, copy_share: float = 0.1,
         photos: int | None = None) -> tuple[list[Cell], list[Original], list[Copy], dict]:
    """Which cells make which original, and which originals get which copy (no pixels yet)."""
    if n < 2:
        raise ValueError("n must be at least 2")
    rng = np.random.default_rng(seed)
    cells = source_cells(Path(datasets), seed, photos)
    n_copies = int(round(n * copy_share))
    n_orig = n - n_copies
    kinds = list(KIND_WEIGHTS)
    drawn = rng.choice(kinds, n_orig, p=list(KIND_WEIGHTS.values()))
    # exclusive cells are the Luma cells: crops take the large ones (>= 260 px), strips and
    # collages the others first; when a kind's cells run out, the original becomes a grid
    luma = [c.cell_id for c in cells if c.luma]
    rng.shuffle(luma)
    large = [c for c in luma if cells[c].box[2] >= 260]
    other = [c for c in luma if cells[c].box[2] < 260]
    shared_pool = [c.cell_id for c in cells if not c.luma]
    rng.shuffle(shared_pool)
    fresh = list(shared_pool)
    uses = np.zeros(len(cells), np.int32)
    pairs_used: set[tuple[int, int]] = set()
    reused_slots = shared_slots = 0
    originals: list[Original] = []
    for kind in map(str, drawn):
        need = {"crop": 1, "strip": 2, "collage": 1}.get(kind, 0)
        if kind == "crop" and not large or need > len(large) + len(other):
            kind, need = "grid", 0
        chosen = [large.pop()] if kind == "crop" else [(other or large).pop() for _ in range(need)]
        variant = int(rng.integers(2)) if kind == "strip" else int(rng.integers(2, 4)) if kind == "collage" else 0
        for _ in range(4 if kind == "grid" else variant if kind == "collage" else 0):
            pick = _pick_shared(cells, chosen, fresh, shared_pool, uses, pairs_used, rng)
            reused_slots += uses[pick] > 0
            shared_slots += 1
            chosen.append(pick)
        for a, b in combinations(sorted(chosen), 2):
            pairs_used.add((a, b))
        uses[chosen] += 1
        long_side = int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1))
        if kind == "crop":
            side = cells[chosen[0]].box[2]
            long_side = min(long_side, max(LONG_SIDE[0], round(2.5 * side)))   # at most 2.5x larger
            aspect = 1.0
        elif kind == "strip":
            aspect = float(rng.uniform(0.45, 0.6))
        elif kind == "grid":     # quadrants of 174 px: at most ~2.2x larger
            long_side = int(rng.integers(LONG_SIDE[0], 761))
            aspect = float(rng.uniform(0.8, 1.0))
        else:
            aspect = float(rng.uniform(0.6, 0.8))
        originals.append(Original(
            name="", kind=kind, cells=chosen, long_side=long_side, aspect=aspect, variant=variant,
            gap=int(rng.choice([0, 4, 8])),
            colour=(float(rng.uniform(-10, 10)), float(rng.uniform(0.92, 1.08)), float(rng.uniform(0.9, 1.1)))))
    # the kinds in random order (the grids that take over when Luma cells run out included)
    order = rng.permutation(n_orig)
    originals = [originals[i] for i in order]
    width = len(str(n))
    for i, o in enumerate(originals):
        o.name = f"originals/o{i:0{width}d}.jpg"
    copied = sorted(rng.choice(n_orig, n_copies, replace=False).tolist())
    edits = list(EDITS)
    copies = []
    for j, o in enumerate(copied):
        if j % len(edits) == 0:
            rng.shuffle(edits)
        edit = edits[j % len(edits)]
        copies.append(Copy(name=f"uploads/u{j:0{width}d}.jpg", original=o, edit=edit,
                           params=_edit_params(edit, rng)))
    used = uses[uses > 0]
    stats = {"cells": len(cells), "luma_cells": len(luma), "grocery_quadrants": len(shared_pool),
             "cells_used": int(used.size), "shared_slots": int(shared_slots),
             "shared_slots_reused": int(reused_slots), "mean_uses_of_a_shared_cell":
             round(float(uses[[c for c in shared_pool]].mean()), 2), "max_uses_of_a_cell": int(uses.max()),
             "kinds": {k: sum(o.kind == k for o in originals) for k in kinds}}
    return cells, originals, copies, stats


def _pick_shared(cells, chosen, fresh, pool, uses, pairs_used, rng) -> int:
    """A shared cell for an original holding ``chosen``: a fresh one while there are any, else a
    used one (least used first among a random sample) that makes no cell pair seen before and
    comes from another source photo than the original's other cells."""
    groups = {cells[c].group for c in chosen}

    def fits(c: int) -> bool:
        return cells[c].group not in groups and all((min(c, d), max(c, d)) not in pairs_used for d in chosen)

    for k in range(len(fresh) - 1, max(-1, len(fresh) - 65), -1):
        if fits(fresh[k]):
            return fresh.pop(k)
    for _ in range(1000):
        sample = rng.choice(pool, min(64, len(pool)), replace=False)
        sample = sample[np.argsort(uses[sample], kind="stable")]
        for c in sample:
            if fits(int(c)):
                return int(c)
    raise ValueError("no shared cell fits: too few source photos for this n")


def _edit_params(edit: str, rng: np.random.Generator) -> dict:
    if edit == "recompress":
        return {"quality": int(rng.integers(25, 51))}
    if edit == "resize":
        return {"scale": round(float(rng.uniform(0.45, 0.7)), 3)}
    if edit == "crop":
        keep = float(np.sqrt(rng.uniform(0.80, 0.90)))       # 10-20% of the area cut away
        return {"keep": round(keep, 4), "fx": round(float(rng.random()), 4), "fy": round(float(rng.random()), 4)}
    if edit == "pad":
        colour = [255, 255, 255] if rng.random() < 0.4 else [int(v) for v in rng.integers(0, 256, 3)]
        return {"border": round(float(rng.uniform(0.06, 0.15)), 4), "colour": colour}
    if edit == "recolour":
        return {"grey": bool(rng.random() < 0.3), "hue": int(rng.integers(15, 41)) * int(rng.choice([-1, 1]))}
    if edit == "rotate90":
        return {"turns": int(rng.integers(1, 4))}
    if edit == "text":
        words = ["SALE", "NEW!", "-30%", "FREE SHIPPING", "(c) shop", "BEST PRICE", "SOLD OUT"]
        return {"words": [str(w) for w in rng.choice(words, int(rng.integers(1, 3)), replace=False)],
                "colour": [int(v) for v in rng.integers(0, 256, 3)],
                "places": [[round(float(rng.uniform(0.02, 0.5)), 3), round(float(rng.uniform(0.2, 0.9)), 3)]
                           for _ in range(2)], "size": round(float(rng.uniform(0.9, 1.5)), 3)}
    return {}


# ---------------------------------------------------------------------- pixels
class _Photos:
    """Decoded source photos, the most recent few kept."""

    def __init__(self, size: int = 48):
        self.size = size
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, path: str) -> np.ndarray:
        im = self.cache.pop(path, None)
        if im is None:
            im = cv2.imread(path, cv2.IMREAD_COLOR)
            if im is None:
                raise OSError(f"{path}: cannot be read")
        self.cache[path] = im
        while len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return im


def _fit(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """``im`` scaled to cover w x h and centre-cropped to it."""
    ih, iw = im.shape[:2]
    s = max(w / iw, h / ih)
    nw, nh = max(w, round(iw * s)), max(h, round(ih * s))
    out = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    x, y = (nw - w) // 2, (nh - h) // 2
    return out[y:y + h, x:x + w]


def render_original(o: Original, cells: list[Cell], photos: _Photos) -> np.ndarray:
    w, h, slots = _layout_slots(o)
    canvas = np.full((h, w, 3), 250, np.uint8)
    for cell_id, (sx, sy, sw, sh) in zip(o.cells, slots):
        c = cells[cell_id]
        im = photos.get(c.source)
        if c.luma:
            x, y, cw, ch = c.box
            im = im[y:y + ch, x:x + cw]
        canvas[sy:sy + sh, sx:sx + sw] = _fit(im, sw, sh)
    b, k, sat = o.colour
    f = canvas.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    f = grey + sat * (f - grey)
    f = (f - 128.0) * k + 128.0 + b
    return np.clip(f, 0, 255).astype(np.uint8)


def apply_edit(im: np.ndarray, edit: str, p: dict) -> np.ndarray:
    """The planted edit ``edit`` with parameters ``p`` (from :func:`_edit_params`)."""
    h, w = im.shape[:2]
    if edit == "resize":
        return cv2.resize(im, (max(32, round(w * p["scale"])), max(32, round(h * p["scale"]))),
                          interpolation=cv2.INTER_AREA)
    if edit == "crop":
        cw, ch = round(w * p["keep"]), round(h * p["keep"])
        x, y = round((w - cw) * p["fx"]), round((h - ch) * p["fy"])
        return im[y:y + ch, x:x + cw].copy()
    if edit == "pad":
        b = round(max(w, h) * p["border"])
        return cv2.copyMakeBorder(im, b, b, b, b, cv2.BORDER_CONSTANT, value=tuple(p["colour"]))
    if edit == "mirror":
        return im[:, ::-1].copy()
    if edit == "recolour":
        if p["grey"]:
            return cv2.cvtColor(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        hsv = cv2.cvtColor(im, cv2.COLOR_BGR2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + p["hue"]) % 180).astype(np.uint8)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if edit == "rotate90":
        return np.ascontiguousarray(np.rot90(im, p["turns"]))
    if edit == "text":
        im = im.copy()
        scale = w / 400 * p["size"]
        for word, (fx, fy) in zip(p["words"], p["places"]):
            cv2.putText(im, word, (round(w * fx), round(h * fy)), cv2.FONT_HERSHEY_DUPLEX, scale,
                        tuple(p["colour"]), max(1, round(scale * 2)), cv2.LINE_AA)
        return im
    return im      # recompress: the pixels as they are, written at a low quality


def _write(path: Path, im: np.ndarray, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


# ---------------------------------------------------------------------- the folder
def truth_matches(out: Path, n: int, seed: int, copy_share: float, photos: int | None = None) -> bool:
    """Whether ``out`` already holds the complete folder for these settings."""
    try:
        t = json.loads((out / "truth.json").read_text())
    except (OSError, ValueError):
        return False
    return (t.get("version"), t.get("n"), t.get("seed"), t.get("copy_share"), t.get("photos")) == \
        (GENERATOR_VERSION, n, seed, copy_share, photos)


def build_folder(out: Path, n: int, seed: int = 0, copy_share: float = 0.1, datasets: Path = DATASETS,
                 progress: Callable[[int, int], None] | None = None, cancel=None,
                 photos: int | None = None) -> dict:
    """Write the folder (or reuse it when its truth.json says it was made with these settings)
    and return the truth. ``cancel.is_set()`` stops between images (truth.json is written last,
    so a stopped folder is made again next time). ``photos``: see :func:`source_cells`."""
    out = Path(out)
    if truth_matches(out, n, seed, copy_share, photos):
        return json.loads((out / "truth.json").read_text())
    (out / "truth.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    cells, originals, copies, stats = plan(n, seed, datasets, copy_share, photos)
    plan_s = time.perf_counter() - t0
    copy_of: dict[int, list[Copy]] = {}
    for c in copies:
        copy_of.setdefault(c.original, []).append(c)
    decoded = _Photos()
    done = 0
    for i, o in enumerate(originals):
        if cancel is not None and cancel.is_set():
            raise KeyboardInterrupt
        im = render_original(o, cells, decoded)
        _write(out / o.name, im, JPEG_QUALITY)
        done += 1
        for c in copy_of.get(i, ()):
            # the copy is made from the original as published (decoded JPEG), as copies are
            src = cv2.imdecode(np.frombuffer((out / o.name).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            edited = apply_edit(src, c.edit, c.params)
            _write(out / c.name, edited, c.params["quality"] if c.edit == "recompress" else JPEG_QUALITY)
            done += 1
        if progress:
            progress(done, n)
    truth = {
        "version": GENERATOR_VERSION, "n": n, "seed": seed, "copy_share": copy_share, "photos": photos,
        "datasets": str(datasets), "plan_seconds": round(plan_s, 1),
        "seconds": round(time.perf_counter() - t0, 1), "stats": stats,
        "originals": [{"path": o.name, "kind": o.kind,
                       "cells": [[cells[c].source, *cells[c].box] for c in o.cells]} for o in originals],
        "copies": [{"path": c.name, "original": originals[c.original].name, "edit": c.edit,
                    "params": c.params} for c in copies],
    }
    with open(out / "truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["copy", "original", "edit"])
        w.writerows((c["path"], c["original"], c["edit"]) for c in truth["copies"])
    tmp = out / "truth.json.tmp"
    tmp.write_text(json.dumps(truth, indent=0))
    os.replace(tmp, out / "truth.json")
    return truth


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the folder to write (originals/, uploads/, truth.json)")
    ap.add_argument("-n", type=int, required=True, help="images in all, planted copies included")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--copy-share", type=float, default=0.1)
    ap.add_argument("--datasets", default=str(DATASETS))
    args = ap.parse_args(argv)
    from tqdm import tqdm

    with tqdm(total=args.n, unit="img", desc="generating") as bar:
        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)
        truth = build_folder(Path(args.out), args.n, args.seed, args.copy_share, Path(args.datasets), progress)
    print(json.dumps({"n": truth["n"], "seconds": truth["seconds"], **truth["stats"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
