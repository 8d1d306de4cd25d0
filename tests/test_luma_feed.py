"""The issue's acceptance check: the Luma feed imports completely, and every catalog image,
searched as a query, finds itself first with its product data."""

import pytest

from engine.catalog import Catalog
from engine.ingest import ingest
from engine.search import Searcher


@pytest.fixture(scope="module")
def luma_catalog(tmp_path_factory, luma_dir, model):
    folder = tmp_path_factory.mktemp("luma-feed-catalog")
    with Catalog.open(folder) as cat:
        report = ingest(cat, model, [luma_dir / "products.csv"])
    return folder, report


def test_feed_imports_completely(luma_catalog):
    folder, report = luma_catalog
    assert report.failed == [] and report.products == 458 and report.added == 717
    with Catalog.open(folder, readonly=True) as cat:
        assert cat.count_products() == 458 and cat.count_images() == 717
        assert cat.stats()["products_with_images"] == 458
        rec = next(r for r in cat.iter_records() if r["path"].endswith("mh01-black_main.jpg"))
        assert rec["product_id"] == "MH01-black" and rec["brand"] and rec["title"].startswith("Chaz Kangeroo")
        assert rec["price"] == 52.0 and rec["currency"] == "USD"
        assert rec["category"].startswith("Men > Tops")


def test_every_image_finds_itself_first_with_product_data(luma_catalog, model):
    folder, _ = luma_catalog
    misses = []
    with Catalog.open(folder, readonly=True) as cat:
        # every catalog photo against its own catalog: the pixels decide; reading each photo's
        # text (0.3-0.6 s of OCR, tested in test_text_*.py and test_search.py) adds nothing here
        searcher = Searcher(cat, model, read_text=False)
        for rec in cat.iter_records():
            result = searcher.search_path(rec["path"], k=1)
            top = result.results[0]
            if top.path != rec["path"] or top.product.get("product_id") != rec["product_id"]:
                misses.append(rec["path"])
    assert misses == []
