"""The real-photo scale benchmark's folder generator (benchmarks/real_catalog.py) on a handful
of images: deterministic, distinct originals, a truth file that matches the files, and copies
that are the stated edits of their originals."""

from __future__ import annotations

import csv
import hashlib
import json
from itertools import combinations

import cv2
import numpy as np
import pytest

from benchmarks import real_catalog as rc

pytestmark = pytest.mark.skipif(not (rc.DATASETS / "luma" / "images").is_dir()
                                or not (rc.DATASETS / "grocery" / "images").is_dir(),
                                reason="../shared/datasets (luma, grocery) is not here")

N, SEED, SHARE = 24, 5, 0.34       # 8 copies: every edit kind once
PHOTOS = 80                        # the first 80 photos of each source: a quick plan


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    return ((a, rc.build_folder(a, N, SEED, SHARE, photos=PHOTOS)),
            (b, rc.build_folder(b, N, SEED, SHARE, photos=PHOTOS)))


def _digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.jpg"))}


def _strip(truth: dict) -> dict:
    return {k: v for k, v in truth.items() if k not in ("seconds", "plan_seconds")}


def _grey(im: np.ndarray, size: int = 32) -> np.ndarray:
    v = cv2.resize(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), (size, size), interpolation=cv2.INTER_AREA)
    v = v.astype(np.float32).ravel()
    v -= v.mean()
    return v / max(float(np.linalg.norm(v)), 1e-6)


def test_same_seed_same_files(folders):
    (a, ta), (b, tb) = folders
    assert _digests(a) == _digests(b)
    assert _strip(ta) == _strip(tb)
    assert rc.truth_matches(a, N, SEED, SHARE, PHOTOS)
    assert not rc.truth_matches(a, N, SEED + 1, SHARE, PHOTOS) and not rc.truth_matches(a, N, SEED, SHARE)


def test_n_distinct_files(folders):
    (a, truth), _ = folders
    digests = _digests(a)
    assert len(digests) == N == len(truth["originals"]) + len(truth["copies"])
    assert len(set(digests.values())) == N
    for path in digests:
        im = cv2.imread(str(a / path))
        assert im is not None and min(im.shape[:2]) >= 32
    for o in truth["originals"]:
        assert rc.LONG_SIDE[0] <= max(cv2.imread(str(a / o["path"])).shape[:2]) <= rc.LONG_SIDE[1]
    # the rule: no two originals share two cells, and none looks like another
    cells = [{tuple(c) for c in o["cells"]} for o in truth["originals"]]
    assert all(len(x & y) <= 1 for x, y in combinations(cells, 2))
    looks = np.stack([_grey(cv2.imread(str(a / o["path"]))) for o in truth["originals"]])
    sims = looks @ looks.T
    np.fill_diagonal(sims, 0)
    assert sims.max() < 0.9


def test_truth_matches_the_files(folders):
    (a, truth), _ = folders
    originals = {o["path"] for o in truth["originals"]}
    assert all(p.startswith("originals/") for p in originals)
    assert len({c["original"] for c in truth["copies"]}) == len(truth["copies"])   # one copy each
    assert {c["edit"] for c in truth["copies"]} == set(rc.EDITS)
    for c in truth["copies"]:
        assert c["path"].startswith("uploads/") and (a / c["path"]).is_file()
        assert c["original"] in originals and (a / c["original"]).is_file()
    with open(a / "truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["copy"], r["original"], r["edit"]) for r in rows] == \
        [(c["path"], c["original"], c["edit"]) for c in truth["copies"]]
    assert json.loads((a / "truth.json").read_text())["n"] == N


def test_copies_are_edits_of_their_originals(folders):
    (a, truth), _ = folders
    originals = {o["path"]: cv2.imread(str(a / o["path"])) for o in truth["originals"]}
    for c in truth["copies"]:
        copy = cv2.imread(str(a / c["path"]))
        original = originals[c["original"]]
        assert copy.shape != original.shape or np.abs(copy.astype(int) - original).mean() > 0.5, c
        expected = rc.apply_edit(original, c["edit"], c["params"])
        assert copy.shape == expected.shape, c
        assert np.abs(copy.astype(int) - expected).mean() < 4, c        # JPEG noise only
        # and it is its own original's copy, not another's
        look = _grey(expected)
        own = float(_grey(copy) @ look)
        others = [float(_grey(rc.apply_edit(im, c["edit"], c["params"])) @ _grey(copy))
                  for p, im in originals.items() if p != c["original"]]
        assert own > 0.95 and own > max(others) + 0.05, (c, own, max(others))
