"""`lookalike eval` harness: per-group figures, results per product, product feeds as the gallery
and the raw-embedding reference (the figures are computed by hand in the comments)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from engine.evaluation import (QuerySpec, Ranking, format_summary, mean_ap, micro_ap,
                               precision_recall_at, read_gallery, recall_at, run_queries, summarise)


def R(results, relevant=(), group="", n_relevant=None):
    return Ranking("q", frozenset(relevant), list(results), extra={"group": group} if group else {},
                   n_relevant=n_relevant)


# ---------------------------------------------------------------------- per group
RANKINGS = [
    R([("a", .9), ("x", .2)], {"a"}, "A"),          # hit at 1, AP 1
    R([("x", .8), ("b", .6)], {"b", "c"}, "A"),     # hit at 2, AP (1/2) / 2 = 0.25
    R([("y", .7)], {"d"}, "B"),                     # miss, AP 0
    R([("e", .95)], (), "B"),                       # nothing relevant: only in the pool
]
REFERENCE = [
    R([("x", .9), ("a", .8)], {"a"}, "A"),          # miss at 1
    R([("b", .9)], {"b", "c"}, "A"),                # hit
    R([("d", .9)], {"d"}, "B"),                     # hit
    R([], (), "B"),
]


def test_summary_per_group_by_hand():
    s = summarise(RANKINGS, 10, thresholds={"t": 0.5}, reference=REFERENCE)
    a, b = s["groups"]["A"], s["groups"]["B"]
    assert list(s["groups"]) == ["A", "B"]
    assert (a["queries"], a["queries_with_relevant"], b["queries"], b["queries_with_relevant"]) == (2, 2, 2, 1)
    # A: pool a.9+ x.8- b.6+ x.2-, 3 to find: micro-AP (1/1 + 2/3) / 3; at 0.5: 2 of 3 pairs right
    assert (a["R@1"], a["R@5"]) == (0.5, 1.0)
    assert a["mAP"] == pytest.approx((1 + 0.25) / 2)
    assert a["micro-AP"] == pytest.approx(5 / 9)
    t = a["thresholds"]["t"]
    assert (t["precision"], t["recall"], t["pairs"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    # B: one query with a relevant item, missed; the other's confident result is wrong
    assert (b["R@1"], b["R@5"], b["mAP"], b["micro-AP"]) == (0.0, 0.0, 0.0, 0.0)
    t = b["thresholds"]["t"]
    assert (t["precision"], t["recall"], t["pairs"]) == (0.0, 0.0, 2)
    # all: pool e.95- a.9+ x.8- y.7- b.6+ x.2-, 4 to find: micro-AP (1/2 + 2/5) / 4
    assert (s["R@1"], s["R@5"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert s["mAP"] == pytest.approx(1.25 / 3)
    assert s["micro-AP"] == pytest.approx(0.225)
    t = s["thresholds"]["t"]
    assert (t["precision"], t["recall"], t["pairs"]) == (pytest.approx(0.4), pytest.approx(0.5), 5)
    # the raw-embedding reference: figures without thresholds, per group too
    ref = s["reference"]
    assert "thresholds" not in ref and ref["R@1"] == pytest.approx(2 / 3)
    assert (ref["groups"]["A"]["R@1"], ref["groups"]["B"]["R@1"]) == (0.5, 1.0)
    text = format_summary(s)
    assert "raw embedding" in text and "raw R@1" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[-3:]}
    assert rows["A"][:4] == ["A", "2", "0.500", "0.500"] and rows["B"][:4] == ["B", "2", "1.000", "0.000"]
    assert rows["all"][:4] == ["all", "4", "0.667", "0.333"]


def test_no_group_column_no_groups():
    s = summarise([R([("a", .9)], {"a"})], 10, thresholds={})
    assert "groups" not in s and "reference" not in s
    assert "raw R@1" not in format_summary(s)


# ---------------------------------------------------------------------- results per product
def test_a_product_result_counts_its_relevant_photos_once():
    # three relevant photos of one product; the search shows the product once, at rank 2
    per_product = R([("x", .9), ("p1b", .8)], {"p1a", "p1b", "p1c"}, n_relevant=1)
    assert mean_ap([per_product], 10) == pytest.approx(0.5)
    assert micro_ap([per_product], 10) == pytest.approx(0.5)
    assert precision_recall_at([per_product], 0.85, 10)[1] == 0.0
    assert precision_recall_at([per_product], 0.5, 10)[:2] == (pytest.approx(0.5), pytest.approx(1.0))
    per_image = R([("x", .9), ("p1b", .8)], {"p1a", "p1b", "p1c"})
    assert mean_ap([per_image], 10) == pytest.approx(0.5 / 3)
    assert recall_at([per_product], 1) == 0.0 and recall_at([per_product], 2) == 1.0


def test_run_queries_with_product_results(tmp_path):
    """A search returning products (results with image_count): relevance by path, the relevant
    photos counted per product (images outside a product count one each)."""
    paths = {n: str(tmp_path / f"{n}.jpg") for n in ("q", "p1a", "p1b", "p2a", "loose")}
    product = {paths["p1a"]: "P1", paths["p1b"]: "P1", paths["p2a"]: "P2", paths["loose"]: None}

    class FakeCatalog:
        def image_by_path(self, p):
            return {"id": hash(p) % 1000, "product_id": product[p]} if p in product else None

    def match(name, score):
        return SimpleNamespace(path=paths[name], score=score, evidence=None, image_count=2,
                               product_id=product[paths[name]])

    searcher = SimpleNamespace(catalog=FakeCatalog(), search_path=lambda q, k, filters: SimpleNamespace(
        error=None, timings={}, results=[match("p2a", .9), match("p1b", .7), match("loose", .5)]))
    q = QuerySpec(paths["q"], frozenset([paths["p1a"], paths["p1b"], paths["loose"]]), {"group": "G"})
    [r] = run_queries(searcher, [q], k=10)
    assert r.n_relevant == 2 and r.extra["per_product"] and r.group == "G"
    assert [p in r.relevant for p, _ in r.results] == [False, True, True]
    assert mean_ap([r], 10) == pytest.approx((1 / 2 + 2 / 3) / 2)


# ---------------------------------------------------------------------- a product feed as gallery
def drawn(seed: int, size: int = 240) -> np.ndarray:
    """A product-like picture: coloured shapes and a label on a plain background (BGR)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), rng.integers(150, 256, 3), np.uint8)
    for _ in range(14):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(10, size - 10, 2))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(15, 60)), y + int(rng.integers(15, 60))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(8, 35)), colour, -1)
        else:
            pts = rng.integers(0, size, (4, 2)).astype(np.int32)
            cv2.polylines(img, [pts], True, colour, 3)
    cv2.putText(img, f"ITEM {seed}", (12, size - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20, 20, 20), 2)
    return img


