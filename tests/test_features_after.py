"""Searchable first, local features after (engine.ingest's two passes): the embedding pass makes
the images searchable, the feature pass stores their local features a batch at a time, and until
it is done search and the duplicate scan compute what they need from the files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import duplicates, feature_store, visual_words
from engine.catalog import Catalog
from engine.faults import FAULT_ENV
from engine.features import FEATURES_VERSION, catalog_features
from engine.imaging import decode_image_bytes
from engine.ingest import ingest
from engine.search import Searcher

ROOT = Path(__file__).resolve().parent.parent


def _missing(cat: Catalog) -> int:
    return feature_store.missing_count(cat)


def test_features_after_stores_what_the_inline_import_stored(tmp_path, model, luma_images):
    """The feature pass decodes the file again: its features are byte for byte those computed
    from the embedding pass's own decode (what an import stored before the split)."""
    photos = luma_images[:6]
    with Catalog.open(tmp_path / "cat") as cat:
        stages: list[tuple[str, int, int]] = []
        stage = ["indexing"]

        def searchable(report):
            # the images are in the index and the database, their features not yet
            assert cat.count_images() == 6 == len(cat.vectors.index())
            assert _missing(cat) == 6
            stage[0] = "features"

        report = ingest(cat, model, photos, batch_size=4, on_searchable=searchable,
                        progress=lambda d, t, m: stages.append((stage[0], d, t)))
        assert report.added == 6 and not report.cancelled
        assert report.searchable_seconds is not None and report.searchable_seconds <= report.seconds
        assert report.features.todo == 6 and report.features.stored == 6
        assert "searchable after" in report.summary()
        assert [s for s in stages if s[0] == "indexing"][-1][1:] == (6, 6)
        assert [s for s in stages if s[0] == "features"][-1][1:] == (6, 6)
        assert _missing(cat) == 0
        ids = {r["path"]: r["image_id"] for r in cat.iter_records()}
        stored = cat.local_feature_blobs(list(ids.values()), FEATURES_VERSION)
        dense = cat.dense_feature_blobs(list(ids.values()), FEATURES_VERSION)
        for path in photos:
            rgb = decode_image_bytes(path.read_bytes(), min_short_side=model.resize_short_side)
            row = feature_store.stored_row(ids[str(path)], catalog_features(rgb, dense=True))
            assert stored[ids[str(path)]] == row[2:5] and dense[ids[str(path)]] == row[5]


def test_features_later_is_searchable_and_the_next_import_completes_them(tmp_path, model, luma_images):
    """``features="later"``: searchable at once; a search verifies an edited copy from features
    computed on demand (nothing written); the next import computes the features of every image
    lacking them, without embedding anything again."""
    photos = luma_images[:12]
    original = cv2.imread(str(photos[3]))
    h, w = original.shape[:2]
    copy = tmp_path / "cropped copy.jpg"
    cv2.imwrite(str(copy), original[h // 10:, : w - w // 8], [cv2.IMWRITE_JPEG_QUALITY, 75])
    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, photos, features="later")
        assert report.added == 12 and report.features is None and report.features_pending
        assert _missing(cat) == 12
        best = Searcher(cat, model).search_path(copy, group="image").results[0]
        assert best.path == str(photos[3]) and best.strength == "likely copy"
        assert _missing(cat) == 12                      # a search never writes features
        again = ingest(cat, model, photos)
        assert (again.added, again.unchanged) == (0, 12)
        assert again.features.stored == 12 and _missing(cat) == 0
        after = Searcher(cat, model).search_path(copy, group="image").results[0]
        # the same score, up to the stored keypoint positions' float16 rounding
        assert after.path == best.path and after.score == pytest.approx(best.score, abs=1e-3)
        with pytest.raises(ValueError):
            ingest(cat, model, photos, features="never")


def test_cancel_in_the_feature_pass_keeps_the_images_and_resumes(tmp_path, model, luma_images):
    photos = luma_images[:40]
    cancel = threading.Event()
    in_features = threading.Event()

    def progress(done, total, message):
        if in_features.is_set() and done >= 8:
            cancel.set()

    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, photos, batch_size=4, progress=progress, cancel=cancel,
                        on_searchable=lambda r: in_features.set())
        assert report.cancelled and report.added == 40 and report.features_pending
        assert report.searchable_seconds is not None
        f = report.features
        assert f.cancelled and f.stored == 8 and f.remaining == 32      # stopped at a batch boundary
        assert cat.count_images() == 40 == len(cat.vectors.index())
        assert _missing(cat) == 32
        rest = ingest(cat, model, photos, batch_size=4)
        assert rest.unchanged == 40 and rest.features.stored == 32 and _missing(cat) == 0


