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

ORB rather than SIFT: 5-10x faster to extract on this class of CPU, binary descriptors that
match with Hamming distance, and 32 bytes per keypoint, so a catalog image costs ~11 KB.

Nothing here decodes catalog images: :func:`pair_scores` scores two catalog images from their
stored embeddings and stored features only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

#: bump when extraction changes so stored features are recomputed
FEATURES_VERSION = 1
#: images are resized so their longer side is this many pixels before detection
FEATURE_SIDE = 384
#: keypoints kept per image (strongest first)
MAX_KEYPOINTS = 320
#: Lowe's ratio test threshold
RATIO = 0.8
#: RANSAC reprojection threshold, pixels at FEATURE_SIDE scale
RANSAC_PX = 6.0
#: fewer tentative matches than this: no homography is tried
MIN_MATCHES = 6

_local = threading.local()


def _orb() -> cv2.ORB:
    # cv2 detectors are not documented thread-safe: one per thread
    orb = getattr(_local, "orb", None)
    if orb is None:
        orb = cv2.ORB_create(nfeatures=MAX_KEYPOINTS, scaleFactor=1.2, nlevels=6,
                             edgeThreshold=15, patchSize=15, fastThreshold=10)
        _local.orb = orb
    return orb


#: colour histogram: bins per RGB channel (COLOUR_BINS ** 3 bins in all)
COLOUR_BINS = 4
#: pixels brighter than this in every channel are background (studio white), not product colour
WHITE_LEVEL = 235


@dataclass
class Features:
    """Keypoint positions (float32 [N, 2], FEATURE_SIDE scale), ORB descriptors (uint8 [N, 32])
    and a colour histogram of the non-white pixels (float32 [COLOUR_BINS**3], sums to 1, or
    all zeros for an all-white image)."""
    points: np.ndarray
    descriptors: np.ndarray
    colour: np.ndarray

    def __len__(self) -> int:
        return int(self.points.shape[0])


_NO_COLOUR = np.zeros(COLOUR_BINS ** 3, np.float32)
EMPTY = Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), _NO_COLOUR)


