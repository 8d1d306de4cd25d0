"""Local features and geometric verification: is a candidate the same picture as the query?

Every catalog image gets a compact set of ORB keypoints at ingest (``extract``), stored in the
catalog's ``local_features`` table (see :func:`pack` / :func:`unpack`). At query time the query's
ORB features are matched against each top candidate's stored features (brute-force Hamming,
Lowe's ratio test) and a homography is fitted with RANSAC; the number of inliers says how much of
the candidate reappears, geometrically consistent, in the query. That confirms edited copies
(crops, small and right-angle rotations, perspective, borders, text, recolouring, recompression:
ORB is rotation invariant and works on grey levels) and rejects look-alike products, whose
features match only by chance and never agree on one homography. Mirrored copies are handled by
also matching the features of the mirrored query (``Query.mirrored``), computed only when needed.
Catalog images also store the ORB descriptors of their mirrored image (``extract(...,
mirror=True)``, :func:`mirror_of`), so two catalog images that are mirrored copies of each other
can be verified from stored data alone (:func:`pair_evidence`, the duplicate finder).

ORB rather than SIFT: 5-10x faster to extract on this class of CPU, binary descriptors that
match with Hamming distance, and 32 bytes per keypoint, so a catalog image costs ~11 KB.

:func:`pair_evidence` measures two catalog images from their stored embeddings and stored
features only; :func:`dense_recheck` decodes a query image again when nothing confirmed it as a
copy (an overlay may have taken its stored keypoints), as search matches such a query again with
more keypoints.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import faiss
import numpy as np

#: bump when extraction changes so stored features are recomputed
FEATURES_VERSION = 2
#: images are resized so their longer side is this many pixels before detection
FEATURE_SIDE = 384
#: keypoints kept per image (strongest first)
MAX_KEYPOINTS = 320
#: a query's keypoints when none of its candidates verified with MAX_KEYPOINTS (engine.search;
#: the duplicate finder's :func:`dense_recheck`)
DENSE_KEYPOINTS = 1000
#: candidates matched again with DENSE_KEYPOINTS (the nearest by embedding cosine)
DENSE_TOP = 4
#: Lowe's ratio test threshold
RATIO = 0.8
#: RANSAC reprojection threshold, pixels at FEATURE_SIDE scale
RANSAC_PX = 6.0
#: fewer tentative matches than this: no homography is tried
MIN_MATCHES = 6

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
#: aligned comparison needs the warped query to cover this share of the candidate thumbnail
MIN_OVERLAP = 0.15


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


def colour_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection in [0, 1] (0 when either image has no non-white pixel)."""
    return float(np.minimum(a, b).sum())


def extract(rgb: np.ndarray, *, keep_image: bool = False, mirror: bool = False,
            keypoints: int = MAX_KEYPOINTS) -> Features:
    """ORB features and thumbnail of an RGB (or grey) uint8 image (~3 ms at 384 px). ``mirror``:
    also the descriptors of the mirrored image at the mirrored keypoints (``mirrored_descriptors``,
    ~1 ms more; what the catalog stores so mirrored copies verify from stored data). ``keypoints``:
    how many of the strongest to keep."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    size = _feature_size(*rgb.shape[:2])
    return _extract_resized(_resize(rgb, size), keep_image, mirror, keypoints)


def catalog_features(rgb: np.ndarray, *, keypoints: int = MAX_KEYPOINTS) -> Features:
    """The features a catalog stores for an image (ingest, and images indexed before local
    features existed): :func:`extract` with the mirrored descriptors, of the content inside a
    *coloured* uniform border (padding or a frame added to a copy, :func:`content_box`), as search
    extracts a query's features from its content. Without that, a padded copy's stored features
    and 48-px thumbnail spend their resolution on the frame, and its colour histogram counts the
    frame. A white border is the studio background the catalog's photos share: kept, so
    catalog images are compared whole, as before (on the Luma duplicate benchmark trimming white
    borders too lost recall; docs/duplicates.md). ``keypoints``: DENSE_KEYPOINTS for
    :func:`dense_recheck` (the same image, more of its corners)."""
    return extract(content(rgb, coloured_only=True), mirror=True, keypoints=keypoints)


def _extract_resized(img: np.ndarray, keep_image: bool, mirror: bool = False,
                     keypoints: int = MAX_KEYPOINTS) -> Features:
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
    return f


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


# ---------------------------------------------------------------------- matching
def _knn2_hamming(query: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices [n, 2] of each query descriptor's two nearest candidate descriptors
    (Hamming). One OpenMP thread: verification already runs candidates side by side, and a
    320 x 320 search is too small to split (OpenMP's setting is per calling thread)."""
    faiss.omp_set_num_threads(1)
    dist, nidx = faiss.knn_hamming(np.ascontiguousarray(query, np.uint8),
                                   np.ascontiguousarray(candidate, np.uint8), 2)
    return dist, nidx


