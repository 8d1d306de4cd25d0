"""Put a catalog match into the query's pixel frame, and measure where they differ (Qt-free).

Used by the compare view: linked zoom/pan, blinking and a difference image only make sense when
both images share one frame. The match is first resized to the query's size; when asked, it is
then registered with ORB features and a RANSAC homography (OpenCV), which undoes the crops,
rotations, perspective and rescaling of an edited copy. If registration is not trustworthy the
plain resize is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_INLIERS = 15
DIFF_THRESHOLD = 40  # per-pixel max channel difference (0-255) counted as "changed"


@dataclass
class Alignment:
    query: np.ndarray  # H x W x 3 RGB (possibly downscaled)
    match: np.ndarray  # the match in the query's frame, same shape
    valid: np.ndarray  # H x W bool: pixels of the frame the match covers
    method: str  # "features" | "resize"
    inliers: int = 0

    def describe(self) -> str:
        if self.method == "features":
            return f"aligned on {self.inliers} matching features"
        return "resized to the query's size"


def fit_max_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(rgb)
    return cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )


def _gray(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), scale


def register(
    query: np.ndarray, match: np.ndarray, *, work_side: int = 800
) -> tuple[np.ndarray, int] | None:
    """Homography mapping ``match`` pixels onto ``query`` pixels, with its inlier count, or None."""
    gq, sq = _gray(query, work_side)
    gm, sm = _gray(match, work_side)
    orb = cv2.ORB_create(nfeatures=2000)
    kq, dq = orb.detectAndCompute(gq, None)
    km, dm = orb.detectAndCompute(gm, None)
    if dq is None or dm is None or len(kq) < MIN_INLIERS or len(km) < MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(dm, dq, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = np.float32([km[m.queryIdx].pt for m in good]) / sm
    dst = np.float32([kq[m.trainIdx].pt for m in good]) / sq
    H, inlier_mask = cv2.findHomography(src, dst, cv2.RANSAC, 4.0 / sq)
    if H is None or inlier_mask is None:
        return None
    inliers = int(inlier_mask.sum())
    if inliers < MIN_INLIERS or not _plausible(H, match.shape[1], match.shape[0]):
        return None
    return H, inliers


def _plausible(H: np.ndarray, w: int, h: int) -> bool:
    """Reject degenerate homographies (folds, collapses, extreme perspective)."""
    det = float(np.linalg.det(H[:2, :2]))
    if not 0.01 < abs(det) < 100:
        return False
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    quad = cv2.perspectiveTransform(corners, H).reshape(-1, 2)
    return bool(cv2.isContourConvex(quad.astype(np.float32))) and cv2.contourArea(quad) > 1.0


def align(
    query: np.ndarray,
    match: np.ndarray,
    *,
    features: bool = True,
    mirror: bool = False,
    max_side: int = 1600,
) -> Alignment:
    """The match in the query's frame (both downscaled to at most ``max_side``)."""
    query = fit_max_side(query, max_side)
    if mirror:
        match = np.ascontiguousarray(match[:, ::-1])
    h, w = query.shape[:2]
    if features:
        found = register(query, match)
        if found is not None:
            H, inliers = found
            warped = cv2.warpPerspective(
                match, H, (w, h), flags=cv2.INTER_AREA, borderValue=(255, 255, 255)
            )
            valid = (
                cv2.warpPerspective(
                    np.full(match.shape[:2], 255, np.uint8), H, (w, h), flags=cv2.INTER_NEAREST
                )
                > 0
            )
            return Alignment(query, warped, valid, "features", inliers)
    resized = cv2.resize(match, (w, h), interpolation=cv2.INTER_AREA)
    return Alignment(query, resized, np.ones((h, w), bool), "resize")


@dataclass
class Difference:
    image: np.ndarray  # RGB visualisation: the query in grey with changed pixels in heat colours
    changed_fraction: float  # share of compared pixels that differ by more than DIFF_THRESHOLD
    mean_abs: float  # mean absolute difference (0-255) over the compared pixels


def difference(alignment: Alignment) -> Difference:
    q = alignment.query.astype(np.int16)
    m = alignment.match.astype(np.int16)
    diff = np.abs(q - m).max(axis=2).astype(np.uint8)
    diff = cv2.GaussianBlur(diff, (3, 3), 0)  # JPEG noise and sub-pixel misalignment are not edits
    valid = alignment.valid
    diff[~valid] = 0
    compared = int(valid.sum()) or 1
    changed = float(((diff > DIFF_THRESHOLD) & valid).sum()) / compared
    mean_abs = float(diff[valid].mean()) if valid.any() else 0.0
    heat = cv2.applyColorMap(
        np.clip(diff.astype(np.int32) * 3, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO
    )
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    gray = cv2.cvtColor(alignment.query, cv2.COLOR_RGB2GRAY).astype(np.float32)[:, :, None]
    weight = np.clip(diff.astype(np.float32) / 64.0, 0.0, 1.0)[:, :, None]
    vis = gray * 0.45 * (1 - weight) + heat * weight
    vis[~valid] = (90, 90, 110)  # outside the match: neutral hatch colour
    return Difference(np.clip(vis, 0, 255).astype(np.uint8), changed, mean_abs)
