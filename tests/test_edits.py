"""engine.edits: the edits that make a suspect copy from its catalog photo, read from the
registration and the aligned pixels. Each edit alone must be named, and nothing else with it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from engine.edits import EDITS, detect_edits


def _photo(name: str = "astronaut") -> np.ndarray:
    return np.ascontiguousarray(getattr(skdata, name)())


def _jpeg(rgb: np.ndarray, quality: int = 80) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _rotated(rgb: np.ndarray, degrees: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, M, (w, h), borderValue=(255, 255, 255))


def _hue_shifted(rgb: np.ndarray, shift: int) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + shift) % 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _with_text(rgb: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    cv2.putText(out, "SALE -50%", (40, 300), cv2.FONT_HERSHEY_DUPLEX, 2.0, (255, 0, 255), 4)
    return out


EDITED = {
    "cropped": lambda im: im[60:430, 90:470],
    "mirrored": lambda im: im[:, ::-1],
    "turned 15": lambda im: _rotated(im, 15),
    "turned 90": lambda im: np.rot90(im),
    "hue shifted": lambda im: _hue_shifted(im, 60),
    "grey": lambda im: cv2.cvtColor(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
    "text": _with_text,
    "padded": lambda im: cv2.copyMakeBorder(im, 60, 60, 60, 60, cv2.BORDER_CONSTANT, value=(30, 160, 90)),
}
EXPECTED = {"cropped": ["cropped"], "mirrored": ["mirrored"], "turned 15": ["turned"],
            "turned 90": ["turned"], "hue shifted": ["recoloured"], "grey": ["recoloured"],
            "text": ["text added"], "padded": ["padded"]}


@pytest.mark.parametrize("edit", list(EDITED))
def test_each_edit_alone_is_named(edit):
    photo = _photo()
    copy = _jpeg(np.ascontiguousarray(EDITED[edit](photo)))
    report = detect_edits(copy, photo)
    assert report.alignment is not None
    assert report.edits == EXPECTED[edit], report.details


def test_a_turned_copy_reports_its_angle():
    photo = _photo("coffee")
    report = detect_edits(_jpeg(_rotated(photo, 15)), photo)
    assert report.edits == ["turned"]
    assert abs(abs(report.details["angle"]) - 15) < 2


def test_the_search_transform_is_used_for_a_mirrored_copy():
    photo = _photo("chelsea")
    copy = _jpeg(np.ascontiguousarray(photo[:, ::-1]))
    assert detect_edits(copy, photo, transform="mirrored").edits == ["mirrored"]
    assert detect_edits(copy, photo).edits == ["mirrored"]      # found without it too


def test_edits_combine_in_their_order():
    photo = _photo()
    copy = cv2.copyMakeBorder(np.ascontiguousarray(_with_text(photo)[40:460, 30:480][:, ::-1]),
                              50, 50, 50, 50, cv2.BORDER_CONSTANT, value=(20, 40, 160))
    report = detect_edits(_jpeg(copy), photo)
    assert report.edits == ["cropped", "mirrored", "text added", "padded"], report.details


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_an_unedited_copy_has_no_edits(name):
    photo = _photo(name)
    for copy in (_jpeg(photo, 60), cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                 _jpeg(cv2.GaussianBlur(photo, (0, 0), 1.5))):
        report = detect_edits(copy, photo)
        assert report.alignment is not None
        assert report.edits == [], report.details


def test_unrelated_images_are_not_aligned_and_get_no_edits():
    report = detect_edits(_photo("astronaut"), _photo("coffee"))
    assert report.edits == [] and report.alignment is None and report.difference is None
    blank = np.full((300, 200, 3), 255, np.uint8)
    assert detect_edits(blank, _photo()).alignment is None


def test_the_report_serialises_and_keeps_its_evidence():
    photo = _photo()
    report = detect_edits(_jpeg(_with_text(photo)), photo)
    data = json.loads(json.dumps(report.to_json()))
    assert data["edits"] == ["text added"] and data["registered"]
    assert set(data["edits"]) <= set(EDITS)
    assert report.difference is not None and report.difference.changed_fraction > 0
    assert report.alignment.query.shape == report.alignment.match.shape