def ratio_matches(query: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tentative matches (query indices, candidate indices) between two sets of ORB descriptors:
    each query descriptor's nearest candidate descriptor by Hamming distance, kept when it is
    clearly nearer than the second nearest (Lowe's ratio test, RATIO); a candidate descriptor
    claimed by several query descriptors keeps only its nearest (ties: the lowest query index).
    Brute force with faiss's Hamming kNN (``knn_hamming``, 2 nearest: the same distances as
    OpenCV's ``batchDistance``, 4x faster), the bookkeeping vectorised."""
    if len(query) == 0 or len(candidate) < 2:
        empty = np.zeros(0, np.intp)
        return empty, empty
    dist, nidx = _knn2_hamming(query, candidate)
    keep = np.nonzero(dist[:, 0] < RATIO * dist[:, 1])[0]
    train = nidx[keep, 0]
    # one match per candidate keypoint: the nearest (stable sort by distance, then first per index)
    order = np.lexsort((keep, dist[keep, 0], train))
    train_sorted = train[order]
    first = np.ones(order.size, bool)
    first[1:] = train_sorted[1:] != train_sorted[:-1]
    sel = np.sort(order[first])          # in query order
    return keep[sel].astype(np.intp), train[sel].astype(np.intp)


@dataclass
class Verification:
    inliers: int = 0
    homography: np.ndarray | None = None     # query feature pixels -> candidate feature pixels


def verify(query: Features, candidate: Features) -> Verification:
    """Ratio-test ORB matches, then a RANSAC homography (OpenCV USAC_ACCURATE: graph-cut local
    optimisation; deterministic): its inlier count and matrix."""
    if len(query) < MIN_MATCHES or len(candidate) < MIN_MATCHES:
        return Verification()
    q_idx, c_idx = ratio_matches(query.descriptors, candidate.descriptors)
    if q_idx.size < MIN_MATCHES:
        return Verification()
    src = query.points[q_idx]
    dst = candidate.points[c_idx]
    H, mask = cv2.findHomography(src, dst, cv2.USAC_ACCURATE, RANSAC_PX, maxIters=1000, confidence=0.995)
    if H is None or mask is None or not _plausible(H):
        return Verification()
    return Verification(int(mask.sum()), H)


def inliers(query: Features, candidate: Features) -> int:
    """Number of ratio-test matches consistent with one RANSAC homography (0 when none)."""
    return verify(query, candidate).inliers


def _plausible(H: np.ndarray) -> bool:
    """Reject degenerate homographies (collapsed or wildly stretched)."""
    if abs(H[2, 2]) < 1e-9:
        return False
    a = H[:2, :2] / H[2, 2]
    det = float(np.linalg.det(a))
    return 1e-3 < abs(det) < 1e3 and abs(float(H[2, 0])) < 0.01 and abs(float(H[2, 1])) < 0.01


#: a plain match with this many inliers confirms a copy (engine.search.STRONG_INLIERS: the
#: mirrored query is then not tried; pair_evidence)
CONFIRMED_INLIERS = 25
#: ... unless its aligned pixels agree less than this: a plain match then does not rule out a
#: mirrored copy (engine.search.ALIGNED_CONFIRMED, pair_evidence)
ALIGNED_CONFIRMED = 0.9
#: a pixel's colour is "unchanged" when no channel moved by more than this
UNCHANGED_TOLERANCE = 28
_KERNEL3 = np.ones((3, 3), np.uint8)
#: a query whose product pixels differ between channels by at most this on average is grey (a copy
#: turned grey: 0-4 on the Luma copies; a colour photo of a grey product: 0.4-6, where luminance
#: and colour agree anyway): its aligned correlation is taken on luminance
GREY_CHROMA = 6.0
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)     # ITU-R BT.601, as cv2.COLOR_RGB2GRAY


@dataclass
class Alignment:
    ncc: float = 0.0          # normalised cross-correlation of the aligned RGB thumbnails
    unchanged: float = 0.0    # share of the candidate's product pixels whose colour the query keeps


def aligned_similarity(query: Features, candidate: Features, H: np.ndarray, *,
                       either_grey: bool = False) -> Alignment:
    """Pixel agreement of the query warped onto the candidate by ``H``, over the candidate's
    non-background pixels that the query covers: the normalised cross-correlation of the RGB
    values (all channels pooled, so colour changes count; high for an edited copy, lower for a
    recoloured variant of the same photo; of the luminance when the query is grey), and the share
    of pixels whose colour is unchanged (near 1 for a copy that kept its colours, near 0 for a
    globally recoloured copy, in between for a variant where only the product was recoloured).
    ``either_grey``: take the correlation on luminance when either image is grey (a catalog pair,
    where either may be the copy), not only the query. Zeros when the overlap is too small."""
    ct = candidate.thumb
    th, tw = ct.shape[:2]
    # query thumbnail pixels -> query feature pixels -> candidate feature pixels -> candidate thumb
    to_cand = np.diag([tw / candidate.size[1], th / candidate.size[0], 1.0])
    q_small = query.thumb
    qh, qw = q_small.shape[:2]
    from_q = np.diag([query.size[1] / qw, query.size[0] / qh, 1.0])
    M = to_cand @ H @ from_q
    warped = cv2.warpPerspective(q_small, M, (tw, th), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.warpPerspective(np.full((qh, qw), 255, np.uint8), M, (tw, th), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if valid.mean() < MIN_OVERLAP:
        return Alignment()
    # a pixel of misalignment must not count as a change: compare slightly blurred thumbnails,
    # away from the warped image's edge
    valid = cv2.erode(valid.astype(np.uint8), _KERNEL3) > 0
    warped = cv2.GaussianBlur(warped, (3, 3), 0)
    blurred = cv2.GaussianBlur(ct, (3, 3), 0)
    # compare the product, not the studio background both share
    fg = valid & (ct < WHITE_LEVEL).any(axis=2)
    region = fg if fg.sum() >= 0.05 * fg.size else valid
    if not region.any():
        return Alignment()
    # a pixel keeps its colour when it lies within tolerance of the colour range of the candidate
    # pixel's 3x3 neighbourhood (per channel): at 48 px a rotated or warped copy's resampling and a
    # sub-pixel homography error shift textured edges by up to a pixel, which a pixel-to-pixel
    # difference reads as recolouring (rotated copies kept a median 0.81 of their pixels, 1.0 now:
    # benchmarks/aligned_unchanged.py). uint8 subtraction saturates at 0: inside the range is 0.
    outside = cv2.max(cv2.subtract(cv2.erode(blurred, _KERNEL3), warped),
                      cv2.subtract(warped, cv2.dilate(blurred, _KERNEL3)))
    unchanged = float((outside[region].max(axis=1) <= UNCHANGED_TOLERANCE).mean())
    a = warped[region].astype(np.float32)
    b = blurred[region].astype(np.float32)
    if (float((a.max(axis=1) - a.min(axis=1)).mean()) <= GREY_CHROMA
            or (either_grey and float((b.max(axis=1) - b.min(axis=1)).mean()) <= GREY_CHROMA)):
        # a grey query (a copy turned grey) keeps only its original's luminance: compared in
        # colour, the original agrees no better than a sibling of another colour
        a = a @ _LUMA
        b = b @ _LUMA
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return Alignment(float((a * b).sum() / den) if den > 1e-6 else 0.0, unchanged)


# ---------------------------------------------------------------------- catalog access
def features_for(catalog, image_ids, *, paths: dict[int, str] | None = None,
                 compute_missing: bool = True) -> dict[int, Features]:
    """Stored features of catalog images (with their mirrored descriptors where stored). Images
    indexed before local features existed (or with an older FEATURES_VERSION) are decoded and
    their features computed and stored, once (``paths`` saves the lookup of their files); images
    that cannot be read are left out. Images whose features predate the mirrored descriptors are
    not decoded for them (:func:`backfill` adds them)."""
    blobs = catalog.local_feature_blobs(image_ids, FEATURES_VERSION)
    out = {}
    for i, b in blobs.items():
        try:
            out[i] = unpack(*b)
        except ValueError:          # damaged row: recomputed below
            pass
    missing = [int(i) for i in image_ids if int(i) not in out]
    if missing and compute_missing:
        if paths is None or any(i not in paths for i in missing):
            paths = {r["image_id"]: r["path"] for r in catalog.image_records(missing)}
        out.update(_compute_and_store(catalog, [(i, paths[i]) for i in missing if i in paths]))
    return out


def thumbnails_for(catalog, image_ids, *, paths: dict[int, str] | None = None) -> dict[int, Features]:
    """The stored thumbnails of catalog images, as Features without keypoints (what colour
    agreement needs: a search scores the colours of all its candidates but verifies only the
    best few). Reads the keypoints blob only (header, thumbnail, positions: ~8 KB, against ~28 KB
    with both descriptor blobs). Images without stored features get them as :func:`features_for`
    does."""
    blobs = catalog.local_feature_blobs(image_ids, FEATURES_VERSION, descriptors=False)
    out = {}
    for i, (keypoints, _, _) in blobs.items():
        try:
            out[i] = _thumbnail_only(keypoints)
        except ValueError:          # damaged row: recomputed below
            pass
    missing = [int(i) for i in image_ids if int(i) not in out]
    if missing:
        out.update(features_for(catalog, missing, paths=paths))
    return out


def _thumbnail_only(keypoints: bytes) -> Features:
    size, thumb, _ = _unpack_head(keypoints)
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), size, thumb)


#: short side a catalog image is decoded at for its features (JPEGs at a reduced scale)
DECODE_SHORT_SIDE = 256


def decode(path: str, min_short_side: int = DECODE_SHORT_SIDE) -> np.ndarray | None:
    """A catalog image's pixels (for its features by default); None when the file cannot be used
    now (gone, unreadable, damaged: the image keeps what is stored)."""
    from .errors import LookalikeError
    from .imaging import load_image

    try:
        return load_image(path, min_short_side=min_short_side)
    except (LookalikeError, OSError, MemoryError):
        return None


def _compute_and_store(catalog, items: list[tuple[int, str]]) -> dict[int, Features]:
    from .errors import LookalikeError

    out: dict[int, Features] = {}
    rows = []
    for image_id, path in items:
        rgb = decode(path)
        if rgb is None:
            continue
        f = catalog_features(rgb)
        out[image_id] = f
        rows.append((image_id, FEATURES_VERSION, *pack(f), pack_mirrored(f)))
    if rows and not catalog.readonly:
        try:
            catalog.put_local_feature_blobs(rows)
        except (LookalikeError, OSError) as exc:    # busy or read-only media: recomputed next time
            import logging
            logging.getLogger(__name__).info("local features not stored: %s", exc)
        except Exception as exc:  # sqlite3.OperationalError (locked): same
            import logging
            logging.getLogger(__name__).info("local features not stored: %s", exc)
    return out


def backfill(catalog, *, progress=None, cancel=None, batch: int = 64) -> int:
    """Compute and store the local features of every catalog image lacking them, or lacking their
    mirrored descriptors (catalogs built before local features, or before mirrored descriptors,
    existed; ``lookalike check --repair`` calls this). Decodes each such image once. Returns how
    many images got features. ``progress(done, total, path)``; ``cancel.is_set()`` stops early."""
    todo = catalog.images_without_local_features(FEATURES_VERSION, mirrored=True)
    done = stored = 0
    for start in range(0, len(todo), batch):
        if cancel is not None and cancel.is_set():
            break
        chunk = todo[start:start + batch]
        stored += len(_compute_and_store(catalog, chunk))
        done += len(chunk)
        if progress:
            progress(done, len(todo), chunk[-1][1])
    return stored


#: mirrored pre-test of :func:`pair_evidence`: every MIRROR_PRETEST_STRIDE-th mirrored keypoint
#: is matched first, and the full mirrored match runs only when that subset alone gives at least
#: MIRROR_PRETEST_INLIERS inliers. Measured on the Luma duplicate benchmark's 11,678 candidate
#: pairs below the inlier threshold: 524 pass, at 0.37 ms CPU each instead of 1.4 ms for a full
#: match, and all 46 mirrored true copies that the full match verifies pass (docs/duplicates.md).
MIRROR_PRETEST_STRIDE = 4
MIRROR_PRETEST_INLIERS = 6

#: columns of :func:`pair_evidence`
EVIDENCE = ("cosine", "inliers", "colour", "aligned", "unchanged", "features")


def pair_evidence(catalog, pairs) -> np.ndarray:
    """What :func:`pair_scores` scores, per (image_id, image_id) pair, as an array
    [m, len(EVIDENCE)]: embedding cosine, ORB/RANSAC inliers (first image's features matched to
    the second's), colour similarity, aligned pixel agreement, unchanged share, and ``features``
    = 1 where the calibrated score applies (0 where neither image has local features: only the
    embedding can score it). Cosine is NaN where an image is missing. All from stored data.

    Mirrored copies: when the plain match does not confirm a copy (fewer than CONFIRMED_INLIERS
    inliers, or aligned pixels below ALIGNED_CONFIRMED: search's rule),
    the stored mirrored descriptors of the first image (else of the second) are matched too
    (after a pre-test on a quarter of them, MIRROR_PRETEST_*), and the pair is scored from the
    geometry with more inliers (the aligned comparison then warps the mirrored thumbnail)."""
    from .scoring import MARGIN_MIN_INLIERS

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    ev = np.zeros((len(pairs), len(EVIDENCE)), np.float64)
    ev[:, 0] = np.nan
    if len(pairs) == 0:
        return ev
    ids = np.unique(pairs).tolist()
    existing = {r["image_id"] for r in catalog.image_records(ids)}
    ids = [i for i in ids if i in existing]
    if not ids:
        return ev
    embs = dict(zip(ids, catalog.embeddings(ids)))
    feats = features_for(catalog, ids)
    mirrors: dict[int, Features | None] = {}

    def mirror(i: int) -> Features | None:
        if i not in mirrors:
            mirrors[i] = mirror_of(feats[i])
        return mirrors[i]

    for n, (a, b) in enumerate(pairs.tolist()):
        if a not in embs or b not in embs:
            continue
        ev[n, 0] = float(np.dot(embs[a], embs[b]))
        fa, fb = feats.get(a), feats.get(b)
        if (fa is None or not len(fa)) and (fb is None or not len(fb)):
            continue                          # no pixels (or blank ones): embedding only
        ev[n, 5] = 1.0
        if fa is None or fb is None:
            continue                          # colour and geometry need both images' features
        ev[n, 2] = colour_similarity(fa.colour, fb.colour)
        q, c, v = fa, fb, verify(fa, fb)
        al = (aligned_similarity(q, c, v.homography, either_grey=True)
              if v.inliers >= MARGIN_MIN_INLIERS else None)
        # as search does: mirrored when the plain match does not confirm a copy (fewer than
        # CONFIRMED_INLIERS), or confirms one whose pixels disagree (a nearly symmetric product
        # matches its mirrored copy plainly, under the wrong geometry)
        if al is None or v.inliers < CONFIRMED_INLIERS or al.ncc < ALIGNED_CONFIRMED:
            m, other = (mirror(a), fb) if mirror(a) is not None else (mirror(b), fa)
            if m is not None and _mirror_pretest(m, other):
                vm = verify(m, other)
                if vm.inliers > v.inliers:
                    q, c, v, al = m, other, vm, None
        if v.homography is not None:
            if al is None:
                al = aligned_similarity(q, c, v.homography, either_grey=True)
            ev[n, 1], ev[n, 3], ev[n, 4] = v.inliers, al.ncc, al.unchanged
    return ev


def dense_recheck_rows(pairs, evidence) -> np.ndarray:
    """The rows of (query image, candidate image) ``pairs`` that :func:`dense_recheck` matches
    again: for every query image that none of its rows confirms as a copy (CONFIRMED_INLIERS
    inliers with aligned pixels of at least ALIGNED_CONFIRMED, in ``evidence``, as
    :func:`pair_evidence` gives it), its DENSE_TOP rows nearest by embedding cosine among those
    with local features. Sorted by query image."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    ev = np.asarray(evidence, np.float64).reshape(len(pairs), len(EVIDENCE))
    if not len(pairs):
        return np.zeros(0, np.int64)
    confirmed = (ev[:, 1] >= CONFIRMED_INLIERS) & (ev[:, 3] >= ALIGNED_CONFIRMED)
    done = np.unique(pairs[confirmed, 0])
    usable = np.nonzero((ev[:, 5] > 0) & ~np.isnan(ev[:, 0]) & ~np.isin(pairs[:, 0], done))[0]
    # by query image, nearest first; then the first DENSE_TOP of each
    order = usable[np.lexsort((-ev[usable, 0], pairs[usable, 0]))]
    query = pairs[order, 0]
    start = np.r_[0, np.nonzero(query[1:] != query[:-1])[0] + 1] if len(order) else np.zeros(0, np.int64)
    rank = np.arange(len(order)) - np.repeat(start, np.diff(np.r_[start, len(order)]))
    return order[rank < DENSE_TOP]


def dense_recheck(catalog, pairs, evidence) -> np.ndarray:
    """``evidence`` (:func:`pair_evidence`'s, [m, len(EVIDENCE)]) of (query image, candidate image)
    ``pairs``, with each query image matched again with DENSE_KEYPOINTS keypoints decoded from its
    file, as search does with a query that nothing verified (engine.search, DENSE_TOP): text or a
    logo laid over a copy has the strongest corners of the photo and takes most of the
    MAX_KEYPOINTS stored at import, leaving too few on the product to verify the copy from stored
    data. Each query image is decoded once (give all its rows together, as
    :func:`dense_recheck_rows` selects them); its candidates' stored features are used as they
    are. The mirrored dense features are tried unless the plain ones confirm a copy (inliers and
    aligned pixels, as :func:`pair_evidence` decides for stored data). As in search,
    only a confirmed match (CONFIRMED_INLIERS) from this pass counts, and only where it has more
    inliers than the row had: with more keypoints, other photos (another product on the same
    model) match more too. A query whose file cannot be read keeps its evidence. Returns the
    updated evidence (a copy)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.array(evidence, np.float64, copy=True).reshape(len(pairs), len(EVIDENCE))
    if not len(pairs):
        return out
    rows: dict[int, list[int]] = {}
    for n, q in enumerate(pairs[:, 0].tolist()):
        rows.setdefault(q, []).append(n)
    paths = {r["image_id"]: r["path"] for r in catalog.image_records(list(rows))}
    stored = features_for(catalog, np.unique(pairs[:, 1]).tolist(), compute_missing=False)
    for q, mine in rows.items():
        mine = [n for n in mine if len(stored.get(int(pairs[n, 1]), ()))]
        rgb = decode(paths[q]) if mine and q in paths else None
        if rgb is None:
            continue
        dense = catalog_features(rgb, keypoints=DENSE_KEYPOINTS)
        for query in (dense, mirror_of(dense)):
            if query is None:
                break
            confirmed = False
            for n in mine:
                candidate = stored[int(pairs[n, 1])]
                v = verify(query, candidate)
                if v.inliers < CONFIRMED_INLIERS or v.homography is None:
                    continue
                al = aligned_similarity(query, candidate, v.homography, either_grey=True)
                confirmed |= al.ncc >= ALIGNED_CONFIRMED
                if v.inliers > out[n, 1]:
                    out[n, 1], out[n, 3], out[n, 4] = v.inliers, al.ncc, al.unchanged
            if confirmed:       # as pair_evidence: no mirrored match after a confirmed plain one
                break
    return out


def _mirror_pretest(mirrored: Features, candidate: Features) -> bool:
    step = MIRROR_PRETEST_STRIDE
    subset = Features(mirrored.points[::step], mirrored.descriptors[::step], mirrored.size, mirrored.thumb)
    return verify(subset, candidate).inliers >= MIRROR_PRETEST_INLIERS


def pair_scores(catalog, pairs) -> np.ndarray:
    """The calibrated score (engine.scoring) of each (image_id, image_id) pair of catalog images:
    the score a search with the first image gives the second when no other catalog image competes
    (embedding cosine, ORB/RANSAC inliers, aligned pixel agreement and colour, from stored data;
    the features of images indexed before local features existed are computed once). Mirrored
    copies are verified with the stored mirrored descriptors (:func:`pair_evidence`); turned ones
    need nothing more (ORB is rotation invariant). A first image that no pair confirms as a copy
    is decoded and matched again with more keypoints (:func:`dense_recheck`, as search does). Pairs
    naming a missing image score 0; pairs of two images without local features (files
    unreadable, or blank images without a keypoint) get :func:`scoring.embedding_score`."""
    from . import scoring

    pairs = np.asarray([(int(a), int(b)) for a, b in pairs], np.int64).reshape(-1, 2)
    ev = pair_evidence(catalog, pairs)
    rows = dense_recheck_rows(pairs, ev)
    if rows.size:
        ev[rows] = dense_recheck(catalog, pairs[rows], ev[rows])
    out = np.zeros(len(ev), np.float64)
    for n, (cosine, inliers, colour, aligned, unchanged, features) in enumerate(ev.tolist()):
        if np.isnan(cosine):
            continue
        if not features:
            out[n] = float(scoring.embedding_score(cosine))
            continue
        e = scoring.Evidence(cosine=cosine, inliers=int(inliers), colour=colour, aligned=aligned,
                             unchanged=unchanged)
        scoring.set_margins([e])
        out[n] = scoring.score(e)
    return out
