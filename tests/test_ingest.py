import os
import shutil
import threading
import time

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from engine.catalog import Catalog
from engine.ingest import ingest


def _write(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    _write(folder / "coffee.jpg", skdata.coffee())
    _write(folder / "cat.png", skdata.chelsea())
    _write(folder / "nested" / "deeper" / "astronaut.jpg", skdata.astronaut())
    (folder / "notes.txt").write_text("not an image and not named like one: ignored")
    (folder / "broken.jpg").write_bytes(b"this is text, not a JPEG")
    return folder


def test_folder_ingest_reports_bad_files_and_goes_on(tmp_path, model, photo_folder):
    with Catalog.open(tmp_path / "cat") as cat:
        seen, features = [], []
        report = ingest(cat, model, [photo_folder], progress=lambda d, t, m: seen.append((d, t)),
                        on_searchable=lambda r: (features.append(r.features), seen.append("searchable")))
        assert report.added == 3
        assert [os.path.basename(p) for p, _ in report.failed] == ["broken.jpg"]
        assert "not an image" in report.failed[0][1]
        # the files, then the local features of the 3 images (the second pass)
        stop = seen.index("searchable")
        assert seen[stop - 1] == (4, 4) and seen[-1] == (3, 3) and features == [None]
        assert report.features.stored == 3
        assert cat.count_images() == 3
        assert [e["path"] for e in cat.errors()] == [str(photo_folder / "broken.jpg")]
        rec = {os.path.basename(r["path"]): r for r in cat.iter_records()}
        assert rec["coffee.jpg"]["width"] == 600 and rec["coffee.jpg"]["height"] == 400
        assert rec["coffee.jpg"]["labels"][0][0] in {"espresso", "cup", "coffee mug"}


def test_reindex_is_incremental(tmp_path, model, photo_folder):
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [photo_folder])
        again = ingest(cat, model, [photo_folder])
        assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
        # same bytes, new mtime: recognised by content hash, not re-embedded
        os.utime(photo_folder / "cat.png", (time.time() + 5, time.time() + 5))
        # changed content: re-embedded in place (same image id)
        before = {r["path"]: r["image_id"] for r in cat.iter_records()}
        _write(photo_folder / "coffee.jpg", np.ascontiguousarray(skdata.coffee()[:, ::-1]))
        third = ingest(cat, model, [photo_folder])
        assert (third.added, third.updated, third.unchanged) == (0, 1, 2)
        after = {r["path"]: r["image_id"] for r in cat.iter_records()}
        assert before == after
        assert len(cat.vectors.index()) == 3
        # a vanished file is forgotten on request
        (photo_folder / "cat.png").unlink()
        assert cat.remove_missing() == 1
        assert cat.count_images() == 2 and len(cat.vectors.index()) == 2


def test_cancel_keeps_a_consistent_catalog(tmp_path, model, luma_images):
    cancel = threading.Event()

    def progress(done, total, message):
        if done >= 20:
            cancel.set()

    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, luma_images[:120], progress=progress, cancel=cancel, batch_size=8)
        assert report.cancelled
        n = cat.count_images()
        assert 0 < n < 120 and n == report.added
        assert len(cat.vectors.index()) == n
        rest = ingest(cat, model, luma_images[:120], batch_size=8)
        assert rest.added == 120 - n and rest.unchanged == n
        assert cat.count_images() == 120 == len(cat.vectors.index())


def test_symlink_loops_and_broken_links(tmp_path, model):
    folder = tmp_path / "photos"
    _write(folder / "a" / "coffee.jpg", skdata.coffee())
    os.symlink(folder, folder / "a" / "loop")
    os.symlink(folder / "missing.jpg", folder / "dangling.jpg")
    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, [folder])
        assert report.added == 1
        reasons = dict(report.failed)
        assert reasons[str(folder / "dangling.jpg")] == "broken symbolic link"
        assert any("loop" in r for r in reasons.values())


def test_same_image_in_two_places_gets_two_entries(tmp_path, model, photo_folder):
    shutil.copy(photo_folder / "coffee.jpg", photo_folder / "coffee-copy.jpg")
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [photo_folder])
        paths = [r["path"] for r in cat.iter_records()]
        assert str(photo_folder / "coffee-copy.jpg") in paths and len(paths) == 4


def test_images_become_photos_of_a_product(tmp_path, model, photo_folder, capsys):
    """`index --product ID`: new and already indexed images become photos of a catalog product
    (a confirmed match, reference photos); an unknown product is one line, nothing written."""
    from cli.main import main
    from engine.errors import LookalikeError

    feed = tmp_path / "feed.csv"
    shutil.copy(photo_folder / "coffee.jpg", tmp_path / "coffee-pack.jpg")
    feed.write_text("id,title,image_link\nc1,Coffee beans,coffee-pack.jpg\n", encoding="utf-8")
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [feed, photo_folder / "cat.png"])
        assert len(cat.image_products()) == 1
        report = ingest(cat, model, [photo_folder / "coffee.jpg", photo_folder / "cat.png"], product="c1")
        assert report.added == 1 and report.unchanged == 1
        assert len(cat.image_products()) == 3 and {p for _, p in cat.image_products()} == {"c1"}
        assert len(cat.images_of_products(["c1"])["c1"]) == 3
        before = cat.count_images()
        with pytest.raises(LookalikeError, match="no product 'nope'"):
            ingest(cat, model, [photo_folder / "nested"], product="nope")
        assert cat.count_images() == before
    code = main(["index", "--catalog", str(tmp_path / "cat"), "-q", "--product", "nope", str(photo_folder / "nested")])
    assert code != 0 and "no product 'nope'" in capsys.readouterr().err
    assert main(["index", "--catalog", str(tmp_path / "cat"), "-q", "--product", "c1", str(photo_folder / "nested")]) == 0
    with Catalog.open(tmp_path / "cat") as cat:
        assert len(cat.images_of_products(["c1"])["c1"]) == 4
