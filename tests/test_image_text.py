"""The text read on images in the catalog (image_text): storing, reading, stale text dropped with
changed content, a catalog made before the table, and import with read_text (API and CLI)."""

import sqlite3

import cv2
import numpy as np
import pytest

from cli.main import main
from engine.catalog import Catalog
from engine.ingest import ingest
from engine.text_match import text_index
from engine.text_reading import READER_ID


def _row(path, product=None, digest=None, text=None):
    row = {"path": path, "content_hash": digest or f"h-{path}", "file_size": 1, "mtime": 1.0, "width": 10,
           "height": 10, "product_id": product, "model_id": "m@1", "embedding": np.ones(8, np.float32),
           "labels": []}
    if text is not None:
        row["text"] = text
    return row


LINES = [("ARLA FARSK", 0.98, [(1.0, 2.0), (30.0, 2.0), (30.0, 9.0), (1.0, 9.0)])]


def test_store_and_read_image_text(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        cat.upsert_products([{"id": "p1", "title": "Mellanmjölk"}])
        a, b, c = cat.put_images([_row("/a.jpg", "p1", text=("r/1", ["arla", "farsk"], LINES)),
                                  _row("/b.jpg"), _row("/c.jpg")])
        before = cat.version
        cat.image_texts.put([(b, "r/1", ["yoggi"], []), (999, "r/1", ["gone"], [])])   # 999: no such image
        assert cat.version > before                    # the text index follows the version
        got = cat.image_texts.get([a, b, c])
        assert set(got) == {a, b}
        assert got[a] == {"reader": "r/1", "words": ["arla", "farsk"],
                          "lines": [["ARLA FARSK", 0.98, [1, 2, 30, 2, 30, 9, 1, 9]]]}
        assert list(cat.image_texts.iter_words()) == [(a, "p1", ["arla", "farsk"]), (b, None, ["yoggi"])]
        assert cat.image_texts.images_without("r/1") == [(c, "/c.jpg")]
        assert cat.image_texts.images_without("r/2", [a, c]) == [(a, "/a.jpg"), (c, "/c.jpg")]


def test_changed_content_drops_its_old_text_and_removal_its_row(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        a, = cat.put_images([_row("/a.jpg", text=("r/1", ["arla"], LINES))])
        cat.put_images([_row("/a.jpg", digest="new content")])
        assert cat.image_texts.get([a]) == {}
        cat.image_texts.put([(a, "r/1", ["arla"], [])])
        cat.remove_images([a])
        assert cat.db.conn.execute("SELECT count(*) FROM image_text").fetchone()[0] == 0


def test_a_catalog_made_before_the_table_opens_and_gets_it(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        a, = cat.put_images([_row("/a.jpg")])
    with sqlite3.connect(tmp_path / "cat" / "catalog.db") as conn:
        conn.execute("DROP TABLE image_text")
    with Catalog.open(tmp_path / "cat", readonly=True) as cat:
        assert cat.count_images() == 1 and cat.image_texts.get([a]) == {}
        assert list(cat.image_texts.iter_words()) == []
    with Catalog.open(tmp_path / "cat") as cat:
        cat.image_texts.put([(a, "r/1", ["arla"], [])])
        assert cat.image_texts.get([a])[a]["words"] == ["arla"]


def _label(path, text):
    img = np.full((160, 760, 3), 255, np.uint8)
    cv2.putText(img, text, (30, 100), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 5, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture
def labels(tmp_path):
    folder = tmp_path / "labels"
    _label(folder / "milk.png", "MELLANMJOLK 1.5%")
    _label(folder / "cream.png", "GRADDFIL 12%")
    (folder / "products.csv").write_text(
        "id,title,brand,image_link\nmilk,\"Mellanmjölk Ekologisk 1,5%\",GARANT,milk.png\n"
        "cream,Gräddfil 12%,ARLA,cream.png\n", encoding="utf-8")
    return folder


def test_plain_import_reads_no_text(tmp_path, model, labels):
    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, [labels / "products.csv"])
        assert report.added == 2 and report.texts == 0
        assert list(cat.image_texts.iter_words()) == []


def test_import_with_read_text_stores_words_and_reads_older_images(tmp_path, model, labels):
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [labels / "milk.png"])                      # indexed without its text
        report = ingest(cat, model, [labels / "products.csv"], read_text=True)
        assert report.added == 1 and report.unchanged == 1 and report.texts == 2, report.summary()
        words = {p: w for _, p, w in cat.image_texts.iter_words()}
        assert "mellanmjolk" in words["milk"] and "1.5%" in words["milk"]
        assert "graddfil" in words["cream"]
        rows = cat.image_texts.get(cat.image_ids())
        assert {r["reader"] for r in rows.values()} == {READER_ID}
        again = ingest(cat, model, [labels / "products.csv"], read_text=True)
        assert again.unchanged == 2 and again.texts == 0              # nothing read twice
        m = text_index(cat).match(["mellanmjolk", "1.5%"])
        assert max(m, key=lambda p: m[p].score) == "milk"


def test_index_read_text_flag(tmp_path, labels, capsys):
    assert main(["index", "--catalog", str(tmp_path / "cat"), "--read-text", "-q", str(labels / "products.csv")]) == 0
    assert "text read on 2" in capsys.readouterr().out
    with Catalog.open(tmp_path / "cat") as cat:
        assert len(list(cat.image_texts.iter_words())) == 2


def test_eval_gallery_can_be_imported_reading_its_text(tmp_path, model, labels, monkeypatch):
    """`lookalike eval --read-text`: the gallery is imported as `index --read-text` imports it, in
    a cache folder of its own (a gallery cached without its words is not reused)."""
    from engine import evaluation

    monkeypatch.setenv("LOOKALIKE_EVAL_CACHE", str(tmp_path / "cache"))
    gallery = evaluation.read_gallery([str(labels / "products.csv")])
    plain = evaluation.gallery_catalog_dir(gallery, model.model_id)
    assert evaluation.gallery_catalog_dir(gallery, model.model_id, read_text=True) != plain
    with evaluation.build_gallery_catalog(gallery, model, read_text=True) as cat:
        words = {p: w for _, p, w in cat.image_texts.iter_words()}
    assert "mellanmjolk" in words["milk"] and "graddfil" in words["cream"]
    with evaluation.build_gallery_catalog(gallery, model) as cat:
        assert list(cat.image_texts.iter_words()) == []