def another_photo(img: np.ndarray, seed: int) -> np.ndarray:
    """The same product photographed again: turned a little, cropped, smaller."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 4 + 3 * (seed % 3), 1.0)
    out = cv2.warpAffine(img, m, (w, h), borderValue=(255, 255, 255))[12:h - 6, 8:w - 12]
    return cv2.resize(out, (200, 200), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def feed_data(tmp_path_factory) -> Path:
    """4 products in 2 groups: a Merchant feed with one catalog photo each, a Shopify export with
    two photos each, and query photos of each product with a `group` column."""
    root = tmp_path_factory.mktemp("feed-eval")
    for d in ("catalog", "photos", "queries", "eval"):
        (root / d).mkdir()
    groups = {1: "Boxes", 2: "Boxes", 3: "Cans", 4: "Cans"}
    with open(root / "products.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "title", "product_type", "description", "image_link"])
        for n, g in groups.items():
            cv2.imwrite(str(root / "catalog" / f"p{n}.jpg"), drawn(n))
            w.writerow([f"p{n}", f"Product {n}", g, f"a {g.lower()[:-1]} of item {n}", f"catalog/p{n}.jpg"])
    with open(root / "photos.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Handle", "Title", "Type", "Image Src", "Image Position"])
        for n, g in groups.items():
            for i in (1, 2):
                cv2.imwrite(str(root / "photos" / f"p{n}_{i}.jpg"), another_photo(drawn(n), 10 * n + i))
                w.writerow([f"p{n}", f"Product {n}" if i == 1 else "", g if i == 1 else "",
                            f"photos/p{n}_{i}.jpg", i])
    to_catalog, to_photos = [], []
    for n, g in groups.items():
        cv2.imwrite(str(root / "queries" / f"p{n}.jpg"), another_photo(drawn(n), n),
                    [cv2.IMWRITE_JPEG_QUALITY, 80])
        to_catalog.append((f"queries/p{n}.jpg", f"catalog/p{n}.jpg", g))
        to_photos.append((f"queries/p{n}.jpg", f"photos/p{n}_1.jpg;photos/p{n}_2.jpg", g))
    for name, rows in (("to_catalog", to_catalog), ("to_photos", to_photos)):
        with open(root / "eval" / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["query", "relevant", "group"])
            w.writerows(rows)
    return root


def test_read_gallery_of_a_feed(feed_data):
    g = read_gallery([feed_data / "photos.csv"])
    assert len(g) == 8 and g.feeds == [str(feed_data / "photos.csv")] and g.files == []
    assert all(Path(p).is_file() for p in g)
    plain = read_gallery([feed_data / "photos"])
    assert list(plain) == list(g) and plain.key() != g.key()


@pytest.mark.parametrize("feed,queries,gallery_size", [("products.csv", "to_catalog", 4),
                                                        ("photos.csv", "to_photos", 8)])
def test_eval_cli_with_a_feed_as_gallery(feed_data, tmp_path, capsys, feed, queries, gallery_size):
    from cli.main import main
    from engine.catalog import Catalog

    cache = tmp_path / "cache"
    args = ["eval", "--gallery", str(feed_data / feed), "--queries", str(feed_data / "eval" / f"{queries}.csv"),
            "--cache", str(cache), "-q", "--json"]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["gallery"] == gallery_size and s["queries"] == 4
    # the catalog is the normal import: products with their text, several photos per product
    with Catalog.open(cache) as cat:
        assert cat.count_products() == 4 and cat.count_images() == gallery_size
        rec = cat.image_by_path(str((feed_data / ("catalog/p1.jpg" if feed == "products.csv" else "photos/p1_2.jpg")).resolve()))
        assert rec is not None and rec["product_id"] == "p1"
        assert cat.product("p1")["title"] == "Product 1"
    assert set(s["groups"]) == {"Boxes", "Cans"} and s["groups"]["Cans"]["queries"] == 2
    assert s["R@1"] == 1.0
    # the raw-embedding reference ranks the same gallery, overall and per group
    ref = s["reference"]
    assert ref["queries"] == 4 and set(ref["groups"]) == {"Boxes", "Cans"}
    assert 0.0 <= ref["R@1"] <= 1.0 and ref["R@5"] == 1.0
    # text report, second run from the cached catalog; without the reference
    assert main(args[:-1]) == 0
    out = capsys.readouterr().out
    assert "product feed" in out and "raw R@1" in out and "Boxes" in out and "raw embedding" in out
    assert main([*args[:-1], "--reference", "none"]) == 0
    out = capsys.readouterr().out
    assert "raw embedding" not in out and "Cans" in out


def test_reference_details_are_written(feed_data, tmp_path, capsys, model):
    from cli.main import main
    from engine.catalog import Catalog
    from engine.imaging import load_image

    details = tmp_path / "d.jsonl"
    assert main(["eval", "--gallery", str(feed_data / "photos.csv"), "--queries",
                 str(feed_data / "eval" / "to_photos.csv"), "--cache", str(tmp_path / "c"), "-q",
                 "--details", str(details), "-k", "3"]) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert len(rows) == 4
    for row in rows:
        ref = row["extra"]["reference"]
        assert len(ref) == 3 and ref[0][1] >= ref[1][1] >= ref[2][1]     # cosines, best first
        assert row["extra"]["group"] in ("Boxes", "Cans")
    # the reference's value is the plain cosine of the whole query's and the image's embeddings
    query = model.embed([load_image(rows[0]["query"], min_short_side=model.resize_short_side)])[0]
    path, cosine = rows[0]["extra"]["reference"][0]
    with Catalog.open(tmp_path / "c") as cat:
        stored = cat.embeddings([cat.image_by_path(path)["id"]])[0]
    assert float(query @ stored) == pytest.approx(cosine, abs=1e-5)
