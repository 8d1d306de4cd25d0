"""Declared product variants in the duplicate finder: two images of *different products of one item
group* (a feed's item_group_id: the colours or sizes of one style) are not reported as duplicates
unless asked for, and never pull other images into one group."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from engine import duplicates, scoring
from engine.catalog import Catalog
from engine.duplicates import (
    CONFIRMED,
    declared_variant_mask,
    embedding_verifier,
    group_pairs,
    variant_attributes,
    variant_families,
)
from tests.synthetic_vectors import near, unit

DIM = 64

#: the embedding score of cosine 0.9 (synthetic catalogs are scored by their embeddings alone)
COSINE_0_9 = float(scoring.embedding_score(0.9))


def _catalog(folder: Path, images: list[tuple], products: list[dict]) -> Catalog:
    """images: (vector, product id or None, content hash or None); path /syn/NNNN.jpg."""
    cat = Catalog.open(folder)
    cat.upsert_products(products)
    rows = []
    for n, (vec, pid, digest) in enumerate(images):
        rows.append({"path": f"/syn/{n:04d}.jpg", "content_hash": digest or f"h{n:031d}", "file_size": 1,
                     "mtime": 0.0, "width": 800, "height": 1000, "product_id": pid, "model_id": "synthetic",
                     "embedding": unit(vec), "labels": []})
    cat.put_images(rows)
    return cat


def _scan(cat, **kw):
    kw.setdefault("verifier", embedding_verifier)
    kw.setdefault("threshold", COSINE_0_9)
    return duplicates.scan(cat, **kw)


def _groups(result) -> list[set[int]]:
    return [set(g.image_ids) for g in result.groups]


@pytest.fixture
def shop(tmp_path):
    """Image ids (in order of creation, 1-based in the catalog):
    1 jacket blue (group J), 2 jacket green (group J): the same photo recoloured (cosine 0.97)
    3 tee S, 4 tee M (group T, sizes): byte-identical files (one shared photo)
    5 mug (no group), 6 cup (no group): a copy pair of unrelated products
    7 bag (group B), 8 hat (group H): a copy pair of products of different groups
    9, 10: bare files (no product), a copy pair
    11 jacket blue's second photo (same product as 1): a copy of 1
    12..41: unrelated images"""
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((40, DIM)))
    images = [(base[0], "J-blue", None), (near(rng, base[0], 0.97), "J-green", None),
              (base[1], "T-S", "same" * 8), (base[1], "T-M", "same" * 8),
              (base[2], "MUG", None), (near(rng, base[2], 0.96), "CUP", None),
              (base[3], "BAG", None), (near(rng, base[3], 0.96), "HAT", None),
              (base[4], None, None), (near(rng, base[4], 0.96), None, None),
              (near(rng, base[0], 0.985), "J-blue", None)]
    images += [(v, None, None) for v in base[10:40]]
    products = [
        {"id": "J-blue", "title": "Jacket", "group_id": "J", "extra": {"color": "blue"}},
        {"id": "J-green", "title": "Jacket", "group_id": "J", "extra": {"Color": "green"}},
        {"id": "T-S", "title": "Tee", "group_id": "T", "extra": {"g:size": "S"}},
        {"id": "T-M", "title": "Tee", "group_id": "T", "extra": {"size": "M"}},
        {"id": "MUG", "title": "Mug"}, {"id": "CUP", "title": "Cup", "group_id": ""},
        {"id": "BAG", "title": "Bag", "group_id": "B"}, {"id": "HAT", "title": "Hat", "group_id": "H"},
    ]
    cat = _catalog(tmp_path / "c", images, products)
    yield cat
    cat.close()


# ---------------------------------------------------------------------- the catalog's product data
def test_variant_families_and_attributes(shop):
    fam = variant_families(shop, range(1, 12))
    assert fam == {1: ("J", "J-blue"), 2: ("J", "J-green"), 3: ("T", "T-S"), 4: ("T", "T-M"),
                   7: ("B", "BAG"), 8: ("H", "HAT"), 11: ("J", "J-blue")}
    pairs = np.array([(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (1, 11), (2, 11), (1, 9)])
    assert declared_variant_mask(pairs, fam).tolist() == [True, True, False, False, False, False, True, False]
    assert variant_attributes(shop.image_record(2)) == {"item_group_id": "J", "color": "green"}
    assert variant_attributes(shop.image_record(3)) == {"item_group_id": "T", "size": "S"}
    assert variant_attributes(shop.image_record(9)) == {}


# ---------------------------------------------------------------------- the scan
def test_declared_variants_are_not_reported_by_default(shop):
    result = _scan(shop)
    groups = _groups(result)
    # unrelated products, bare files and two photos of one product are unaffected
    assert {5, 6} in groups and {7, 8} in groups and {9, 10} in groups and {1, 11} in groups
    # jacket blue/green (recoloured) and tee S/M (one shared photo) are not, and the green
    # jacket is not pulled into the blue jacket's group through its second photo either
    assert not any({1, 2} <= g or {2, 11} <= g or {3, 4} <= g for g in groups)
    assert all(2 not in g and 3 not in g and 4 not in g for g in groups)
    assert result.variant_pairs == 3          # (1, 2), (2, 11), (3, 4)
    assert "3 pairs between declared variants not reported" in result.summary()
    assert result.to_json()["variant_pairs"] == 3 and result.to_json()["include_variants"] is False


def test_declared_variants_are_reported_on_request(shop):
    result = _scan(shop, include_variants=True)
    groups = _groups(result)
    assert {1, 2, 11} in groups and {3, 4} in groups and {5, 6} in groups and {9, 10} in groups
    assert result.variant_pairs == 3 and "3 between declared variants included" in result.summary()
    rows = list(csv.DictReader(io.StringIO(_csv(result.groups))))
    tee = {r["path"]: r for r in rows if r["item_group_id"] == "T"}
    assert {r["size"] for r in tee.values()} == {"S", "M"}
    jacket = [r for r in rows if r["item_group_id"] == "J"]
    assert {r["color"] for r in jacket} == {"blue", "green"}
    member = next(m for g in result.groups for m in g.members if m.record.get("product_id") == "T-M"
                  or m.record.get("product_id") == "T-S")
    assert member.to_json()["item_group_id"] == "T"


def _csv(groups) -> str:
    out = io.StringIO()
    duplicates.write_groups_csv(groups, out)
    return out.getvalue()


def test_confirmed_variant_pair_is_always_reported(shop):
    shop.decision_store.mark_pairs([(1, 2)], CONFIRMED)
    result = _scan(shop)
    groups = _groups(result)
    # confirmed 1~2 is reported; 11 (blue's second photo, a closer copy of 1) is a declared
    # variant of 2 that nobody confirmed, so it cannot share their group: the confirmed copy
    # joins the representative first
    assert {1, 2} in groups and not any(11 in g for g in groups)
    group = next(g for g in result.groups if 2 in g.image_ids)
    assert group.representative.image_id == 1
    assert [m.confirmed for m in group.members] == [True]
    assert result.variant_pairs == 2       # (2, 11) and (3, 4); the confirmed pair is not counted


def test_variant_pair_does_not_chain_two_groups(tmp_path):
    # blue (1) and green (2) are recoloured variants (verified 0.97); each has a bare re-upload
    # (3: of blue, 4: of green). Blue has the most links, so without the rule its star would
    # take green too: {1, 2, 3} and 4 alone.
    rng = np.random.default_rng(7)
    base = unit(rng.standard_normal((30, DIM)))
    blue, green = base[0], near(rng, base[0], 0.95)
    images = [(blue, "J-blue", None), (green, "J-green", None), (near(rng, blue, 0.99), None, None),
              (near(rng, green, 0.99), None, None)]
    images += [(v, None, None) for v in base[1:30]]
    table = {(1, 2): 0.97, (1, 3): 0.99, (2, 4): 0.95}

    def verifier(catalog, pairs, cosine):
        return np.array([table.get((int(a), int(b)), 0.1) for a, b in pairs]), "table"

    cat = _catalog(tmp_path / "c", images, [{"id": "J-blue", "group_id": "J"}, {"id": "J-green", "group_id": "J"}])
    with cat:
        assert _groups(_scan(cat, verifier=verifier, include_variants=True)) == [{1, 2, 3}]
        result = _scan(cat, verifier=verifier)
        assert sorted(map(sorted, _groups(result))) == [[1, 3], [2, 4]] and result.variant_pairs == 1


def test_grouping_keeps_variants_apart_even_through_a_common_representative():
    # 9 (a bare copy) matches 1 (blue) better than 2 (green); 1~2 is a declared-variant pair;
    # 3 is another photo of the blue product
    pairs = np.array([(1, 9), (2, 9), (1, 2), (3, 9)])
    scores = np.array([0.99, 0.97, 0.98, 0.95])
    family = {1: ("J", "J-blue"), 2: ("J", "J-green"), 3: ("J", "J-blue")}
    plain = group_pairs(pairs, scores)
    assert {plain[0][0], *[m for m, _ in plain[0][1]]} == {1, 2, 3, 9}
    groups = group_pairs(pairs, scores, family=family)
    as_sets = [{rep, *[m for m, _ in members]} for rep, members in groups]
    assert {1, 3, 9} in as_sets and not any({1, 2} <= g for g in as_sets)
    # confirmed by the user: together again
    together = group_pairs(pairs, scores, family=family, together=[(1, 2)])
    assert any({1, 2} <= {rep, *[m for m, _ in members]} for rep, members in together)


def test_cli_include_variants(shop, capsys):
    from cli.main import main

    folder = str(shop.directory)
    assert main(["dupes", "--catalog", folder, "--threshold", str(COSINE_0_9), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["variant_pairs"] == 3 and out["include_variants"] is False
    ids = [{g["representative"]["image_id"], *[m["image_id"] for m in g["members"]]} for g in out["groups"]]
    assert not any({3, 4} <= g for g in ids)
    assert main(["dupes", "--catalog", folder, "--threshold", str(COSINE_0_9), "--json", "--include-variants"]) == 0
    out = json.loads(capsys.readouterr().out)
    ids = [{g["representative"]["image_id"], *[m["image_id"] for m in g["members"]]} for g in out["groups"]]
    assert {3, 4} in ids and out["include_variants"] is True
    assert main(["dupes", "--catalog", folder, "--threshold", str(COSINE_0_9), "-q"]) == 0
    assert "3 pairs between declared variants not reported" in capsys.readouterr().out


def test_old_catalog_without_product_data_is_unaffected(tmp_path):
    rng = np.random.default_rng(1)
    base = unit(rng.standard_normal((20, DIM)))
    images = [(v, None, None) for v in base] + [(near(rng, base[0], 0.97), None, None)]
    with _catalog(tmp_path / "c", images, []) as cat:
        result = _scan(cat)
        assert _groups(result) == [{1, 21}] and result.variant_pairs == 0
        assert "declared variants" not in result.summary()


def test_feed_item_group_reaches_the_scan(tmp_path, luma_dir, model):
    """A real GMC feed (item_group_id, color) imported with its images: the groups the scan sees."""
    from engine.ingest import ingest

    feed = tmp_path / "feed" / "products.csv"
    feed.parent.mkdir()
    with open(feed, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "item_group_id", "title", "color", "size", "image_link"])
        for colour in ("blue", "green"):
            w.writerow([f"MSH10-{colour}", "MSH10", "Shorts", colour, "M",
                        str(luma_dir / "images" / f"msh10-{colour}_main.jpg")])
    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, [feed], allow_outside=True)
        assert report.products == 2
        ids = [r[0] for r in cat.db.conn.execute("SELECT id FROM images ORDER BY id")]
        fam = variant_families(cat, ids)
        assert sorted(fam.values()) == [("MSH10", "MSH10-blue"), ("MSH10", "MSH10-green")]
        assert variant_attributes(cat.image_record(ids[0]))["size"] == "M"
        everything = duplicates.scan(cat, threshold=0.0, include_variants=True)
        assert _groups(everything) == [set(ids)] and everything.variant_pairs == 1
        default = duplicates.scan(cat, threshold=0.0)
        assert default.groups == [] and default.variant_pairs == 1
