import threading

import numpy as np
import pytest

from engine.catalog import Catalog
from engine.errors import CatalogBusyError, CatalogError


def _row(path, vec, product=None, digest=None):
    return {"path": path, "content_hash": digest or f"h-{path}", "file_size": 1, "mtime": 1.0,
            "width": 10, "height": 10, "product_id": product, "model_id": "m@1", "embedding": vec,
            "labels": [["cup", 0.5]]}


def _vecs(n, d=8, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_products_images_and_records(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        cat.upsert_products([{"id": "SKU-1", "title": "Mug", "brand": "Acme", "price": 9.5, "currency": "EUR",
                              "category": "Home > Kitchen", "extra": {"color": "red"}}])
        vecs = _vecs(3)
        ids = cat.put_images([_row("/a.jpg", vecs[0], "SKU-1"), _row("/b.jpg", vecs[1]), _row("/c.jpg", vecs[2])])
        assert cat.count_images() == 3 and cat.count_products() == 1
        rec = cat.image_record(ids[0])
        assert rec["title"] == "Mug" and rec["extra"] == {"color": "red"} and rec["labels"] == [["cup", 0.5]]
        assert [r["path"] for r in cat.image_records([ids[2], ids[0]])] == ["/c.jpg", "/a.jpg"]
        np.testing.assert_allclose(cat.embeddings([ids[1]])[0], vecs[1])
        assert cat.facets() == {"categories": ["Home > Kitchen"], "brands": ["Acme"], "price_min": 9.5,
                                "price_max": 9.5}
        # re-putting a path updates in place, keeps the id
        assert cat.put_images([_row("/a.jpg", vecs[2])]) == [ids[0]]
        assert cat.count_images() == 3


def test_index_follows_database_and_survives_reopen(tmp_path):
    vecs = _vecs(20)
    with Catalog.open(tmp_path) as cat:
        ids = cat.put_images([_row(f"/{i}.jpg", v) for i, v in enumerate(vecs)])
        index = cat.vectors.index()
        assert len(index) == 20
        got, sims = index.query(vecs[3], 1)
        assert got[0, 0] == ids[3]
        cat.remove_images([ids[3]])
        assert len(cat.vectors.index()) == 19
    # the saved index is reloaded and is up to date
    with Catalog.open(tmp_path) as cat:
        index = cat.vectors.index()
        assert len(index) == 19 and ids[3] not in index.query(vecs[3], 19)[0][0].tolist()


def test_stale_index_is_brought_up_to_date(tmp_path):
    vecs = _vecs(10)
    with Catalog.open(tmp_path) as cat:
        ids = cat.put_images([_row(f"/{i}.jpg", v) for i, v in enumerate(vecs[:5])])
        cat.vectors.index()                                  # saved at version v
    # another writer (or a crash before the index was saved) changes the database only
    with Catalog.open(tmp_path) as cat:
        cat.put_images([_row(f"/{i}.jpg", v) for i, v in enumerate(vecs[5:], start=5)])
        with cat.transaction() as db:               # raw delete + tombstone, as remove_images does
            db.conn.execute("DELETE FROM images WHERE id=?", (ids[0],))
            db.conn.execute("INSERT INTO removed VALUES (?, ?)", (ids[0], cat.current_version))
    # stale index file on disk: older version, must be synced on load
    with Catalog.open(tmp_path) as cat:
        index = cat.vectors.index()
        assert len(index) == 9
        assert ids[0] not in index.query(vecs[0], 9)[0][0].tolist()


def test_lost_index_file_is_rebuilt_from_embeddings(tmp_path):
    vecs = _vecs(30)
    with Catalog.open(tmp_path) as cat:
        cat.put_images([_row(f"/{i}.jpg", v) for i, v in enumerate(vecs)])
        cat.vectors.index()
    (tmp_path / "index.bin").write_bytes(b"\0" * 10)
    with Catalog.open(tmp_path) as cat:
        assert len(cat.vectors.index()) == 30


def test_remove_paths_by_folder_and_missing(tmp_path):
    real = tmp_path / "imgs"
    real.mkdir()
    (real / "x.jpg").write_bytes(b"x")
    vecs = _vecs(4)
    with Catalog.open(tmp_path / "cat") as cat:
        cat.put_images([_row(str(real / "x.jpg"), vecs[0]), _row("/gone/1.jpg", vecs[1]),
                        _row("/gone/2.jpg", vecs[2]), _row("/gone2/3.jpg", vecs[3])])
        assert cat.remove_paths(["/gone"]) == 2          # folder prefix, not /gone2
        assert cat.remove_missing() == 1                 # /gone2/3.jpg
        assert [r["path"] for r in cat.iter_records()] == [str(real / "x.jpg")]
        assert len(cat.vectors.index()) == 1


def test_second_writer_gets_a_clear_busy_error(tmp_path):
    a = Catalog.open(tmp_path)
    b = Catalog.open(tmp_path)
    try:
        with a.writer():
            with pytest.raises(CatalogBusyError, match="busy"):
                with b.writer():
                    pass
        with b.writer():            # free again once the first is done
            pass
    finally:
        a.close()
        b.close()


def test_readers_in_threads_while_writing(tmp_path):
    vecs = _vecs(200, seed=4)
    errors = []
    with Catalog.open(tmp_path) as cat:
        cat.put_images([_row(f"/{i}.jpg", v) for i, v in enumerate(vecs[:50])])

        def reader():
            try:
                for _ in range(30):
                    index = cat.vectors.index()
                    ids, _ = index.query(vecs[0], 5)
                    cat.image_records(ids[0].tolist())
            except Exception as exc:  # pragma: no cover - the assertion reports it
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(50, 200, 10):
            cat.put_images([_row(f"/{j}.jpg", vecs[j]) for j in range(i, i + 10)])
        for t in threads:
            t.join()
        assert not errors
        assert len(cat.vectors.index()) == 200


def test_not_a_catalog(tmp_path):
    (tmp_path / "catalog.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="not a usable catalog"):
        Catalog.open(tmp_path)
    with pytest.raises(CatalogError, match="no catalog here"):
        Catalog.open(tmp_path / "nothing", create=False)


def test_repeated_product_rows_do_not_blank_fields(tmp_path):
    with Catalog.open(tmp_path) as cat:
        cat.upsert_products([{"id": "P", "title": "Mug", "price": 3.0, "extra": {"a": "1"}}])
        cat.upsert_products([{"id": "P", "title": None, "brand": "Acme", "extra": {}}], merge=True)
        p = cat.product("P")
        assert (p["title"], p["brand"], p["price"], p["extra"]) == ("Mug", "Acme", 3.0, {"a": "1"})
