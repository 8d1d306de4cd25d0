import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from engine.catalog import Catalog
from engine.errors import LookalikeError
from engine.search import SearchFilters, Searcher, crop_roi

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_every_catalog_image_finds_itself_first(small_luma_catalog, model):
    with Catalog.open(small_luma_catalog, readonly=True) as cat:
        searcher = Searcher(cat, model)
        for rec in cat.iter_records():
            result = searcher.search_path(rec["path"], k=3)
            assert result.error is None
            assert result.results[0].path == rec["path"], rec["path"]
            assert 0.0 <= result.results[-1].score <= result.results[0].score <= 1.0
            assert [m.rank for m in result.results] == [1, 2, 3]


def test_scores_are_query_independent_and_filters_apply(small_luma_catalog, model):
    with Catalog.open(small_luma_catalog, readonly=True) as cat:
        searcher = Searcher(cat, model)
        recs = list(cat.iter_records())
        q = recs[0]["path"]
        everything = searcher.search_path(q, k=40)
        assert len(everything.results) == 40
        assert all(a.score >= b.score for a, b in zip(everything.results, everything.results[1:]))
        cut = everything.results[10].score
        above = searcher.search_path(q, k=40, filters=SearchFilters(min_score=cut))
        assert [m.path for m in above.results] == [m.path for m in everything.results if m.score >= cut]


def test_region_of_interest(small_luma_catalog, model, tmp_path, luma_images):
    # a catalog photo pasted into a large cluttered scene: the region finds it first
    with Catalog.open(small_luma_catalog, readonly=True) as cat:
        target = next(cat.iter_records())["path"]
        product = cv2.imread(target)
        product = cv2.resize(product, (product.shape[1] // 3, product.shape[0] // 3))
        scene = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), (1600, 1200))
        y, x = 300, 900
        scene[y:y + product.shape[0], x:x + product.shape[1]] = product
        path = tmp_path / "scene.jpg"
        cv2.imwrite(str(path), scene)
        searcher = Searcher(cat, model)
        roi = (x, y, product.shape[1], product.shape[0])
        with_roi = searcher.search_path(path, k=5, roi=roi)
        assert with_roi.results[0].path == target
        assert with_roi.results[0].score > searcher.search_path(path, k=5).results[0].score
    with pytest.raises(LookalikeError, match="too small"):
        crop_roi(np.zeros((100, 100, 3), np.uint8), (10, 10, 3, 3))


def test_real_photo_is_classified_sensibly(model, small_luma_catalog):
    with Catalog.open(small_luma_catalog, readonly=True) as cat:
        result = Searcher(cat, model).search_image(skdata.coffee(), name="coffee")
    names = [l.name for l in result.labels]
    assert len(names) == 3 and names[0] in {"espresso", "cup", "coffee mug"}
    assert sum(l.score for l in result.labels) <= 1.0 + 1e-6


