"""catalog.thumbnails: JPEG thumbnails made on first use, named after the image's content."""

import hashlib

import cv2
import numpy as np
import pytest

from engine.catalog import Catalog
from engine.errors import CatalogError, ImageError
from engine.thumbnail_cache import THUMBNAIL_DIR, ThumbnailCache, digest_of


def _image(path, w, h, seed=0):
    rgb = np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), rgb)
    return path


def _put(cat, path):
    digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    v = np.ones(4, np.float32) / 2
    return cat.put_images([{"path": str(path), "content_hash": digest, "file_size": 1, "mtime": 1.0,
                            "width": 1, "height": 1, "product_id": None, "model_id": "m@1",
                            "embedding": v, "labels": []}])[0], digest


def test_thumbnail_is_made_once_and_named_after_the_content(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        assert isinstance(cat.thumbnails, ThumbnailCache)
        assert cat.thumbnails.directory == tmp_path / "cat" / THUMBNAIL_DIR
        assert list(cat.thumbnails.files()) == []
        image_id, digest = _put(cat, _image(tmp_path / "wide.png", 600, 300))
        out = cat.thumbnails.get(image_id, 128)
        assert out == cat.thumbnails.path_for(digest, 128) == cat.thumbnails.get(image_id, 128)
        assert out.read_bytes()[:3] == b"\xff\xd8\xff" and digest_of(out) == digest
        assert cv2.imread(str(out)).shape[:2] == (64, 128)          # longest side = size
        made = out.stat().st_mtime_ns
        (tmp_path / "wide.png").unlink()                            # cached: the file is not read again
        assert cat.thumbnails.get(image_id, 128).stat().st_mtime_ns == made
        with pytest.raises(ImageError):
            cat.thumbnails.get(image_id, 64)                        # another size needs the file
        assert list(cat.thumbnails.files()) == [out]


def test_small_images_are_not_enlarged_and_copies_share_a_thumbnail(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        small = _image(tmp_path / "small.png", 40, 30)
        copy = tmp_path / "copy.png"
        copy.write_bytes(small.read_bytes())
        a, _ = _put(cat, small)
        b, _ = _put(cat, copy)
        out = cat.thumbnails.get(a)
        assert cv2.imread(str(out)).shape[:2] == (30, 40)
        assert cat.thumbnails.get(b) == out


def test_unknown_image_and_foreign_files(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        with pytest.raises(CatalogError, match="no image with id 42"):
            cat.thumbnails.get(42)
    assert digest_of(tmp_path / f"{'ab' * 16}-256.jpg") == "ab" * 16
    for name in (f"{'ab' * 16}-256.jpg.123.456.tmp", "notes.txt", f"{'AB' * 16}-256.jpg", "ab-256.jpg"):
        assert digest_of(tmp_path / name) is None, name
