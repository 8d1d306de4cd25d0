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
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=ROOT,
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
    assert set(first) == {"query", "labels", "results", "error"}
    assert len(first["labels"]) == 3 and {"name", "score"} <= set(first["labels"][0])
    r = first["results"][0]
    assert {"rank", "path", "score", "product_id", "title", "brand", "price", "category"} <= set(r)
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