def test_search_json_contract_and_bad_query(small_luma_catalog, catalog_copy, tmp_path):
    cat = catalog_copy(small_luma_catalog)
    with Catalog.open(cat, readonly=True) as c:
        good = next(c.iter_records())["path"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc = run_cli("search", "--catalog", cat, "--json", "-k", "3", good, bad)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["query"] == good and first["error"] is None
    assert set(first) == {"query", "group", "labels", "read", "results", "error"} and first["group"] == "product"
    assert isinstance(first["read"], list)
    assert len(first["labels"]) == 3 and {"name", "score"} <= set(first["labels"][0])
    r = first["results"][0]
    assert {"rank", "path", "score", "product_id", "title", "brand", "price", "category",
            "image_count", "images"} <= set(r)
    assert r["rank"] == 1 and r["path"] == good and 0 <= r["score"] <= 1
    assert second["query"] == str(bad) and second["results"] == [] and second["error"]
    # the readable table works too, and a successful run exits 0
    proc = run_cli("search", "--catalog", cat, good)
    assert proc.returncode == 0 and "score" in proc.stdout and os.path.basename(good) in proc.stdout


def test_cli_errors_are_one_line(tmp_path):
    proc = run_cli("search", "--catalog", tmp_path / "nope", "x.jpg")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no catalog here" in proc.stderr
    proc = run_cli("search", "--catalog", tmp_path / "nope", "--min-score", "bogus", "x.jpg")
    assert proc.returncode == 2 and "unknown threshold" in proc.stderr


def test_info_remove_export(small_luma_catalog, catalog_copy, tmp_path):
    cat = catalog_copy(small_luma_catalog)
    proc = run_cli("info", "--catalog", cat, "--json")
    info = json.loads(proc.stdout)
    assert info["images"] == 40 and info["model"]["provider"] in {"CPU", "CUDA"}
    assert info["index"]["count"] == 40
    with Catalog.open(cat, readonly=True) as c:
        victim = next(c.iter_records())["path"]
    proc = run_cli("remove", "--catalog", cat, victim)
    assert proc.returncode == 0 and "removed 1" in proc.stdout
    out = tmp_path / "images.csv"
    proc = run_cli("export", "images", "--catalog", cat, "-o", out)
    assert proc.returncode == 0
    text = out.read_text(encoding="utf-8-sig").splitlines()
    assert text[0].startswith("image_id,path,product_id") and len(text) == 40
    assert victim not in "\n".join(text)


@pytest.fixture(scope="module")
def luma_catalog_180(tmp_path_factory, luma_images, model):
    """180 Luma photos: more than one group of candidates (MIN_CANDIDATES)."""
    from engine.ingest import ingest

    folder = tmp_path_factory.mktemp("luma-180")
    with Catalog.open(folder) as cat:
        report = ingest(cat, model, luma_images[::4][:180])
        assert report.added == 180 and not report.failed, report.summary()
    return folder


def test_longer_result_lists_extend_shorter_ones(luma_catalog_180, model, luma_images, tmp_path):
    # the same query asked for 10, 60 or every result: the same first results, same scores
    # (catalog photos, a mirrored and recoloured copy that takes the mirrored pass, and a
    # photo that is not in the catalog)
    from engine.search import MIN_CANDIDATES

    edited = cv2.imread(str(luma_images[8]))[:, ::-1]
    edited = cv2.cvtColor(cv2.cvtColor(edited, cv2.COLOR_BGR2HSV) + np.uint8([20, 0, 0]), cv2.COLOR_HSV2BGR)
    cv2.imwrite(str(tmp_path / "edited.jpg"), edited)
    queries = [luma_images[0], luma_images[1], tmp_path / "edited.jpg", luma_images[2]]
    with Catalog.open(luma_catalog_180, readonly=True) as cat:
        searcher = Searcher(cat, model)
        for q in queries:
            runs = {k: searcher.search_path(q, k=k) for k in (10, 60, 180)}
            assert [len(r.results) for r in runs.values()] == [10, 60, 180], q
            full = [(m.image_id, m.score) for m in runs[180].results]
            for k, r in runs.items():
                assert [(m.image_id, m.score) for m in r.results] == full[:k], (q, k)
                assert [m.rank for m in r.results] == list(range(1, k + 1))
            # the first group is ranked by score
            first = [s for _, s in full[:MIN_CANDIDATES]]
            assert first == sorted(first, reverse=True), q
            # filters and a minimum score keep the order of what is left
            cut = runs[60].results[30].score
            above = searcher.search_path(q, k=60, filters=SearchFilters(min_score=cut))
            assert [m.image_id for m in above.results] == [i for i, s in full if s >= cut][:60]


def test_selective_filter_is_served_by_an_exact_scan(luma_catalog_180, catalog_copy, model, luma_images, monkeypatch):
    # a filter that few images pass: past MAX_INDEX_FETCH the search scans the images that pass
    # it instead of asking the index for ever more neighbours (at 100k images hnswlib fails to
    # return 51,200 of them); the answer is the same as the index's when the index can give it
    import engine.search as search

    cat_dir = catalog_copy(luma_catalog_180)
    with Catalog.open(cat_dir) as cat:
        paths = [r["path"] for r in cat.iter_records()]
        cat.upsert_products([{"id": "R", "title": "rare", "category": "Rare > Thing"},
                             {"id": "C", "title": "common", "category": "Common"}])
        rare = paths[5::60]                              # 3 of 180
        cat.link_images([(p, "R") for p in rare] + [(p, "C") for p in paths if p not in rare])
    query = luma_images[2]
    filters = SearchFilters(category="Rare")
    with Catalog.open(cat_dir, readonly=True) as cat:
        searcher = Searcher(cat, model)
        search_path = functools.partial(searcher.search_path, group="image")   # the 3 rare images
        through_index = search_path(query, k=10, filters=filters)
        monkeypatch.setattr(search, "MAX_INDEX_FETCH", 10)      # the first fetch (50) is past it
        scans = []
        real_scan = Searcher._scan
        monkeypatch.setattr(Searcher, "_scan", lambda self, *a: scans.append(1) or real_scan(self, *a))
        scanned = {k: search_path(query, k=k, filters=filters) for k in (2, 10)}
    assert len(scans) == 2
    assert sorted(m.path for m in through_index.results) == sorted(rare)
    # the scan's cosines are computed from the stored embeddings, the index's by hnswlib: equal
    # to float32 rounding
    assert [m.image_id for m in scanned[10].results] == [m.image_id for m in through_index.results]
    assert [m.score for m in scanned[10].results] == pytest.approx([m.score for m in through_index.results], rel=1e-5)
    assert [(m.image_id, m.score) for m in scanned[2].results] == \
        [(m.image_id, m.score) for m in scanned[10].results][:2]


def test_a_forked_child_gets_its_own_search_threads():
    """Work handed to the parent's verify or text-reading pools would wait forever in a forked
    child (it has none of the parent's threads): each pool is made again there."""
    import os

    from engine import search as search_module

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    parent_pools = (search_module._executor(), search_module._text_pool())
    assert parent_pools[1].submit(lambda: 1).result(timeout=30) == 1
    pid = os.fork()
    if pid == 0:                                  # the child: exit 0 only if both pools work
        code = 1
        try:
            pools = [p for p in (search_module._executor(), search_module._text_pool()) if p is not None]
            if all(p not in parent_pools for p in pools):
                code = 0 if all(p.submit(lambda: 2).result(timeout=20) == 2 for p in pools) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