def test_duplicate_scan_before_the_feature_pass_finds_what_it_finds_after(tmp_path, model):
    """A mirrored and a turned copy among images without stored features: the visual words (the
    turned copy's candidates) and the verification compute the features from the files; the
    scan finds the same groups as after the feature pass, and writes no features."""
    import skimage.data

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "rocket", "chelsea", "immunohistochemistry"):
        cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR))
    astronaut = cv2.imread(str(photos / "astronaut.png"))
    h, w = astronaut.shape[:2]
    cv2.imwrite(str(photos / "mirrored copy.jpg"),
                cv2.resize(astronaut[h // 12:, : w - w // 12][:, ::-1], None, fx=0.6, fy=0.6,
                           interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 70])
    cv2.imwrite(str(photos / "turned copy.jpg"),
                cv2.rotate(cv2.resize(astronaut[h // 10:, w // 16:], None, fx=0.7, fy=0.7),
                           cv2.ROTATE_90_CLOCKWISE), [cv2.IMWRITE_JPEG_QUALITY, 80])

    def groups(result) -> list[set[str]]:
        return sorted(({Path(m.path).name for m in [g.representative, *g.members]}
                       for g in result.groups), key=sorted)

    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, sorted(photos.iterdir()), features="later")
        assert _missing(cat) == 7
        ids = {Path(r["path"]).name: r["image_id"] for r in cat.iter_records()}
        turned = tuple(sorted((ids["astronaut.png"], ids["turned copy.jpg"])))
        words_before = {tuple(p) for p in visual_words.candidate_pairs(cat).tolist()}
        assert turned in words_before
        before = duplicates.scan(cat, model=model)
        assert {"astronaut.png", "mirrored copy.jpg", "turned copy.jpg"} in groups(before)
        assert _missing(cat) == 7                       # the scan computes, never stores
        assert ingest(cat, model, [photos]).features.stored == 7
        assert words_before == {tuple(p) for p in visual_words.candidate_pairs(cat).tolist()}
        after = duplicates.scan(cat, model=model)
        assert groups(after) == groups(before)
        score = {m.image_id: m.score for g in after.groups for m in g.members}
        # the same scores, up to the stored keypoint positions' float16 rounding
        assert {m.image_id: m.score for g in before.groups for m in g.members} == pytest.approx(score, abs=1e-3)


_IMPORT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from engine.catalog import Catalog
from engine.feature_store import missing_count
from engine.ingest import ingest
from engine.model import load_model
with Catalog.open(sys.argv[2]) as cat:
    r = ingest(cat, load_model(), sys.argv[3:], batch_size=4, workers=2)
    print(json.dumps({"added": r.added, "unchanged": r.unchanged, "features": r.features.stored,
                      "missing": missing_count(cat)}))
"""


def test_killed_feature_pass_leaves_a_searchable_catalog_that_resumes(tmp_path, luma_images):
    """kill -9 after the feature pass's first batch: every image is committed and indexed, the
    first batch's features are stored, and the next import computes only the rest."""
    from engine.consistency import check_catalog

    photos = [str(p) for p in luma_images[:20]]
    cat = tmp_path / "cat"

    def run(fault: str | None = None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
        if fault:
            env[FAULT_ENV] = fault
        return subprocess.run([sys.executable, "-c", _IMPORT, str(ROOT), str(cat), *photos],
                              capture_output=True, text=True, env=env, timeout=300)

    killed = run("features-batch-committed:1:kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Catalog.open(cat, create=False, readonly=True) as c:
        assert c.count_images() == 20 and len(c.vectors.index()) == 20
        assert _missing(c) == 20 - 8                    # one batch of batch_size * 2
        assert check_catalog(c).healthy
    resumed = run()
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {"added": 0, "unchanged": 20, "features": 12, "missing": 0}
    with Catalog.open(cat, create=False, readonly=True) as c:
        index = c.vectors.index()
        assert sorted(index.ids()) == sorted(int(r[0]) for r in c.db.conn.execute("SELECT id FROM images"))
        assert np.isfinite(c.embeddings(sorted(index.ids()))).all()


def test_features_computed_on_demand_are_reused_until_the_file_changes(tmp_path, model, luma_images,
                                                                       monkeypatch):
    """Successive searches during the feature pass share candidates: an image's computed features
    are decoded once, and again only when its file changes."""
    import shutil

    photo = tmp_path / "photo.jpg"
    shutil.copy(luma_images[0], photo)
    decoded: list[str] = []
    decode = feature_store.decode
    monkeypatch.setattr(feature_store, "decode", lambda path, *a, **k: decoded.append(path) or decode(path, *a, **k))
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [photo], features="later")
        (image_id,) = [r["image_id"] for r in cat.iter_records()]
        first = feature_store.features_for(cat, [image_id])[image_id]
        again = feature_store.features_for(cat, [image_id])[image_id]
        assert decoded == [str(photo)] and again is first
        shutil.copy(luma_images[1], photo)
        os.utime(photo, ns=(os.stat(photo).st_atime_ns, os.stat(photo).st_mtime_ns + 10**9))
        changed = feature_store.features_for(cat, [image_id])[image_id]
        assert len(decoded) == 2 and not np.array_equal(changed.descriptors, first.descriptors)
