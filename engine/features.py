"""Local features of an image: ORB keypoints and descriptors, a small thumbnail, colours.

Every catalog image gets a compact set of ORB keypoints at import (:func:`catalog_features`),
stored in the catalog's ``local_features`` table (:func:`pack` / :func:`unpack`); a query's are
extracted at search time (:func:`extract`). Catalog images also store the ORB descriptors of
their mirrored image (:func:`mirror_of`), so mirrored copies verify from stored data alone.

ORB rather than SIFT: 5-10x faster to extract on this class of CPU, binary descriptors that
match with Hamming distance, and 32 bytes per keypoint, so a catalog image costs ~11 KB.
How two sets of features are matched is :mod:`engine.geometry`; when they are compared and what
counts is :mod:`engine.match_policy`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

#: bump when extraction changes so stored features are recomputed
FEATURES_VERSION = 2
#: images are resized so their longer side is this many pixels before detection
FEATURE_SIDE = 384
#: keypoints kept per image (strongest first)
MAX_KEYPOINTS = 320
#: a query's keypoints when none of its candidates verified with MAX_KEYPOINTS
#: (engine.match_policy's dense pass)
DENSE_KEYPOINTS = 1000

_local = threading.local()


def _orb(keypoints: int = MAX_KEYPOINTS) -> cv2.ORB:
    # cv2 detectors are not documented thread-safe: one per thread (and keypoint budget)
    cache = getattr(_local, "orbs", None)
    if cache is None:
        cache = _local.orbs = {}
    orb = cache.get(keypoints)
    if orb is None:
        orb = cache[keypoints] = cv2.ORB_create(nfeatures=keypoints, scaleFactor=1.2, nlevels=6,
                                                edgeThreshold=15, patchSize=15, fastThreshold=10)
    return orb


#: colour histogram: bins per RGB channel (COLOUR_BINS ** 3 bins in all)
COLOUR_BINS = 4
#: pixels brighter than this in every channel are background (studio white), not product colour
WHITE_LEVEL = 235
#: the stored thumbnail is the feature-scale image shrunk by this factor (48 px long side)
THUMB_FACTOR = 8


@dataclass
class Features:
    """Keypoint positions (float32 [N, 2], in the pixels of the image resized to FEATURE_SIDE),
    ORB descriptors (uint8 [N, 32]), the size (h, w) of that resized image and a small RGB
    thumbnail of it (1/THUMB_FACTOR) for colour and aligned-pixel comparison. A query's features
    also keep the resized image itself (``image``); stored features do not."""
    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]
    thumb: np.ndarray
    image: np.ndarray | None = None
    #: descriptors of the mirrored image at the mirrored keypoints (row i <-> point i; an all-zero
    #: row: none for that keypoint); None when not computed (see :func:`mirror_of`)
    mirrored_descriptors: np.ndarray | None = None
    #: the keypoints a DENSE_KEYPOINTS detection adds to these (positions [M, 2], descriptors
    #: [M, 32]): what the catalog stores so the duplicate scan's re-check needs no decoding
    #: (:func:`dense_of`); None when not computed
    extra_points: np.ndarray | None = None
    extra_descriptors: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def colour(self) -> np.ndarray:
        c = getattr(self, "_colour", None)
        if c is None:
            c = self._colour = colour_histogram(self.thumb)
        return c


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    if (h, w) == size:
        return img
    down = size[0] * size[1] < h * w
    return cv2.resize(np.ascontiguousarray(img), (size[1], size[0]),
                      interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)


def _feature_size(h: int, w: int) -> tuple[int, int]:
    scale = FEATURE_SIDE / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _thumb_size(size: tuple[int, int]) -> tuple[int, int]:
    return max(1, round(size[0] / THUMB_FACTOR)), max(1, round(size[1] / THUMB_FACTOR))


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """Normalised joint RGB histogram of the pixels that are not background white
    (all zeros for an all-white image)."""
    px = rgb.reshape(-1, 3)
    keep = px[(px < WHITE_LEVEL).any(axis=1)]
    if keep.shape[0] == 0:
        return np.zeros(COLOUR_BINS ** 3, np.float32)
    q = (keep.astype(np.uint16) * COLOUR_BINS) >> 8
    codes = (q[:, 0] * COLOUR_BINS + q[:, 1]) * COLOUR_BINS + q[:, 2]
    hist = np.bincount(codes, minlength=COLOUR_BINS ** 3).astype(np.float32)
    return hist / hist.sum()


# a pixel's histogram bin in one uint8 (when COLOUR_BINS ** 3 <= 256): a per-channel table
# gives each channel's share of the code, one transform adds the three
_BIN = (np.arange(256, dtype=np.int64) * COLOUR_BINS) >> 8
_CODE_LUT = np.stack([_BIN * COLOUR_BINS ** 2, _BIN * COLOUR_BINS, _BIN], axis=1).astype(np.uint8)[None]
_CODE_SUM = np.ones((1, 3), np.float32)


def fill_colours(features) -> None:
    """Compute the colour histograms (``Features.colour``) of many features at once: the same
    values as :func:`colour_histogram` of each, in one pass over all their pixels with OpenCV
    (a search needs the colours of all its candidates, 50 to several hundred: 4x faster)."""
    todo = [f for f in features if getattr(f, "_colour", None) is None]
    nb = COLOUR_BINS ** 3
    if not todo or nb > 256:
        return
    px = np.concatenate([f.thumb.reshape(-1, 3) for f in todo]).reshape(-1, 1, 3)
    white = cv2.inRange(px, (WHITE_LEVEL,) * 3, (255,) * 3).ravel()     # 255: background
    codes = cv2.transform(cv2.LUT(px, _CODE_LUT), _CODE_SUM).ravel().astype(np.int32)
    codes += np.repeat(np.arange(len(todo), dtype=np.int32) * nb,
                       [f.thumb.shape[0] * f.thumb.shape[1] for f in todo])
    hist = np.bincount(codes[white == 0], minlength=len(todo) * nb).reshape(len(todo), nb).astype(np.float32)
    for f, h in zip(todo, hist):
        total = h.sum()
        f._colour = h / total if total > 0 else np.zeros(nb, np.float32)


def backdrop(thumb: np.ndarray) -> float:
    """The share of an image's thumbnail that is plain white backdrop (a studio photo: about half;
    a phone photo of a shelf: none)."""
    px = np.asarray(thumb).reshape(-1, 3)
    return float((px >= WHITE_LEVEL).all(axis=1).mean()) if len(px) else 0.0


def colour_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection in [0, 1] (0 when either image has no non-white pixel)."""
    return float(np.minimum(a, b).sum())



