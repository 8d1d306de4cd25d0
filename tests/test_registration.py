"""engine.registration: the homography that puts an edited copy into its original's frame, from
the matcher that verifies search results (Qt-free)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from engine import geometry
from engine.registration import MIN_INLIERS, register


def _edited(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A copy turned by 8 degrees, shrunk to 70 % and cropped, and the true homography from the
    original's pixels to the copy's."""
    h, w = rgb.shape[:2]
    A = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), 8, 0.7), [0, 0, 1]])
    A[:2, 2] -= (30, 20)  # the crop's offset
    out = cv2.warpPerspective(rgb, A, (round(w * 0.7), round(h * 0.7)), borderValue=(255, 255, 255))
    return out, A


def _project(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_an_edited_copy_is_registered_onto_its_original(name):
    original = np.ascontiguousarray(getattr(skdata, name)())
    copy, truth = _edited(original)
    found = register(original, copy)
    assert found is not None and found.inliers >= MIN_INLIERS
    # copy pixels -> original pixels, as the true transform's inverse (a few pixels at most)
    h, w = copy.shape[:2]
    probe = np.array([[w * x, h * y] for x in (0.25, 0.5, 0.75) for y in (0.25, 0.5, 0.75)])
    error = np.linalg.norm(_project(found.homography, probe) - _project(np.linalg.inv(truth), probe), axis=1)
    assert error.max() < 4.0, error
    assert found.aligned > 0.8 and found.homography[2, 2] == pytest.approx(1.0)


def test_the_same_picture_at_another_size_maps_corner_to_corner():
    original = np.ascontiguousarray(skdata.astronaut())
    half = cv2.resize(original, (256, 256), interpolation=cv2.INTER_AREA)
    found = register(original, half)
    assert found is not None
    corners = np.array([[0, 0], [255, 0], [255, 255], [0, 255]], np.float64)
    expected = (corners + 0.5) * 2 - 0.5  # pixel centres
    assert np.abs(_project(found.homography, corners) - expected).max() < 3.0


def test_different_pictures_and_blank_images_are_not_registered():
    astronaut = np.ascontiguousarray(skdata.astronaut())
    assert register(astronaut, np.ascontiguousarray(skdata.coffee())) is None
    assert register(astronaut, np.full((300, 200, 3), 255, np.uint8)) is None
    assert register(np.zeros((8, 8, 3), np.uint8), astronaut) is None


def test_a_copy_under_text_is_found_with_more_keypoints(monkeypatch):
    """When the plain keypoints do not confirm a copy, the dense ones are tried, as search does."""
    original = np.ascontiguousarray(skdata.chelsea())
    copy, _ = _edited(original)
    real = geometry.verify
    calls = []

    def weak_first(query, candidate):  # the plain match finds too little
        calls.append(len(query))
        result = real(query, candidate)
        return geometry.Verification() if len(calls) == 1 else result

    monkeypatch.setattr(geometry, "verify", weak_first)
    found = register(original, copy)
    assert found is not None and found.dense
    assert calls[1] > calls[0]  # the second match used more keypoints
