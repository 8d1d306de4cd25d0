"""The Catalog's named queries: each gives what the SQL statement it replaces gave (the statements
are run here beside them, on the same catalog)."""

import numpy as np
import pytest

from engine.catalog import Catalog
from engine.errors import CatalogError


def _vecs(n, d=8, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _row(path, vec, *, product=None, digest=None, size=(10, 20)):
    return {"path": path, "content_hash": digest or f"h-{path}", "file_size": 1, "mtime": 1.0,
            "width": size[0], "height": size[1], "product_id": product, "model_id": "m@1",
            "embedding": vec, "labels": []}


@pytest.fixture
def shop(tmp_path):
    """Images over three versions: two byte-identical pairs, products with and without an item
    group, one image without a product and one without dimensions."""
    with Catalog.open(tmp_path / "cat") as cat:
        cat.upsert_products([
            {"id": "blue", "title": "Jacket blue", "brand": "Acme", "price": 50.0, "category": "Coats",
             "group_id": "JKT"},
            {"id": "green", "title": "Jacket green", "brand": "Acme", "price": 55.0, "category": "Coats",
             "group_id": "JKT"},
            {"id": "mug", "title": "Mug", "brand": "Cups", "price": 9.5, "category": "Kitchen", "group_id": ""},
        ])
        v = _vecs(8)
        first = cat.put_images([_row("/shop/a.jpg", v[0], product="blue", digest="same1"),
                                _row("/shop/b.jpg", v[1], product="green"),
                                _row("/shop/c.jpg", v[2], product="mug")])
        second = cat.put_images([_row("/shop/sub/d.jpg", v[3], digest="same1"),
                                 _row("/other/e.jpg", v[4], size=(None, None))])
        third = cat.put_images([_row("/other/f.jpg", v[5], digest="same2"),
                                _row("/other/g.jpg", v[6], digest="same2")])
        cat.ids = first + second + third
        cat.first_version = cat.version - 2
        yield cat


def _sql(cat, statement, params=()):
    return cat.db.conn.execute(statement, params).fetchall()


def test_image_ids_and_paths_by_version(shop):
    ids, v1 = shop.ids, shop.first_version
    assert shop.image_ids() == sorted(ids) == [r[0] for r in _sql(shop, "SELECT id FROM images ORDER BY id")]
    # duplicates.scan: SELECT id FROM images WHERE version > ?
    for since in (-1, v1, v1 + 1, v1 + 2):
        assert shop.image_ids(since) == sorted(
            r[0] for r in _sql(shop, "SELECT id FROM images WHERE version > ?", (since,)))
    assert shop.image_ids(v1) == ids[3:] and shop.image_ids(v1 + 2) == []
    # duplicates.turned_pairs: SELECT id, path FROM images WHERE version > ? ORDER BY id
    for since in (-1, v1, v1 + 1):
        assert shop.image_paths(since) == _sql(
            shop, "SELECT id, path FROM images WHERE version > ? ORDER BY id", (since,))
    assert shop.image_paths(v1 + 1) == [(ids[5], "/other/f.jpg"), (ids[6], "/other/g.jpg")]
    # duplicates.knn_candidates: SELECT count(*) FROM images WHERE version > ?
    for since in (-1, v1, v1 + 1, v1 + 2):
        assert shop.count_images(since) == _sql(
            shop, "SELECT count(*) FROM images WHERE version > ?", (since,))[0][0]
    assert shop.count_images() == 7 and shop.count_images(v1) == 4


def test_images_at_a_path_or_under_a_folder(shop):
    ids = shop.ids
    assert shop.image_ids_at("/shop") == ids[:4]
    assert shop.image_ids_at("/shop/sub/d.jpg") == [ids[3]]
    assert shop.image_ids_at("/sh") == [] and shop.image_ids_at("/shop/a") == []
    assert shop.image_ids_at("/other") == [r[0] for r in _sql(
        shop, "SELECT id FROM images WHERE path LIKE '/other/%' ORDER BY id")]


def test_per_image_lookups(shop):
    ids = shop.ids
    wanted = [ids[4], ids[0], 999_999]
    assert shop.paths_of(wanted) == {ids[0]: "/shop/a.jpg", ids[4]: "/other/e.jpg"}
    assert shop.content_hashes(wanted) == {ids[0]: "same1", ids[4]: "h-/other/e.jpg"}
    assert shop.content_hashes() == dict(_sql(shop, "SELECT id, content_hash FROM images"))
    assert shop.path_and_hash(ids[3]) == ("/shop/sub/d.jpg", "same1")
    assert shop.path_and_hash(999_999) is None
    # duplicates.image_areas: SELECT id, width, height FROM images WHERE id IN (...)
    dims = shop.image_dimensions(np.array(ids + [999_999]))
    assert dims == {i: (w, h) for i, w, h in _sql(
        shop, f"SELECT id, width, height FROM images WHERE id IN ({','.join('?' * len(ids))})", ids)}
    assert dims[ids[0]] == (10, 20) and dims[ids[4]] == (None, None)


def test_lookups_by_id_go_past_sqlites_parameter_limit(tmp_path):
    v = _vecs(1200, d=4)
    with Catalog.open(tmp_path) as cat:
        ids = cat.put_images([_row(f"/p/{i}.jpg", x) for i, x in enumerate(v)])
        assert len(cat.paths_of(ids)) == 1200 and len(cat.image_dimensions(ids)) == 1200
        assert cat.content_hashes(ids[::-1])[ids[-1]] == "h-/p/1199.jpg"


def test_filter_fields_are_searchs_join(shop):
    # search.Searcher._scan:
    statement = ("SELECT i.id, p.category, p.brand, p.price FROM images i "
                 "LEFT JOIN products p ON p.id = i.product_id")
    rows = list(shop.iter_filter_fields())
    assert sorted(rows) == sorted(_sql(shop, statement))
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id[shop.ids[0]] == ("Coats", "Acme", 50.0) and by_id[shop.ids[4]] == (None, None, None)


def test_same_content_groups(shop):
    ids, v1 = shop.ids, shop.first_version
    assert shop.same_content_groups() == sorted([[ids[0], ids[3]], [ids[5], ids[6]]])
    assert shop.same_content_groups(v1) == sorted([[ids[0], ids[3]], [ids[5], ids[6]]])  # d is newer
    assert shop.same_content_groups(v1 + 1) == [[ids[5], ids[6]]]
    assert shop.same_content_groups(v1 + 2) == []
    # duplicates.hash_pairs's statement, ids parsed as there
    for since in (-1, v1, v1 + 1):
        want = [sorted(int(i) for i in t.split(",")) for (t,) in _sql(
            shop, "SELECT group_concat(id) FROM images GROUP BY content_hash HAVING count(*) > 1 "
                  "AND max(version) > ?", (since,))]
        assert shop.same_content_groups(since) == want


def test_item_groups_and_listed_images(shop):
    ids = shop.ids
    assert shop.item_groups(np.array(ids)) == {ids[0]: ("JKT", "blue"), ids[1]: ("JKT", "green")}
    assert shop.item_groups([ids[2], ids[3]]) == {}        # empty group, no product
    assert shop.listed_images(ids) == set(ids[:3])
    assert shop.listed_images([ids[4], 999_999]) == set()


def test_file_stamps_and_tombstones(shop):
    ids = shop.ids
    stamps = list(shop.iter_file_stamps())
    assert stamps == _sql(shop, "SELECT id, path, file_size, mtime FROM images ORDER BY id")
    assert stamps[0] == (ids[0], "/shop/a.jpg", 1, 1.0)
    before = shop.version
    assert shop.removed_since(before) == []
    shop.remove_images([ids[1], ids[4]])
    assert sorted(shop.removed_since(before)) == sorted([ids[1], ids[4]])
    assert shop.removed_since(shop.version) == []


def test_product_rows_name_checked_columns(shop):
    rows = list(shop.product_rows(("id", "title", "extra", "remote_images")))
    assert [r[0] for r in rows] == ["blue", "green", "mug"]
    assert rows[2][1] == "Mug" and rows[2][2] == "{}" and rows[2][3] == "[]"
    for bad in (("id", "title; DROP TABLE products"), ("nope",), ()):
        with pytest.raises(ValueError):
            shop.product_rows(bad)


def test_embeddings_of_one_size_only(tmp_path):
    v = _vecs(5, d=8)
    with Catalog.open(tmp_path) as cat:
        ids = cat.put_images([_row(f"/{i}.jpg", x) for i, x in enumerate(v)])
        with cat.transaction() as db:        # a damaged (short) embedding
            db.conn.execute("UPDATE images SET embedding=? WHERE id=?", (b"\0" * 12, ids[2]))
        got = [(i, e) for batch_ids, embs in cat.iter_embeddings(batch=2, dim=8)
               for i, e in zip(batch_ids.tolist(), embs)]
        assert [i for i, _ in got] == [ids[0], ids[1], ids[3], ids[4]]
        np.testing.assert_allclose(got[2][1], v[3])
        assert [i for b, _ in cat.iter_embeddings(dim=3) for i in b.tolist()] == [ids[2]]


def test_projection_row_round_trip(tmp_path):
    with Catalog.open(tmp_path) as cat:
        assert cat.stored_projection_key() is None and cat.stored_projection() is None
        version = cat.version
        cat.store_projection("k1", b"data-1", 10)
        cat.store_projection("k2", b"data-2", 20)
        assert cat.stored_projection_key() == "k2" and cat.stored_projection() == b"data-2"
        assert cat.version == version            # not a change of the records
        assert _sql(cat, "SELECT fitted_on FROM projection") == [(20,)]


def test_read_snapshot_sees_one_state(tmp_path):
    v = _vecs(3)
    with Catalog.open(tmp_path) as cat, Catalog.open(tmp_path) as other:
        cat.put_images([_row("/a.jpg", v[0])])
        with cat.read_snapshot():
            assert cat.count_images() == 1
            other.put_images([_row("/b.jpg", v[1])])
            assert cat.count_images() == 1
            with cat.read_snapshot():             # nests
                assert cat.count_images() == 1
        assert cat.count_images() == 2


def test_write_lock_if_free(tmp_path):
    with Catalog.open(tmp_path) as cat, Catalog.open(tmp_path) as other:
        with cat.write_lock_if_free() as mine:
            assert mine
        with cat.writer():
            with cat.write_lock_if_free() as mine:
                assert mine                       # the writer itself
            with other.write_lock_if_free() as theirs:
                assert not theirs
        with other.write_lock_if_free() as theirs:
            assert theirs
    with Catalog.open(tmp_path, readonly=True) as ro, ro.write_lock_if_free() as mine:
        assert not mine


def test_closed_catalog_refuses_queries(tmp_path):
    cat = Catalog.open(tmp_path)
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        cat.image_ids()
