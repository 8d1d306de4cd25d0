"""catalog.health (the SQL of `lookalike check`), and check/repair of the damage it finds."""

import numpy as np

from engine.catalog import Catalog
from engine.consistency import check_catalog, repair_catalog


def _catalog(tmp_path, n=6):
    """A catalog of ``n`` real files (so the file checks pass), the first two linked to a product."""
    folder = tmp_path / "files"
    folder.mkdir()
    v = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    rows = []
    for i in range(n):
        p = folder / f"{i}.bin"
        p.write_bytes(bytes([i]) * 10)
        st = p.stat()
        rows.append({"path": str(p), "content_hash": f"{i:032x}", "file_size": st.st_size,
                     "mtime": st.st_mtime, "width": 1, "height": 1, "product_id": "P" if i < 2 else None,
                     "model_id": "m@1", "embedding": v[i], "labels": []})
    cat = Catalog.open(tmp_path / "cat")
    cat.upsert_products([{"id": "P", "title": "p"}])
    return cat, cat.put_images(rows)


def test_a_sound_catalog(tmp_path):
    cat, ids = _catalog(tmp_path)
    with cat:
        h = cat.health
        assert h.integrity_check() == ["ok"] and h.integrity_check(full=True) == ["ok"]
        assert h.foreign_key_problems() == [] and h.stale_tombstones() == []
        assert h.highest_row_version() == cat.version
        assert h.embedding_sizes() == [(32, 6)] and h.embeddings_not_of_size(32) == []
        assert check_catalog(cat).healthy


def test_tombstones_and_versions(tmp_path):
    cat, ids = _catalog(tmp_path)
    with cat:
        with cat.transaction(bump=False) as db:   # a removal mark on a present image, a version behind
            db.conn.execute("INSERT INTO removed VALUES (?, ?)", (ids[1], cat.version))
            db.conn.execute("UPDATE meta SET value='1' WHERE key='version'")
        assert cat.health.stale_tombstones() == [ids[1]]
        assert cat.health.highest_row_version() > cat.version == 1
        report = check_catalog(cat)
        assert report.find("tombstones") and report.find("version")
        after = repair_catalog(cat)
        assert after.healthy, after.text()
        assert {"tombstones", "version"} <= {f.check for f in after.findings if f.repaired}
        assert cat.health.stale_tombstones() == [] and cat.version >= cat.health.highest_row_version()
        assert len(cat.vectors.index()) == 6


def test_raise_version_and_drop_tombstones_directly(tmp_path):
    cat, ids = _catalog(tmp_path)
    with cat:
        top = cat.health.highest_row_version()
        assert cat.health.raise_version() == top + 1 == cat.version
        with cat.transaction(bump=False) as db:
            db.conn.executemany("INSERT INTO removed VALUES (?, ?)", [(i, 1) for i in ids[:3]])
        assert cat.health.drop_stale_tombstones() == 3 and cat.health.stale_tombstones() == []


def test_links_to_missing_products(tmp_path):
    cat, ids = _catalog(tmp_path)
    with cat:
        conn = cat.db.conn
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DELETE FROM products WHERE id='P'")
        conn.execute("PRAGMA foreign_keys=ON")
        problems = cat.health.foreign_key_problems()
        assert sorted(r[1] for r in problems) == ids[:2] and {r[0] for r in problems} == {"images"}
        assert check_catalog(cat).find("foreign-keys") is not None
        version = cat.version
        assert cat.health.unlink_missing_products() == 2
        assert cat.version == version + 1 and cat.health.foreign_key_problems() == []
        assert {r["product_id"] for r in cat.iter_records()} == {None}


def test_embedding_sizes(tmp_path):
    cat, ids = _catalog(tmp_path)
    with cat:
        with cat.transaction() as db:
            db.conn.execute("UPDATE images SET embedding=? WHERE id=?", (b"\0" * 12, ids[2]))
        assert cat.health.embedding_sizes() == [(32, 5), (12, 1)]
        assert cat.health.embeddings_not_of_size(32) == [ids[2]]
        assert cat.health.embeddings_not_of_size(12) == ids[:2] + ids[3:]


def test_damaged_embeddings_are_found_and_dropped(tmp_path):
    cat, ids = _catalog(tmp_path)
    with cat:
        with cat.transaction() as db:
            for i in (ids[1], ids[3]):
                db.conn.execute("UPDATE images SET embedding=? WHERE id=?",
                                (np.full(8, np.nan if i == ids[1] else 0.5, np.float32).tobytes(), i))
        finding = check_catalog(cat).find("embeddings")
        assert finding.count == 2 and finding.examples == sorted(cat.paths_of([ids[1], ids[3]]).values())
        after = repair_catalog(cat)         # dropped; re-embedding needs a model: none here
        assert [f.repaired for f in after.findings if f.check == "embeddings" and f.status != "ok"] == [True]
        assert cat.count_images() == 4
        assert any("dropped 2 damaged embeddings" in a for a in after.actions)


def test_reindex_keeps_the_rows(tmp_path):
    cat, ids = _catalog(tmp_path)
    with cat:
        cat.health.reindex()
        assert cat.image_ids() == ids and cat.health.integrity_check() == ["ok"]