def _at_feature_scale(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    scale = FEATURE_SIDE / max(h, w)
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(np.ascontiguousarray(img), size,
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return img


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """Normalised joint RGB histogram of the pixels that are not background white."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    small = rgb[::2, ::2].reshape(-1, 3)
    keep = small[(small < WHITE_LEVEL).any(axis=1)]
    if keep.shape[0] == 0:
        return _NO_COLOUR.copy()
    q = (keep.astype(np.uint16) * COLOUR_BINS) >> 8
    codes = (q[:, 0] * COLOUR_BINS + q[:, 1]) * COLOUR_BINS + q[:, 2]
    hist = np.bincount(codes, minlength=COLOUR_BINS ** 3).astype(np.float32)
    return hist / hist.sum()


def extract(rgb: np.ndarray) -> Features:
    """ORB features and colour histogram of an RGB (or grey) uint8 image (~10 ms)."""
    img = _at_feature_scale(rgb)
    colour = colour_histogram(img)
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if min(grey.shape[:2]) < 16:
        return Features(EMPTY.points, EMPTY.descriptors, colour)
    kps, desc = _orb().detectAndCompute(grey, None)
    if desc is None or not kps:
        return Features(EMPTY.points, EMPTY.descriptors, colour)
    pts = np.array([k.pt for k in kps], np.float32)
    return Features(pts, desc, colour)


def colour_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Histogram intersection in [0, 1] (0 when either image has no non-white pixel)."""
    return float(np.minimum(a, b).sum())


def mirrored(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


# ---------------------------------------------------------------------- storage
def pack(f: Features) -> tuple[bytes, bytes]:
    """(keypoints blob, descriptors blob): the colour histogram (float16) followed by the
    positions (float16 pairs); descriptors raw."""
    head = np.ascontiguousarray(f.colour, np.float16).tobytes()
    return (head + np.ascontiguousarray(f.points, np.float16).tobytes(),
            np.ascontiguousarray(f.descriptors, np.uint8).tobytes())


def unpack(keypoints: bytes, descriptors: bytes) -> Features:
    raw = np.frombuffer(keypoints, np.float16)
    n_colour = COLOUR_BINS ** 3
    colour = raw[:n_colour].astype(np.float32)
    pts = raw[n_colour:].reshape(-1, 2).astype(np.float32)
    desc = np.frombuffer(descriptors, np.uint8).reshape(-1, 32)
    if pts.shape[0] != desc.shape[0] or colour.shape[0] != n_colour:
        return EMPTY
    return Features(pts, desc, colour)


# ---------------------------------------------------------------------- matching
_matcher_local = threading.local()


def _matcher() -> cv2.BFMatcher:
    m = getattr(_matcher_local, "m", None)
    if m is None:
        m = _matcher_local.m = cv2.BFMatcher(cv2.NORM_HAMMING)
    return m


def inliers(query: Features, candidate: Features) -> int:
    """Number of ratio-test matches consistent with one RANSAC homography (0 when none)."""
    if len(query) < MIN_MATCHES or len(candidate) < MIN_MATCHES:
        return 0
    pairs = _matcher().knnMatch(query.descriptors, candidate.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_MATCHES:
        return 0
    # one candidate keypoint matched by many query keypoints is not evidence: keep the best
    best: dict[int, cv2.DMatch] = {}
    for m in good:
        b = best.get(m.trainIdx)
        if b is None or m.distance < b.distance:
            best[m.trainIdx] = m
    good = list(best.values())
    if len(good) < MIN_MATCHES:
        return 0
    src = query.points[[m.queryIdx for m in good]]
    dst = candidate.points[[m.trainIdx for m in good]]
    H, mask = cv2.findHomography(src, dst, cv2.USAC_DEFAULT, RANSAC_PX, maxIters=1000, confidence=0.995)
    if H is None or mask is None:
        return 0
    if not _plausible(H):
        return 0
    return int(mask.sum())


def _plausible(H: np.ndarray) -> bool:
    """Reject degenerate homographies (collapsed or wildly stretched)."""
    a = H[:2, :2] / H[2, 2] if abs(H[2, 2]) > 1e-9 else H[:2, :2]
    det = float(np.linalg.det(a))
    return 1e-3 < abs(det) < 1e3 and abs(float(H[2, 0])) < 0.01 and abs(float(H[2, 1])) < 0.01


# ---------------------------------------------------------------------- catalog access
def features_for(catalog, image_ids, *, paths: dict[int, str] | None = None,
                 compute_missing: bool = True) -> dict[int, Features]:
    """Stored features of catalog images. Images indexed before local features existed (or
    with an older FEATURES_VERSION) are decoded and their features computed and stored, once
    (``paths`` saves the lookup of their files); images that cannot be read are left out."""
    blobs = catalog.local_feature_blobs(image_ids, FEATURES_VERSION)
    out = {i: unpack(*b) for i, b in blobs.items()}
    missing = [int(i) for i in image_ids if int(i) not in out]
    if missing and compute_missing:
        if paths is None or any(i not in paths for i in missing):
            paths = {r["image_id"]: r["path"] for r in catalog.image_records(missing)}
        out.update(_compute_and_store(catalog, [(i, paths[i]) for i in missing if i in paths]))
    return out


def _compute_and_store(catalog, items: list[tuple[int, str]]) -> dict[int, Features]:
    from .errors import LookalikeError
    from .imaging import load_image

    out: dict[int, Features] = {}
    rows = []
    for image_id, path in items:
        try:
            rgb = load_image(path, min_short_side=256)
        except (LookalikeError, OSError, MemoryError):
            continue
        f = extract(rgb)
        out[image_id] = f
        rows.append((image_id, FEATURES_VERSION, *pack(f)))
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
    """Compute and store the local features of every catalog image lacking them (catalogs built
    before local features existed; ``lookalike check --repair`` may call this). Returns how many
    images got features. ``progress(done, total, path)``; ``cancel.is_set()`` stops early."""
    todo = catalog.images_without_local_features(FEATURES_VERSION)
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


def pair_scores(catalog, pairs) -> np.ndarray:
    """The calibrated score (engine.scoring) of each (image_id, image_id) pair of catalog images,
    the same score a search for one with the other in the catalog gives a verified candidate:
    embedding cosine + ORB/RANSAC inliers (best of plain and mirrored is not available without
    decoding, so mirrored pairs rely on cosine and colour) + colour agreement, all from stored
    data. Pairs naming a missing image score 0."""
    from . import scoring

    pairs = [(int(a), int(b)) for a, b in pairs]
    if not pairs:
        return np.zeros(0, np.float64)
    ids = sorted({i for p in pairs for i in p})
    existing = {r["image_id"] for r in catalog.image_records(ids)}
    ids = [i for i in ids if i in existing]
    if not ids:
        return np.zeros(len(pairs), np.float64)
    embs = dict(zip(ids, catalog.embeddings(ids)))
    feats = features_for(catalog, ids)
    out = np.zeros(len(pairs), np.float64)
    for n, (a, b) in enumerate(pairs):
        if a not in embs or b not in embs:
            continue
        cos = float(np.dot(embs[a], embs[b]))
        fa, fb = feats.get(a), feats.get(b)
        inl = inliers(fa, fb) if fa is not None and fb is not None else 0
        col = colour_similarity(fa.colour, fb.colour) if fa is not None and fb is not None else 0.0
        out[n] = float(scoring.calibrated(cos, inl, col))
    return out