def extract(rgb: np.ndarray, *, keep_image: bool = False, mirror: bool = False,
            keypoints: int = MAX_KEYPOINTS, dense: bool = False) -> Features:
    """ORB features and thumbnail of an RGB (or grey) uint8 image (~3 ms at 384 px). ``mirror``:
    also the descriptors of the mirrored image at the mirrored keypoints (``mirrored_descriptors``,
    ~1 ms more; what the catalog stores so mirrored copies verify from stored data). ``keypoints``:
    how many of the strongest to keep; ``dense``: also the extra keypoints of a DENSE_KEYPOINTS
    detection (:func:`dense_of`)."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    size = _feature_size(*rgb.shape[:2])
    return _extract_resized(_resize(rgb, size), keep_image, mirror, keypoints, dense)


def catalog_features(rgb: np.ndarray, *, keypoints: int = MAX_KEYPOINTS, dense: bool = False) -> Features:
    """The features a catalog stores for an image (ingest, and images indexed before local
    features existed): :func:`extract` with the mirrored descriptors, of the content inside a
    *coloured* uniform border (padding or a frame added to a copy, :func:`content_box`), as search
    extracts a query's features from its content. Without that, a padded copy's stored features
    and 48-px thumbnail spend their resolution on the frame, and its colour histogram counts the
    frame. A white border is the studio background the catalog's photos share: kept, so
    catalog images are compared whole, as before (on the Luma duplicate benchmark trimming white
    borders too lost recall; docs/duplicates.md). ``dense``: also the keypoints a
    DENSE_KEYPOINTS detection adds (``extra_points``, ``extra_descriptors``: :func:`dense_of`)."""
    return extract(content(rgb, coloured_only=True), mirror=True, keypoints=keypoints, dense=dense)


def _extract_resized(img: np.ndarray, keep_image: bool, mirror: bool = False,
                     keypoints: int = MAX_KEYPOINTS, dense: bool = False) -> Features:
    size = img.shape[:2]
    thumb = _resize(img, _thumb_size(size))
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    kps, desc = (None, None) if min(size) < 16 else _orb(keypoints).detectAndCompute(grey, None)
    if desc is None or not kps:
        pts, desc, mdesc = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), None
    else:
        pts = np.array([k.pt for k in kps], np.float32)
        mdesc = _mirrored_descriptors(grey, kps) if mirror else None
    f = Features(pts, desc, (int(size[0]), int(size[1])), thumb, img if keep_image else None)
    if mirror:
        f.mirrored_descriptors = mdesc if mdesc is not None else np.zeros((0, 32), np.uint8)
    if dense:
        f.extra_points, f.extra_descriptors = _extra_keypoints(grey, kps or (), keypoints)
    return f


def _extra_keypoints(grey: np.ndarray, kps, keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """The keypoints (positions, descriptors) that a DENSE_KEYPOINTS detection on ``grey`` finds
    beyond ``kps``, the ``keypoints`` strongest. ORB keeps the strongest corners of each pyramid
    level, so the larger budget finds every one of ``kps`` again (same position and level) plus
    weaker ones; only those are kept, and :func:`dense_of` puts the two sets back together."""
    none = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    if min(grey.shape) < 16 or keypoints >= DENSE_KEYPOINTS:
        return none
    dense, desc = _orb(DENSE_KEYPOINTS).detectAndCompute(grey, None)
    if desc is None or not dense:
        return none
    seen = {(k.pt, k.octave) for k in kps}
    new = np.array([(k.pt, k.octave) not in seen for k in dense], bool)
    pts = np.array([k.pt for k in dense], np.float32)
    return np.ascontiguousarray(pts[new]), np.ascontiguousarray(desc[new], np.uint8)


def dense_of(f: Features | None) -> Features | None:
    """The DENSE_KEYPOINTS features of a stored image (its keypoints and the extra ones stored with
    them, no mirrored descriptors: match the mirrored candidate instead), None when the extra
    keypoints were not stored."""
    if f is None or f.extra_points is None or f.extra_descriptors is None:
        return None
    return Features(np.concatenate([f.points, f.extra_points]),
                    np.ascontiguousarray(np.concatenate([f.descriptors, f.extra_descriptors])), f.size, f.thumb)


def _mirrored_descriptors(grey: np.ndarray, kps) -> np.ndarray:
    """ORB descriptors of the mirrored image at the mirrored keypoints, without a second detection:
    FAST/Harris are symmetric, so the mirrored image's keypoints are these, mirrored within their
    pyramid level (x -> level width - 1 - x there), with the orientation angle mirrored
    (180 - angle; ``ORB.compute`` keeps the angle it is given). Measured on Luma's mirrored copies:
    as many inliers as a full detection on the mirrored image, at a third of its cost. Row i belongs
    to keypoint i; a keypoint ORB drops (none seen) gets an all-zero row."""
    h, w = grey.shape
    scale = _orb().getScaleFactor()
    flipped = []
    for k in kps:
        s = scale ** k.octave
        x = (round(w / s) - 1 - k.pt[0] / s) * s
        flipped.append(cv2.KeyPoint(x, k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response,
                                    k.octave, k.class_id))
    out_kps, out = _orb().compute(np.ascontiguousarray(grey[:, ::-1]), flipped)
    rows = np.zeros((len(kps), 32), np.uint8)
    if out is None or not out_kps:
        return rows
    if len(out_kps) == len(kps):
        return np.ascontiguousarray(out, np.uint8)
    # ORB dropped some (at the border): put the rest back in their keypoints' rows
    where = {(round(k.pt[0], 2), round(k.pt[1], 2), k.octave): i for i, k in enumerate(flipped)}
    for k, d in zip(out_kps, out):
        i = where.get((round(k.pt[0], 2), round(k.pt[1], 2), k.octave))
        if i is not None:
            rows[i] = d
    return rows


def mirror_of(f: Features) -> Features | None:
    """The features of the mirrored image from stored data (the mirrored keypoints, their stored
    mirrored descriptors and the mirrored thumbnail), to verify mirrored copies without decoding;
    None when ``f`` has no mirrored descriptors (older catalogs until backfilled)."""
    md = f.mirrored_descriptors
    if md is None or md.shape[0] != len(f) or not len(f):
        return None
    keep = md.any(axis=1)
    pts = f.points[keep].copy()
    pts[:, 0] = (f.size[1] - 1) - pts[:, 0]
    return Features(pts, np.ascontiguousarray(md[keep]), f.size, np.ascontiguousarray(f.thumb[:, ::-1]))


def mirrored_features(f: Features) -> Features:
    """The features of the mirrored image, from a query's kept feature-scale image (``extract(...,
    keep_image=True)``): no second decode or resize of the full image."""
    if f.image is None:
        raise ValueError("mirrored_features needs features extracted with keep_image=True")
    return _extract_resized(mirrored(f.image), True)


def dense_features(f: Features, *, mirror: bool = False) -> Features:
    """The query's features again with DENSE_KEYPOINTS keypoints instead of MAX_KEYPOINTS (of the
    mirrored image with ``mirror``), from its kept feature-scale image. Overlaid text has the
    strongest corners of a photo and can take most of the MAX_KEYPOINTS budget, leaving too few on
    the product to verify a copy; the catalog's stored features are not affected (no overlay)."""
    if f.image is None:
        raise ValueError("dense_features needs features extracted with keep_image=True")
    dense = getattr(f, "_dense", None)
    if dense is None:
        # the mirrored descriptors at the mirrored keypoints come with it (as the catalog stores
        # them): a third of the cost of a second detection on the mirrored image
        dense = f._dense = _extract_resized(f.image, False, mirror=True, keypoints=DENSE_KEYPOINTS)
    if not mirror:
        return dense
    return mirror_of(dense) or _extract_resized(mirrored(f.image), False, keypoints=DENSE_KEYPOINTS)


