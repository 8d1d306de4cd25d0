"""catalog.decision_store: the duplicate finder's decisions and references."""

import numpy as np
import pytest

from engine import decision_store
from engine.catalog import Catalog
from engine.decision_store import CONFIRMED, NOT_DUPLICATE, DecisionStore
from engine.errors import CatalogError, LookalikeError


def _row(path, digest, seed):
    v = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return {"path": path, "content_hash": digest, "file_size": 1, "mtime": 1.0, "width": 10,
            "height": 10, "product_id": None, "model_id": "m@1", "embedding": v / np.linalg.norm(v),
            "labels": []}


@pytest.fixture
def cat(tmp_path):
    with Catalog.open(tmp_path / "cat") as c:
        # b and b2 are byte-identical copies (same content hash)
        c.ids = dict(zip("a b c d b2".split(), c.put_images(
            [_row(f"/{n}.jpg", f"h{n[0]}", i) for i, n in enumerate("a b c d b2".split())])))
        yield c


def test_the_catalog_owns_a_store():
    assert isinstance(Catalog.decision_store, property)
    assert decision_store.DECISIONS == (NOT_DUPLICATE, CONFIRMED)


def test_mark_forget_and_list_pairs(cat):
    ids, store = cat.ids, cat.decision_store
    assert isinstance(store, DecisionStore)
    assert store.decisions() == [] and store.decided_pairs(CONFIRMED).shape == (0, 2)
    assert store.mark_pairs([(ids["c"], ids["a"])], NOT_DUPLICATE, scores=[0.25]) == 1
    assert store.mark_pairs([(ids["a"], ids["b"]), (ids["d"], ids["c"])], CONFIRMED) == 2
    rows = {(r["a_id"], r["b_id"]): r for r in store.decisions()}     # by time, then content
    assert {k: r["decision"] for k, r in rows.items()} == {
        (ids["a"], ids["c"]): NOT_DUPLICATE, (ids["a"], ids["b"]): CONFIRMED, (ids["c"], ids["d"]): CONFIRMED}
    row = rows[ids["a"], ids["c"]]
    assert row["score"] == 0.25 and row["a_path"] == "/a.jpg" and row["hash_b"] == "hc"
    # a decision applies to every image with the content: b2 is a copy of b
    assert store.decided_pairs(CONFIRMED).tolist() == sorted(
        [[ids["a"], ids["b"]], [ids["a"], ids["b2"]], [ids["c"], ids["d"]]])
    assert store.decided_pairs(NOT_DUPLICATE).tolist() == [[ids["a"], ids["c"]]]
    # a later decision replaces the earlier one, whichever way round the pair is given
    store.mark_pairs([(ids["c"], ids["a"])], CONFIRMED)
    assert store.decided_pairs(NOT_DUPLICATE).shape == (0, 2)
    assert store.forget_pairs([(ids["b2"], ids["a"]), (ids["c"], ids["a"]), (ids["a"], ids["d"])]) == 2
    assert store.decided_pairs(CONFIRMED).tolist() == [[ids["c"], ids["d"]]]
    assert store.forget_pairs([]) == 0 and store.mark_pairs([], CONFIRMED) == 0


def test_bad_input_is_refused_before_anything_is_written(cat):
    ids, store = cat.ids, cat.decision_store
    with pytest.raises(ValueError, match="unknown decision"):
        store.mark_pairs([(ids["a"], ids["b"])], "maybe")
    with pytest.raises(LookalikeError, match="itself"):
        store.mark_pairs([(ids["a"], ids["a"])], CONFIRMED)
    with pytest.raises(CatalogError, match="no image with id 999"):
        store.mark_pairs([(ids["a"], 999)], CONFIRMED)
    with pytest.raises(CatalogError):
        store.set_reference(999)
    assert store.decisions() == []


def test_references_follow_the_content(cat):
    ids, store = cat.ids, cat.decision_store
    assert store.references() == set()
    store.set_reference(ids["b"])
    assert store.references() == {ids["b"], ids["b2"]}
    store.set_reference(ids["b2"], False)          # the same content: no longer a reference
    assert store.references() == set()


def test_decisions_outlive_the_images_they_were_made_on(cat):
    ids, store = cat.ids, cat.decision_store
    store.mark_pairs([(ids["a"], ids["b"])], NOT_DUPLICATE)
    cat.remove_images([ids["b"]])
    row = store.decisions()[0]
    assert (row["b_id"], row["b_path"]) == (ids["b2"], "/b2.jpg")    # the other copy now
    cat.remove_images([ids["b2"]])
    row = store.decisions()[0]
    assert (row["b_id"], row["b_path"]) == (None, None) and row["hash_b"] == "hb"
    assert store.decided_pairs(NOT_DUPLICATE).shape == (0, 2)


def test_tables_come_with_the_catalog_and_reading_never_creates_them(cat, tmp_path):
    def tables(c):
        return {r[0] for r in c.db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    assert {"pair_decisions", "dupe_references"} <= tables(cat)
    # a catalog made before the decision tables: read-only, it reads as holding no decisions and
    # nothing is written; its first decision creates them
    directory = cat.directory
    with cat.transaction(bump=False) as db:
        db.conn.execute("DROP TABLE pair_decisions")
        db.conn.execute("DROP TABLE dupe_references")
    decision_store._TABLES._ready.clear()
    ids = cat.image_ids()
    with Catalog.open(directory, create=False, readonly=True) as reader:
        assert reader.decision_store.decisions() == []
        assert reader.decision_store.references() == set()
        assert reader.decision_store.decided_pairs("confirmed").shape == (0, 2)
        assert "pair_decisions" not in tables(reader)
    cat.decision_store.mark_pairs([(ids[0], ids[1])], "confirmed")
    assert {"pair_decisions", "dupe_references"} <= tables(cat)
    assert len(cat.decision_store.decisions()) == 1
