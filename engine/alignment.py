"""Put a catalog match into the query's pixel frame, and measure where they differ.

Used by the desktop compare view (linked zoom/pan, blinking and a difference image only make
sense when both images share one frame) and by :mod:`engine.edits`. The match is resized to the
query's size or, when asked, warped by the homography of the engine's matcher
(:func:`engine.registration.register`, the verification that search uses), which undoes the
crops, rotations, perspective and rescaling of an edited copy. When the two images do not verify
as the same picture the plain resize is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .registration import Registration, register

DIFF_THRESHOLD = 40  # per-pixel max channel difference (0-255) counted as "changed"


@dataclass
class AlignedPair:
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


def align(
    query: np.ndarray,
    match: np.ndarray,
    *,
    features: bool = True,
    mirror: bool = False,
    max_side: int = 1600,
) -> AlignedPair:
    """The match in the query's frame (the query downscaled to at most ``max_side``)."""
    if mirror:
        match = np.ascontiguousarray(match[:, ::-1])
    found = register(query, match) if features else None
    if found is not None:
        return warp_match(query, match, found, max_side=max_side)
    shown = fit_max_side(query, max_side)
    h, w = shown.shape[:2]
    resized = cv2.resize(match, (w, h), interpolation=cv2.INTER_AREA)
    return AlignedPair(shown, resized, np.ones((h, w), bool), "resize")


def halve_to(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` halved (2x2 means: a fast exact resize) until its long side is at most
    ``max_side``; an odd last row or column is dropped (under a pixel of the original)."""
    while max(rgb.shape[:2]) > max_side:
        h, w = rgb.shape[0] // 2, rgb.shape[1] // 2
        rgb = cv2.resize(rgb[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)


def _scale(size_from: tuple[int, ...], size_to: tuple[int, ...]) -> np.ndarray:
    """Pixels of an image of ``size_from`` -> pixels of its resize to ``size_to`` (pixel
    centres aligned)."""
    sx, sy = size_to[1] / size_from[1], size_to[0] / size_from[0]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])


def warp_match(
    query: np.ndarray,
    match: np.ndarray,
    found: Registration,
    *,
    max_side: int = 1600,
    shown: np.ndarray | None = None,
) -> AlignedPair:
    """The match warped into the query's frame by a registration: into ``shown`` (the query
    already downscaled) or the query downscaled to at most ``max_side``."""
    if shown is None:
        shown = fit_max_side(query, max_side)
    h, w = shown.shape[:2]
    # match pixels -> full query pixels -> shown query pixels
    H = _scale(query.shape, shown.shape) @ found.homography
    # a warp that shrinks the match by more than half aliases: halve the match first
    shrink = float(np.sqrt(abs(np.linalg.det(H[:2, :2] / H[2, 2]))))
    if shrink < 0.5:
        small = halve_to(match, max(8, int(max(match.shape[:2]) * shrink * 2)))
        match, H = small, H @ np.linalg.inv(_scale(match.shape, small.shape))
    warped = cv2.warpPerspective(
        match, H, (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255)
    )
    covered = cv2.warpPerspective(
        np.full(match.shape[:2], 255, np.uint8), H, (w, h), flags=cv2.INTER_NEAREST
    )
    return AlignedPair(shown, warped, covered > 0, "features", found.inliers)


@dataclass
class Difference:
    image: np.ndarray  # RGB visualisation: the query in grey with changed pixels in heat colours
    changed_fraction: float  # share of compared pixels that differ by more than DIFF_THRESHOLD
    mean_abs: float  # mean absolute difference (0-255) over the compared pixels


def difference(alignment: AlignedPair) -> Difference:
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
