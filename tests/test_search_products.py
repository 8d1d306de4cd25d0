"""Results per product (engine.result_groups): a catalog of several photos per product answers
with products, each its best image and how many of its photos matched; ``group="image"`` gives
one result per image, as before."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import skimage.data

from engine import result_groups
from engine.catalog import Catalog
from engine.search import IMAGE, PRODUCT, Searcher, SearchFilters


def _photo(name: str) -> np.ndarray:
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    rgb = getattr(skimage.data, name)()
    return np.repeat(rgb[:, :, None], 3, axis=2) if rgb.ndim == 2 else rgb[:, :, :3]


def _views(rgb: np.ndarray) -> list[np.ndarray]:
    """Three photos of one product: the whole, the top-left and the bottom-right (mirrored)."""
    h, w = rgb.shape[:2]
    return [rgb, rgb[: h * 3 // 4, : w * 3 // 4], rgb[h // 4 :, w // 4 :][:, ::-1]]


PRODUCTS = {"ASTRO": "astronaut", "COFFEE": "coffee", "ROCKET": "rocket"}
SINGLES = ("chelsea", "hubble_deep_field", "immunohistochemistry", "motorcycle", "coins")


@pytest.fixture(scope="module")
def product_catalog(tmp_path_factory, model):
    """3 products x 3 photos, and 5 photos without a product: 8 results in product mode."""
    from engine.ingest import ingest

    root = tmp_path_factory.mktemp("products")
    links, paths = [], []
    for product_id, name in PRODUCTS.items():
        for n, view in enumerate(_views(_photo(name))):
            path = root / f"{product_id.lower()}-{n}.png"
            cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(view), cv2.COLOR_RGB2BGR))
            paths.append(path)
            links.append((str(path), product_id))
    for name in SINGLES:
        path = root / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(_photo(name), cv2.COLOR_RGB2BGR))
        paths.append(path)
    with Catalog.open(root / "catalog") as cat:
        cat.upsert_products([{"id": p, "title": p.title(), "brand": "Space" if p != "COFFEE" else "Cafe"}
                             for p in PRODUCTS])
        report = ingest(cat, model, paths)
        assert report.added == len(paths) and not report.failed, report.summary()
        assert cat.link_images(links) == 9
    return root / "catalog"


def _query(name: str) -> np.ndarray:
    """An edited copy of a product photo: turned 4 degrees, cut, re-encoded."""
    rgb = _photo(name)
    h, w = rgb.shape[:2]
    turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), 4, 1.0), (w, h),
                            borderValue=(255, 255, 255))[h // 12 :, : w - w // 12]
    _, buf = cv2.imencode(".jpg", np.ascontiguousarray(turned), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def _key(m):
    return m.product.get("product_id") or ("image", m.image_id)


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_product_mode_returns_distinct_products_with_their_photos(product_catalog, model, name):
    with Catalog.open(product_catalog, readonly=True) as cat:
        searcher = Searcher(cat, model)
        products = searcher.search_image(_query(name), k=10)
        images = searcher.search_image(_query(name), k=20, group=IMAGE)
    assert products.group == PRODUCT and images.group == IMAGE
    own = next(p for p, n in PRODUCTS.items() if n == name)
    top = products.results[0]
    assert top.product["product_id"] == own and top.image_count == 3 and len(top.images) == 2
    # distinct products, ranked 1..n; every product's three photos are counted, singles alone
    assert len(products.results) == len(PRODUCTS) + len(SINGLES)
    assert len({_key(m) for m in products.results}) == len(products.results)
    assert [m.rank for m in products.results] == list(range(1, len(products.results) + 1))
    for m in products.results:
        assert m.image_count == (3 if m.product.get("product_id") else 1) == 1 + len(m.images)
        assert all(o.product.get("product_id") == m.product.get("product_id") for o in m.images)
    # image mode: one result per image, nothing grouped
    assert len(images.results) == 14
    assert all(m.image_count == 1 and m.images == [] for m in images.results)
    # the product results are the image ranking, grouped: products in the order of their best
    # image, each product's images in ranking order, same scores
    ranked = [(m.image_id, m.score) for m in images.results]
    firsts = []
    for m in images.results:
        if _key(m) not in [_key(f) for f in firsts]:
            firsts.append(m)
    assert [(m.image_id, m.score) for m in products.results] == [(m.image_id, m.score) for m in firsts]
    for m in products.results:
        mine = [(i, s) for i, s in ranked if i in {m.image_id, *(o.image_id for o in m.images)}]
        assert [(m.image_id, m.score), *((o.image_id, o.score) for o in m.images)] == mine
    # JSON: each result says how many photos matched and which
    j = products.to_json()
    assert j["group"] == "product" and j["results"][0]["image_count"] == 3
    assert [i["image_id"] for i in j["results"][0]["images"]] == [o.image_id for o in top.images]
    assert {"image_id", "path", "score", "strength"} == set(j["results"][0]["images"][0])
    assert images.to_json()["group"] == "image"


def test_k_counts_products_and_longer_lists_extend_shorter_ones(product_catalog, model, monkeypatch):
    from engine import search

    query = _query("rocket")
    with Catalog.open(product_catalog, readonly=True) as cat:
        searcher = Searcher(cat, model)
        runs = {k: searcher.search_image(query, k=k) for k in (2, 5)}
        assert [len(r.results) for r in runs.values()] == [2, 5]
        assert [(m.image_id, m.score, _key(m)) for m in runs[2].results] == \
            [(m.image_id, m.score, _key(m)) for m in runs[5].results][:2]
        assert [m.image_count for m in runs[2].results] == [m.image_count for m in runs[5].results][:2]

        # smaller candidate groups: the first group (the 10 nearest images) holds fewer than all
        # 8 products, so asking for 8 draws the next group; the first results stay put
        monkeypatch.setattr(search, "MIN_CANDIDATES", 10)
        groups = []
        real_score = Searcher._score
        monkeypatch.setattr(Searcher, "_score", lambda self, ev, *a: groups.append(len(ev)) or real_score(self, ev, *a))
        first_group = searcher.search_image(query, k=10, group=IMAGE)
        assert len({_key(m) for m in first_group.results}) < 8 and groups == [10]
        groups.clear()
        small = {k: searcher.search_image(query, k=k) for k in (2, 5, 8)}
    assert len(groups) == 4 and groups[-2:] == [10, 4]   # k=2, 5: one group; k=8: two
    assert len(small[8].results) == 8 and len({_key(m) for m in small[8].results}) == 8
    full = [(m.image_id, m.score, _key(m)) for m in small[8].results]
    for k, r in small.items():
        assert [(m.image_id, m.score, _key(m)) for m in r.results] == full[:k]
        assert [m.rank for m in r.results] == list(range(1, k + 1))
        # a longer list may find more photos of a product already listed, never fewer
        assert all(a.image_count <= b.image_count for a, b in zip(r.results, small[8].results))


def test_filters_and_min_score_apply_per_image(product_catalog, model):
    query = _query("astronaut")
    with Catalog.open(product_catalog, readonly=True) as cat:
        searcher = Searcher(cat, model)
        space = searcher.search_image(query, k=10, filters=SearchFilters(brand="Space"))
        assert {m.product["product_id"] for m in space.results} == {"ASTRO", "ROCKET"}
        assert all(m.image_count == 3 for m in space.results)
        everything = searcher.search_image(query, k=20, group=IMAGE)
        astro = [m for m in everything.results if m.product.get("product_id") == "ASTRO"]
        cut = astro[1].score                         # the product's two best photos reach it
        above = searcher.search_image(query, k=10, filters=SearchFilters(min_score=cut))
    assert above.results[0].product["product_id"] == "ASTRO"
    assert above.results[0].image_count == sum(1 for m in astro if m.score >= cut) >= 2
    assert all(m.score >= cut for r in above.results for m in (r, *r.images))


def test_group_by_product_on_hand_made_matches():
    def M(image_id, product_id=None, score=0.5):
        return SimpleNamespace(rank=0, image_id=image_id, score=score, image_count=1, images=[],
                               product={"image_id": image_id, "product_id": product_id})

    ranked = [M(1, "A"), M(2), M(3, "A"), M(4, "B"), M(5, ""), M(6, "B"), M(7, "A"), M(8, "C")]
    out = result_groups.by_product(ranked, k=4)
    assert [m.image_id for m in out] == [1, 2, 4, 5]
    assert [m.rank for m in out] == [1, 2, 3, 4]
    assert [m.image_count for m in out] == [3, 1, 2, 1]
    assert [o.image_id for o in out[0].images] == [3, 7] and [o.image_id for o in out[2].images] == [6]
    assert all(o.rank == 1 for o in out[0].images)
    assert result_groups.count([m.product for m in ranked], "product") == 5
    assert result_groups.count([m.product for m in ranked], "image") == 8
    with pytest.raises(ValueError, match="group"):
        result_groups.check("products")


def test_cli_products_by_default_and_all_images(product_catalog, tmp_path):
    import json
    import shutil

    from tests.test_search import run_cli

    cat = tmp_path / "catalog"
    shutil.copytree(product_catalog, cat, ignore=shutil.ignore_patterns("write.lock"))
    query = tmp_path / "astronaut-edited.jpg"
    cv2.imwrite(str(query), cv2.cvtColor(_query("astronaut"), cv2.COLOR_RGB2BGR))

    proc = run_cli("search", "--catalog", cat, "--json", "-k", "20", query)
    assert proc.returncode == 0, proc.stderr
    products = json.loads(proc.stdout)
    assert products["group"] == "product" and len(products["results"]) == 8
    top = products["results"][0]
    assert top["product_id"] == "ASTRO" and top["image_count"] == 3 and len(top["images"]) == 2
    assert all(r["image_count"] == 1 + len(r["images"]) for r in products["results"])

    proc = run_cli("search", "--catalog", cat, "--json", "-k", "20", "--all-images", query)
    assert proc.returncode == 0, proc.stderr
    images = json.loads(proc.stdout)
    assert images["group"] == "image" and len(images["results"]) == 14
    assert all(r["image_count"] == 1 and r["images"] == [] for r in images["results"])
    assert images["results"][0]["image_id"] == top["image_id"]

    # the table: a "photos" column per product, none per image
    proc = run_cli("search", "--catalog", cat, "-k", "3", query)
    assert proc.returncode == 0 and "photos" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.lstrip().startswith("#"))
    row = next(line for line in proc.stdout.splitlines() if "ASTRO" in line)
    column = header.index("photos")
    assert row[column:column + len("photos")].strip() == "3"
    proc = run_cli("search", "--catalog", cat, "-k", "3", "--all-images", query)
    assert proc.returncode == 0 and "photos" not in proc.stdout
    assert sum("ASTRO" in line for line in proc.stdout.splitlines()) >= 2
