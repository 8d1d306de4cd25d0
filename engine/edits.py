"""What a copier changed: the edits that turn a catalog photo into a suspect copy of it.

For brand protection's evidence reports: :func:`detect_edits` registers the catalog photo onto
the copy with the matcher that verifies search results (:mod:`engine.registration`; a mirrored
photo is tried too), then reads each edit from the homography or from the aligned pixels:

* **mirrored**: the photo registers mirrored, clearly better than plain (or search said so);
* **turned**: the homography turns the photo's edges, all four alike (a perspective warp tilts
  them unevenly), by more than :data:`TURN_DEGREES`;
* **cropped**: a band along a whole side of the photo is out of the copy's frame, inside any
  added border (a turn or a mild warp inside the same canvas loses corners, not a whole side);
* **padded**: a band of one colour and constant depth along a whole side of the copy is not the
  photo (a border added around it); white bands and bands of the photo's own backdrop colour
  are not claimed (they may be the backdrop extended, or a warp's fill);
* **recoloured**: the photo's coloured pixels changed hue or lost (or gained) saturation;
* **text added**: compact, dense clusters of strong edges in the copy where the aligned photo
  has none (blur, JPEG and downscaling remove edges; misalignment is absorbed by widening the
  photo's edges; the edge of a pasted picture is a thin line or a sparse outline).

Precision comes first, since an edit we name goes into a takedown report: each test needs a
clear margin over what alignment error, resampling and JPEG produce, and no registration means
no edits. Resizing, blur and perspective are not named. Thresholds follow the edits' nature; benchmarks/edit_detection.py measures precision
and recall on Luma's edited copies (docs/edits.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .alignment import AlignedPair, Difference, difference, halve_to, warp_match
from .features import FEATURE_SIDE, WHITE_LEVEL, extract, mirrored_features
from .registration import Registration, register_features

EDITS = ("cropped", "mirrored", "turned", "recoloured", "text added", "padded")

#: a mirrored registration wins when it has this many times the plain one's inliers (a mirrored
#: copy keeps every asymmetric feature; the plain match of a near-symmetric product keeps only
#: its symmetric ones)
MIRROR_MARGIN = 1.5
#: a plain registration this strong is not second-guessed by a mirrored try
MIRROR_SKIP_INLIERS = 80
#: turned: every edge of the photo turns the same way by more than this (degrees; a
#: perspective warp tilts its edges unevenly, some one way and some the other)
TURN_DEGREES = 3.0
#: a homography whose edge turns spread by at most this (degrees) is a similarity (a resize,
#: a turn, a shift): its registration error spreads them by about a degree
SIMILAR_SPREAD = 2.0
#: cropped: a band this deep (share of the photo's side) along a whole side is out of frame ...
CROP_BAND = 0.03
#: ... or this deep under a perspective warp, whose corners moved out of the frame may take a
#: band of this order with them
WARP_CROP_BAND = 0.10
#: padded: a band this deep (share of the copy's side) along a whole side is not the photo ...
PAD_BAND = 0.03
#: ... of one colour (within this of its median, per channel) ...
PAD_TOLERANCE = 24
#: ... as deep all along the side within this share (a warp's uncovered wedge is not) ...
PAD_EVEN = 0.01
#: ... and not the photo: this share of its pixels lie outside the aligned photo or differ from it
PAD_FOREIGN = 0.9
#: recoloured: Lab chroma above which a pixel has a hue worth comparing
CHROMA_MIN = 12.0
#: ... pixels that few (share of the compared ones) decide nothing
CHROMA_SHARE = 0.03
#: ... hue turned by more than this (degrees, median over the coloured pixels)
HUE_DEGREES = 10.0
#: ... or saturation scaled below 1/SATURATION_RATIO or above SATURATION_RATIO (median ratio;
#: a grey copy keeps ~0)
SATURATION_RATIO = 1.5
#: text added: a copy's edge is "strong" above this gradient (grey levels per pixel) ...
EDGE_STRONG = 60.0
#: ... and "new" where the aligned photo's widened edges stay below this share of it
EDGE_NEW_RATIO = 0.25
#: ... the photo's edges are widened by this (share of the analysed long side; at least 2 px)
EDGE_TOLERANCE = 0.006
#: ... clusters of new edges of this share of the analysed pixels are added text (a short
#: word: ~250 edge pixels at 800 x 645) ...
TEXT_SHARE = 0.0005
#: ... when its box is at least this high and wide (share of the long side: ~10 px at 800) ...
TEXT_HEIGHT = 0.012
#: ... and this share of its box is new edges
TEXT_DENSITY = 0.05

#: pixels are compared at most this large (long side) ...
MAX_SIDE = 800
#: ... and colours and borders at most this large
SMALL_SIDE = 256


@dataclass
class EditReport:
    edits: list[str]                               # names from EDITS, in EDITS' order
    details: dict = field(default_factory=dict)    # the measurements behind them (JSON values)
    alignment: AlignedPair | None = None           # None: the two did not register
    _difference: Difference | None = field(default=None, repr=False)

    @property
    def difference(self) -> Difference | None:
        """The difference image of the aligned pair (made on first use; None without one)."""
        if self._difference is None and self.alignment is not None:
            self._difference = difference(self.alignment)
        return self._difference

    def to_json(self) -> dict:
        return {"edits": list(self.edits), "details": dict(self.details),
                "registered": self.alignment is not None}


def _register(query: np.ndarray, match: np.ndarray, shapes, transform: str
              ) -> tuple[Registration | None, bool, dict]:
    """The better of the plain and the mirrored registration of the match onto the query (both
    halved towards the feature size; homographies in the pixels of the full ``shapes``), and
    whether it is the mirrored one. ``transform`` with "mirrored" (search's evidence): the
    mirrored one is tried first and kept when it registers."""
    q = extract(halve_to(query, 2 * FEATURE_SIDE), keep_image=True)
    m = extract(halve_to(match, 2 * FEATURE_SIDE), keep_image=True)
    if "mirrored" in transform:
        found = register_features(q, mirrored_features(m), *shapes)
        if found is not None:
            return found, True, {"inliers": found.inliers}
        found = register_features(q, m, *shapes)
        return found, False, {"inliers": found.inliers if found else 0}
    plain = register_features(q, m, *shapes)
    p = plain.inliers if plain is not None else 0
    if p >= MIRROR_SKIP_INLIERS:
        return plain, False, {"inliers": p}
    flipped = register_features(q, mirrored_features(m), *shapes)
    f = flipped.inliers if flipped is not None else 0
    info = {"inliers": max(p, f), "plain_inliers": p, "mirrored_inliers": f}
    if flipped is not None and f > MIRROR_MARGIN * p:
        return flipped, True, info
    return plain, False, info


def _wrap(deg: float) -> float:
    return float((deg + 180.0) % 360.0 - 180.0)


def _edge_turns(H: np.ndarray, w: int, h: int) -> np.ndarray:
    """How much H turns each edge of a w x h image (top, right, bottom, left; degrees)."""
    c = cv2.perspectiveTransform(np.float64([[[0, 0], [w, 0], [w, h], [0, h]]]), H)[0]
    tl, tr, br, bl = c
    ang = lambda v: np.degrees(np.arctan2(v[1], v[0]))
    return np.array([_wrap(ang(tr - tl)), _wrap(ang(br - tr) - 90), _wrap(ang(br - bl)),
                     _wrap(ang(bl - tl) - 90)])


def _rotation(H: np.ndarray, w: int, h: int) -> tuple[float, float]:
    """The homography's turn of the match (degrees, circular mean over its four edges) and the
    spread of the edges' turns around it."""
    turns = np.radians(_edge_turns(H, w, h))
    mean = float(np.degrees(np.arctan2(np.sin(turns).mean(), np.cos(turns).mean())))
    spread = float(max(abs(_wrap(np.degrees(t) - mean)) for t in turns))
    return mean, spread


def _bands(inside: np.ndarray, w: float, h: float) -> tuple[np.ndarray, float]:
    """For a convex polygon ``inside`` (the part of a w x h frame that the other image
    shows), the depth of the band along each whole side (top, right, bottom, left) that it
    leaves out, as shares of the frame's side, and its area share of the frame."""
    if inside is None or len(inside) < 3:
        return np.ones(4), 0.0
    p = inside.reshape(-1, 2)
    x0, y0 = p.min(axis=0)
    x1, y1 = p.max(axis=0)
    depth = np.array([y0 / h, (w - x1) / w, (h - y1) / h, x0 / w]).clip(0, 1)
    return depth, float(cv2.contourArea(p.astype(np.float32))) / (w * h)


def _clip(H: np.ndarray, box: tuple[float, float, float, float], dst_w: int, dst_h: int
          ) -> np.ndarray | None:
    """The box (x0, y0, x1, y1) mapped by H, clipped to the dst frame (Sutherland-Hodgman;
    OpenCV's intersectConvexConvex fails on coincident edges, the frames of an unedited copy): a
    convex polygon, or None."""
    x0, y0, x1, y1 = box
    poly = cv2.perspectiveTransform(np.float64([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]), H)[0]
    for axis, bound, keep_below in ((0, 0, False), (0, dst_w, True), (1, 0, False), (1, dst_h, True)):
        if len(poly) == 0:
            return None
        out = []
        for a, b in zip(poly, np.roll(poly, -1, axis=0)):
            a_in = a[axis] <= bound if keep_below else a[axis] >= bound
            b_in = b[axis] <= bound if keep_below else b[axis] >= bound
            if a_in:
                out.append(a)
            if a_in != b_in:
                t = (bound - a[axis]) / (b[axis] - a[axis])
                out.append(a + t * (b - a))
        poly = np.array(out)
    return poly if len(poly) >= 3 else None


def _borders(query: np.ndarray, match: np.ndarray, covered: np.ndarray) -> list[dict]:
    """Per side of the query (top, right, bottom, left): the band of one colour along the whole
    side (pixels within PAD_TOLERANCE of the outermost line's median colour), as ``depth`` (a
    share of the side; its shallowest point), ``uneven`` (how much deeper it reaches elsewhere
    along the side, a share; a border added around a photo is as deep all along) and
    ``foreign`` (the share of its pixels that are not the aligned match: not covered by it, or
    of another colour)."""
    out = []
    query, match = query.astype(np.int16), match.astype(np.int16)
    for side in range(4):
        q, m, c = (np.rot90(a, side) for a in (query, match, covered))   # the side on top
        size = q.shape[0]
        colour = np.median(q[0], axis=0)
        near = np.abs(q - colour).max(axis=2) <= PAD_TOLERANCE
        # per column, the depth of the first pixel of another colour
        run = np.where(near.all(axis=0), size, (~near).argmax(axis=0))
        # the columns where the band ends short of the middle (a border along a neighbouring
        # side runs the whole length)
        ends = run[run < size // 2]
        if ends.size < 0.5 * run.size:
            out.append({"depth": 0.0, "uneven": 1.0, "foreign": 0.0, "px": 0, "colour": colour})
            continue
        depth = int(min(np.percentile(run, 2), ends.min()))
        uneven = float(np.percentile(ends, 90) - depth) / size
        foreign = 0.0
        if depth:
            band = slice(0, depth)
            other = np.abs(q[band] - m[band]).max(axis=2) > PAD_TOLERANCE
            foreign = float((~c[band] | other).mean())
        out.append({"depth": depth / size, "uneven": uneven, "foreign": foreign, "px": depth,
                    "colour": colour})
    return out


def _colour(query: np.ndarray, match: np.ndarray, region: np.ndarray) -> dict:
    """How the match's coloured pixels look in the query: the median turn of their hue, the
    median ratio of their saturation (Lab chroma) and the median shift of their lightness."""
    q = cv2.cvtColor(query, cv2.COLOR_RGB2LAB)[region].astype(np.float32) - (0, 128, 128)
    m = cv2.cvtColor(match, cv2.COLOR_RGB2LAB)[region].astype(np.float32) - (0, 128, 128)
    qc = np.hypot(q[:, 1], q[:, 2])
    mc = np.hypot(m[:, 1], m[:, 2])
    coloured = mc > CHROMA_MIN
    out = {"coloured_share": float(coloured.mean()) if coloured.size else 0.0}
    if coloured.sum() < max(20, CHROMA_SHARE * coloured.size):
        return out
    out["saturation_ratio"] = float(np.median(qc[coloured]) / np.median(mc[coloured]))
    out["lightness_shift"] = float(np.median(q[coloured, 0] - m[coloured, 0]) * 100 / 255)
    both = coloured & (qc > CHROMA_MIN)
    if both.sum() >= max(20, 0.5 * coloured.sum()):
        turn = np.arctan2(q[both, 2], q[both, 1]) - np.arctan2(m[both, 2], m[both, 1])
        out["hue_turn"] = float(np.degrees(np.median(np.abs(np.angle(np.exp(1j * turn))))))
    return out


def _gradient(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel gradient (|dx| + |dy| of a 3x3 Sobel / 8, grey levels per pixel), the largest
    over the channels."""
    best = None
    for c in cv2.split(rgb):
        dx, dy = cv2.spatialGradient(c)
        g = cv2.add(cv2.absdiff(dx, 0), cv2.absdiff(dy, 0), dtype=cv2.CV_16S)
        best = g if best is None else cv2.max(best, g)
    return best.astype(np.float32) * 0.125


def _text(pair: AlignedPair, region: np.ndarray) -> dict:
    """The compact clusters of strong edges in the query that the aligned match lacks, shaped
    like lettering: their share of the analysed pixels, and the box around them (shares of the
    frame)."""
    h, w = region.shape
    qg = _gradient(pair.query)
    r = max(2, round(EDGE_TOLERANCE * max(h, w)))
    mg = cv2.dilate(_gradient(pair.match), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    new = ((qg > EDGE_STRONG) & (qg * EDGE_NEW_RATIO > mg) & region).astype(np.uint8)
    # the letters of a word join into one cluster
    k = max(3, round(0.02 * max(h, w)))
    joined = cv2.morphologyEx(new, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    out = {"new_edges": float(new.mean()), "text_share": 0.0}
    if n <= 1:
        return out
    counts = np.bincount(labels[new > 0], minlength=n)[1:]
    x, y, bw, bh = (stats[1:, i] for i in range(4))
    # lettering: a block at least TEXT_HEIGHT high and wide, dense with edges (the edge of a
    # pasted or warped picture is a thin line, or a sparse outline once closed)
    dense = counts >= TEXT_DENSITY * bw * bh
    tall = np.minimum(bw, bh) >= TEXT_HEIGHT * max(h, w)
    ok = np.flatnonzero(dense & tall)
    if ok.size:
        # all the lettering (a word's letters may stand apart), and the box around it
        out["text_share"] = float(counts[ok].sum()) / (h * w)
        x0, y0 = x[ok].min(), y[ok].min()
        x1, y1 = (x[ok] + bw[ok]).max(), (y[ok] + bh[ok]).max()
        out["text_box"] = [round(float(x0 / w), 3), round(float(y0 / h), 3),
                           round(float((x1 - x0) / w), 3), round(float((y1 - y0) / h), 3)]
    return out


def detect_edits(query_rgb: np.ndarray, match_rgb: np.ndarray, *, transform: str = "",
                 max_side: int = MAX_SIDE) -> EditReport:
    """The edits that make ``query_rgb`` (a suspect copy) from ``match_rgb`` (the catalog photo
    it matched), with the measurements behind them. ``transform``: the search evidence's
    ``Evidence.transform`` ("mirrored", "turned, mirrored", ...; empty: unknown or plain).
    Pixels are compared with the query halved until its long side is at most ``max_side``.
    Images that do not register give no edits and no alignment."""
    shown = halve_to(query_rgb, max_side)
    found, mirrored, details = _register(shown, match_rgb, (query_rgb.shape, match_rgb.shape), transform)
    if found is None:
        return EditReport([], details)
    match = np.ascontiguousarray(match_rgb[:, ::-1]) if mirrored else match_rgb
    H = found.homography
    qh, qw = query_rgb.shape[:2]
    mh, mw = match.shape[:2]
    turn, spread = _rotation(H, mw, mh)
    similar = spread <= SIMILAR_SPREAD
    details.update(aligned=round(found.aligned, 3), unchanged=round(found.unchanged, 3),
                   angle=round(turn, 2), perspective=round(spread, 2))
    edits = set()
    if mirrored:
        edits.add("mirrored")
    if abs(turn) - spread > TURN_DEGREES:     # every edge turned the same way
        edits.add("turned")

    pair = warp_match(query_rgb, match, found, shown=shown)
    q_small = halve_to(shown, SMALL_SIDE)
    m_small = halve_to(pair.match, SMALL_SIDE)
    covered = halve_to(pair.valid.astype(np.uint8) * 255, SMALL_SIDE) == 255
    # compare pixels away from the match's warped edge and from added borders
    e = max(1, round(0.01 * max(covered.shape)))
    region = cv2.erode(covered.astype(np.uint8), np.ones((2 * e + 1, 2 * e + 1), np.uint8)) > 0
    sides = _borders(q_small, m_small, covered)
    border = max(sides, key=lambda b: b["depth"] if b["uneven"] <= PAD_EVEN else 0.0)
    details.update(border=round(border["depth"], 4), border_uneven=round(border["uneven"], 4),
                   border_foreign=round(border["foreign"], 3))
    # a band of the photo's own backdrop colour, or white (the studio backdrop, and the fill of
    # a warp's uncovered corners), may be that backdrop extended: no evidence of a border
    frame = np.concatenate([match[0], match[-1], match[:, 0], match[:, -1]])
    backdrop = np.median(frame, axis=0)
    details["border_colour"] = [round(float(c)) for c in border["colour"]]
    inner = [0.0] * 4      # the depth of the added border on each side (top, right, ...)
    for side, b in enumerate(sides):
        if (b["depth"] >= PAD_BAND and b["uneven"] <= PAD_EVEN and b["foreign"] >= PAD_FOREIGN
                and np.abs(b["colour"] - backdrop).max() > PAD_TOLERANCE
                and b["colour"].min() < WHITE_LEVEL):
            edits.add("padded")
            inner[side] = b["depth"]
        if b["px"]:
            view = np.rot90(region, side)   # a view: writes reach region
            view[:b["px"] + e] = False
    # what of the photo the copy shows: inside its added borders (a border added after a crop
    # covers what the crop cut)
    box = (inner[3] * qw, inner[0] * qh, (1 - inner[1]) * qw, (1 - inner[2]) * qh)
    lost, kept = _bands(_clip(np.linalg.inv(H), box, mw, mh), mw, mh)
    details.update(kept=round(kept, 4), lost_band=round(float(lost.max()), 4))
    if lost.max() >= (CROP_BAND if similar else WARP_CROP_BAND):
        edits.add("cropped")

    if region.any():
        a = cv2.cvtColor(q_small, cv2.COLOR_RGB2GRAY)[region].astype(np.float32)
        b = cv2.cvtColor(m_small, cv2.COLOR_RGB2GRAY)[region].astype(np.float32)
        a -= a.mean()
        b -= b.mean()
        details["structure"] = round(float((a * b).sum() / max(1e-6, np.sqrt((a * a).sum() * (b * b).sum()))), 3)
    if region.mean() > 0.1:
        colour = _colour(q_small, m_small, region)
        details.update({k: round(v, 4) for k, v in colour.items()})
        ratio = colour.get("saturation_ratio", 1.0)
        if colour.get("hue_turn", 0.0) > HUE_DEGREES or not (1 / SATURATION_RATIO <= ratio <= SATURATION_RATIO):
            edits.add("recoloured")
        full_region = cv2.resize(region.astype(np.uint8), shown.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
        text = _text(pair, full_region)
        details.update({k: (round(v, 5) if isinstance(v, float) else v) for k, v in text.items()})
        if text["text_share"] >= TEXT_SHARE:
            edits.add("text added")
    return EditReport([e for e in EDITS if e in edits], details, pair)
