"""Register one image onto another with the matcher that verifies search results (Qt-free).

The desktop compare view shows a match in the query's pixel frame. The homography comes from
:mod:`engine.geometry`, so the compare view agrees with the search on what is a copy: ORB
features (:func:`~engine.features.extract`), ratio-test matches and a RANSAC homography
(:func:`~engine.geometry.verify`), with more keypoints (:func:`~engine.features.dense_features`)
when the plain ones do not confirm a copy (:data:`engine.match_policy.CONFIRMED_INLIERS`). This module only maps
that homography from the feature scale back to full-resolution pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import geometry, scoring
from .features import Features, dense_features, extract
from .match_policy import CONFIRMED_INLIERS

#: fewer inliers than this: not registered (the count at which search calls a match verified)
MIN_INLIERS = scoring.MARGIN_MIN_INLIERS


@dataclass
class Registration:
    homography: np.ndarray  # 3x3, candidate pixels -> query pixels (full resolution)
    inliers: int  # ratio-test matches consistent with it
    aligned: float  # geometry.aligned_similarity: correlation of the aligned pixels
    unchanged: float  # ... and the share of candidate pixels whose colour the query keeps
    dense: bool  # found with DENSE_KEYPOINTS


def _to_features(shape: tuple[int, ...], f: Features) -> np.ndarray:
    """Full-resolution pixels -> feature-scale pixels of ``f`` (pixel centres kept aligned, as
    a resize does)."""
    h, w = shape[:2]
    sx, sy = f.size[1] / w, f.size[0] / h
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)


def register(
    query_rgb: np.ndarray, candidate_rgb: np.ndarray, *, min_inliers: int = MIN_INLIERS
) -> Registration | None:
    """The homography that puts ``candidate_rgb`` into ``query_rgb``'s frame, with its evidence;
    None when the two images do not verify as the same picture (fewer than ``min_inliers``).
    Mirrored copies are not tried: mirror the candidate first."""
    query = extract(query_rgb, keep_image=True)
    candidate = extract(candidate_rgb, keep_image=True)
    return register_features(query, candidate, query_rgb.shape, candidate_rgb.shape,
                             min_inliers=min_inliers)


def register_features(
    query: Features, candidate: Features, query_shape: tuple[int, ...],
    candidate_shape: tuple[int, ...], *, min_inliers: int = MIN_INLIERS
) -> Registration | None:
    """:func:`register` from features already extracted (``extract(..., keep_image=True)``) of
    images of the given full-resolution shapes: one extraction serves several tries (a mirrored
    candidate, :func:`~engine.features.mirrored_features`)."""
    found = geometry.verify(query, candidate)
    dense = False
    if found.inliers < CONFIRMED_INLIERS:
        # an overlay's corners may have taken most keypoints: match again with more, as search does
        q, c = dense_features(query), dense_features(candidate)
        again = geometry.verify(q, c)
        if again.inliers > found.inliers:
            query, candidate, found, dense = q, c, again, True
    if found.homography is None or found.inliers < min_inliers:
        return None
    agreement = geometry.aligned_similarity(query, candidate, found.homography)
    # query pixels -> query features -> candidate features -> candidate pixels, then inverted
    forward = (
        np.linalg.inv(_to_features(candidate_shape, candidate))
        @ found.homography
        @ _to_features(query_shape, query)
    )
    try:
        back = np.linalg.inv(forward)
    except np.linalg.LinAlgError:
        return None
    if abs(back[2, 2]) < 1e-12:
        return None
    back /= back[2, 2]
    return Registration(back, found.inliers, agreement.ncc, agreement.unchanged, dense)
