"""Geometric verification: is a candidate the same picture as the query?

The query's ORB descriptors are matched against a candidate's (brute-force Hamming, Lowe's ratio
test) and a homography is fitted with RANSAC; the number of inliers says how much of the
candidate reappears, geometrically consistent, in the query. That confirms edited copies (crops,
small and right-angle rotations, perspective, borders, text, recolouring, recompression: ORB is
rotation invariant and works on grey levels) and rejects look-alike products, whose features
match only by chance and never agree on one homography. :func:`aligned_similarity` then compares
the pixels of the two images aligned by that homography.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import faiss
import numpy as np

from .features import WHITE_LEVEL, Features

#: Lowe's ratio test threshold
RATIO = 0.8
#: RANSAC reprojection threshold, pixels at FEATURE_SIDE scale
RANSAC_PX = 6.0
#: fewer tentative matches than this: no homography is tried
MIN_MATCHES = 6
#: aligned comparison needs the warped query to cover this share of the candidate thumbnail
MIN_OVERLAP = 0.15


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


# ---------------------------------------------------------------------- aligned pixels
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
    # difference reads as recolouring (benchmarks/aligned_unchanged.py measures it on rotated
    # copies). uint8 subtraction saturates at 0: inside the range is 0.
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