#: a border counts as padding when its pixels stay within this distance of its colour
BORDER_TOLERANCE = 24
#: ... and when trimming it removes at least this share of the image
MIN_BORDER_SHARE = 0.04


def content_box(rgb: np.ndarray, *, coloured_only: bool = False
                ) -> tuple[tuple[int, int, int, int], bool] | None:
    """The box (x0, y0, x1, y1) inside a uniform border (padding, a frame, or a plain studio
    background), and whether that border is coloured (not near-white). None when the image has
    no uniform border worth trimming. Used to search padded copies by their content.
    ``coloured_only``: None for a near-white border too (decided from the frame alone)."""
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 16:
        return None
    frame = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    colour = np.median(frame, axis=0)
    if coloured_only and not (colour < WHITE_LEVEL).any():
        return None
    if (np.abs(frame - colour).max(axis=1) <= BORDER_TOLERANCE).mean() < 0.9:
        return None
    step = max(1, min(rgb.shape[:2]) // 256)          # a coarse grid is precise enough
    small = rgb[::step, ::step] if step > 1 else rgb
    # a pixel differs when a channel is further than BORDER_TOLERANCE from the border colour:
    # outside the integer range [ceil(c - tol), floor(c + tol)] (cv2.inRange: 10x faster than
    # the same test in numpy, which widens the whole image to float)
    low = np.clip(np.ceil(colour - BORDER_TOLERANCE), 0, 255)
    high = np.clip(np.floor(colour + BORDER_TOLERANCE), 0, 255)
    same = cv2.inRange(np.ascontiguousarray(small), low, high)
    differs = same == 0
    rows = np.nonzero(np.count_nonzero(differs, axis=1) >= 2)[0]
    cols = np.nonzero(np.count_nonzero(differs, axis=0) >= 2)[0]
    if rows.size == 0 or cols.size == 0:
        return None
    h, w = rgb.shape[:2]
    y0, y1 = max(0, (rows[0] - 1) * step), min(h, (rows[-1] + 2) * step)
    x0, x1 = max(0, (cols[0] - 1) * step), min(w, (cols[-1] + 2) * step)
    if (y1 - y0) < 16 or (x1 - x0) < 16 or (y1 - y0) * (x1 - x0) > (1 - MIN_BORDER_SHARE) * h * w:
        return None
    return (int(x0), int(y0), int(x1), int(y1)), bool((colour < WHITE_LEVEL).any())


def content(rgb: np.ndarray, *, coloured_only: bool = False) -> np.ndarray:
    """``rgb`` inside its uniform border (:func:`content_box`; contiguous), or ``rgb`` itself when
    it has none worth trimming (grey images too)."""
    box = content_box(rgb, coloured_only=coloured_only)
    if box is None:
        return rgb
    x0, y0, x1, y1 = box[0]
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def mirrored(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


# ---------------------------------------------------------------------- storage

def pack(f: Features) -> tuple[bytes, bytes]:
    """(keypoints blob, descriptors blob). Keypoints blob: uint16 header (h, w, thumb h, thumb w),
    the thumbnail (RGB uint8), then the positions as float16 pairs. Descriptors raw (32 bytes each)."""
    th, tw = f.thumb.shape[:2]
    head = np.array([f.size[0], f.size[1], th, tw], np.uint16).tobytes()
    return (head + np.ascontiguousarray(f.thumb, np.uint8).tobytes()
            + np.ascontiguousarray(f.points, np.float16).tobytes(),
            np.ascontiguousarray(f.descriptors, np.uint8).tobytes())


def pack_mirrored(f: Features) -> bytes | None:
    """The mirrored descriptors blob (raw, 32 bytes per keypoint, in keypoint order), None when
    they were not computed."""
    if f.mirrored_descriptors is None:
        return None
    return np.ascontiguousarray(f.mirrored_descriptors, np.uint8).tobytes()


def pack_dense(f: Features) -> bytes | None:
    """The extra dense keypoints blob (:func:`dense_of`): float16 position pairs, then the raw
    descriptors (36 bytes per keypoint); None when they were not computed."""
    if f.extra_points is None or f.extra_descriptors is None:
        return None
    return (np.ascontiguousarray(f.extra_points, np.float16).tobytes()
            + np.ascontiguousarray(f.extra_descriptors, np.uint8).tobytes())


def unpack_dense(f: Features, blob: bytes | None) -> None:
    """Attach a :func:`pack_dense` blob to stored features (in place); a damaged one is left out
    (the re-check then decodes the image, and the backfill stores it again)."""
    if blob is None or len(blob) % 36:
        return
    n = len(blob) // 36
    f.extra_points = np.frombuffer(blob[:4 * n], np.float16).reshape(-1, 2).astype(np.float32)
    f.extra_descriptors = np.frombuffer(blob[4 * n:], np.uint8).reshape(-1, 32)


def _unpack_head(keypoints: bytes) -> tuple[tuple[int, int], np.ndarray, int]:
    """(feature-image size, thumbnail, offset of the positions) of a keypoints blob."""
    h, w, th, tw = (int(v) for v in np.frombuffer(keypoints[:8], np.uint16))
    end = 8 + th * tw * 3
    if len(keypoints) < end:
        raise ValueError("corrupt local features: thumbnail cut short")
    return (h, w), np.frombuffer(keypoints[8:end], np.uint8).reshape(th, tw, 3), end


def unpack(keypoints: bytes, descriptors: bytes, mirrored: bytes | None = None) -> Features:
    size, thumb, end = _unpack_head(keypoints)
    pts = np.frombuffer(keypoints[end:], np.float16).reshape(-1, 2).astype(np.float32)
    desc = np.frombuffer(descriptors, np.uint8).reshape(-1, 32)
    if pts.shape[0] != desc.shape[0]:
        raise ValueError("corrupt local features: keypoint and descriptor counts differ")
    f = Features(pts, desc, size, thumb)
    if mirrored is not None:
        if len(mirrored) == 32 * pts.shape[0]:     # else damaged: left out (backfill recomputes it)
            f.mirrored_descriptors = np.frombuffer(mirrored, np.uint8).reshape(-1, 32)
    return f



def _thumbnail_only(keypoints: bytes) -> Features:
    size, thumb, _ = _unpack_head(keypoints)
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), size, thumb)


