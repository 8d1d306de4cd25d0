"""The index at scale (PCA projection + exact re-ranking), the ingest pipeline's determinism and
the benchmark helpers. No timing assertions: speed is measured by `lookalike bench`."""

import json

import numpy as np
import pytest

from engine import vector_store
from engine.benchmark import TopK, recall_at, synthetic_embeddings, synthetic_queries
from engine.catalog import Catalog
from engine.errors import CatalogError
from engine.index import Projection, VectorIndex


def _rows(vectors, start=0):
    return [{"path": f"/synthetic/{start + i:06d}.jpg", "content_hash": f"h{start + i}", "file_size": 1,
             "mtime": 1.0, "width": 10, "height": 10, "product_id": None, "model_id": "m@1",
             "embedding": v, "labels": []} for i, v in enumerate(vectors)]


def _data(n, dim=256, seed=0):
    return next(synthetic_embeddings(n, dim=dim, seed=seed, chunk=n))


def test_synthetic_embeddings_are_unit_deterministic_and_chunked():
    a = np.concatenate(list(synthetic_embeddings(2500, dim=64, seed=3, chunk=1000)))
    b = np.concatenate(list(synthetic_embeddings(2500, dim=64, seed=3, chunk=1000)))
    assert a.shape == (2500, 64) and np.array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    sims = a[:200] @ a.T
    np.fill_diagonal(sims[:, :200], -1)
    assert 0.3 < float(sims.mean()) < 0.7          # typical cosine of two photos (~0.5 in Luma)


def test_topk_matches_brute_force():
    x = _data(3000, 32)
    q = synthetic_queries(x, 20, seed=5)
    top = TopK(q, 10)
    for i in range(0, 3000, 700):
        top.update(np.arange(i, min(i + 700, 3000)), x[i:i + 700])
    exact = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10]
    assert recall_at(top.ids, exact) == 1.0


def test_projection_fit_apply_and_round_trip():
    x = _data(2000, 128)
    p = Projection.fit(x, 32)
    assert (p.input_dim, p.dim, p.fitted_on) == (128, 32, 2000) and 0.5 < p.explained < 1.0
    np.testing.assert_allclose(p.components.T @ p.components, np.eye(32), atol=1e-4)
    y = p.apply(x[:10])
    assert y.shape == (10, 32)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    back = Projection.from_bytes(p.to_bytes())
    assert back.key == p.key and back.fitted_on == 2000 and back.explained == pytest.approx(p.explained)
    assert Projection.fit(x, 32).key == p.key                 # deterministic: same data, same key
    assert Projection.fit(x[:1000], 32).key != p.key


def test_projected_index_with_reranking_keeps_recall(tmp_path):
    x = _data(5000, 256)
    q = synthetic_queries(x, 100, seed=7)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    with Catalog.open(tmp_path / "cat") as cat:
        ids = np.array(cat.put_images(_rows(x)))
        p = cat.vectors.fit_projection(dim=64)
        assert cat.vectors.index().projection.key == p.key and cat.vectors.index().stored_dim == 64
        found, sims = cat.vectors.nearest(q, 10)
        # cosines are exact (re-ranked with the stored embeddings), not those of the projection
        np.testing.assert_allclose(sims, np.take_along_axis(q @ x.T, np.searchsorted(ids, found), 1),
                                   atol=1e-5)
        assert recall_at(np.searchsorted(ids, found), exact) >= 0.97
        index_only = np.searchsorted(ids, cat.vectors.index().query(q, 10)[0])
        assert recall_at(index_only, exact) < recall_at(np.searchsorted(ids, found), exact) + 1e-9


def test_projected_index_survives_save_reopen_sync_and_removal(tmp_path):
    x = _data(1500, 128, seed=1)
    more = _data(300, 128, seed=2)
    with Catalog.open(tmp_path / "cat") as cat:
        ids = cat.put_images(_rows(x))
        key = cat.vectors.fit_projection(dim=32).key
    meta = json.loads((tmp_path / "cat" / "index.json").read_text())
    assert meta["projection"] == key and meta["count"] == 1500

    with Catalog.open(tmp_path / "cat") as cat:
        index = cat.vectors.index()
        assert index.projection.key == key and len(index) == 1500      # loaded, not rebuilt
        new_ids = cat.put_images(_rows(more, start=1500))
        found, sims = cat.vectors.nearest(more[:5], 1)
        assert found[:, 0].tolist() == new_ids[:5] and np.allclose(sims[:, 0], 1.0, atol=1e-5)
        cat.remove_images(ids[:10])
        found, _ = cat.vectors.nearest(x[:10], 3)
        assert not set(found.ravel().tolist()) & set(ids[:10])
        cat.vectors.sync(save=True)

    with Catalog.open(tmp_path / "cat", readonly=True) as cat:
        assert len(cat.vectors.index()) == 1790 and cat.vectors.nearest(more[7], 1)[0][0, 0] == new_ids[7]


def test_index_built_with_another_projection_is_rebuilt(tmp_path):
    x = _data(800, 64)
    p1, p2 = Projection.fit(x, 16), Projection.fit(x[:400], 16)
    index = VectorIndex.create(64, projection=p1)
    index.add(np.arange(800), x)
    index.save(tmp_path / "index.bin")
    assert len(VectorIndex.load(tmp_path / "index.bin", 64, p1)) == 800
    with pytest.raises(CatalogError, match="another projection"):
        VectorIndex.load(tmp_path / "index.bin", 64, p2)
    with pytest.raises(CatalogError, match="another projection"):
        VectorIndex.load(tmp_path / "index.bin", 64, None)
    assert len(VectorIndex.load_or_create(tmp_path / "index.bin", 64, p2)) == 0


def test_projection_is_fitted_when_due_and_refitted_after_growth(tmp_path, monkeypatch):
    monkeypatch.setattr(vector_store, "PROJECTION_MIN_IMAGES", 200)
    x = _data(1000, 512)
    with Catalog.open(tmp_path / "cat") as cat:
        cat.put_images(_rows(x[:150]))
        assert cat.vectors.maybe_fit_projection() is None and cat.vectors.projection() is None
        cat.put_images(_rows(x[150:300], 150))
        first = cat.vectors.maybe_fit_projection()
        assert first is not None and first.fitted_on == 300 and cat.vectors.index().projection.key == first.key
        cat.put_images(_rows(x[300:1000], 300))
        assert cat.vectors.maybe_fit_projection() is None          # grown 3.3x: not yet
        second = cat.vectors.fit_projection(dim=16)                # explicit refit
        assert second.key != first.key and len(cat.vectors.index()) == 1000

        # another process sees the refit on its next search and reloads the index
        with Catalog.open(tmp_path / "cat") as other:
            assert other.vectors.index().projection.key == second.key
            cat.vectors.fit_projection(sample=500, seed=3)
            assert other.vectors.index().projection.key == cat.vectors.projection_key() != second.key
            assert other.vectors.nearest(x[999], 1)[0][0, 0] == 1000


def test_ingest_is_identical_with_one_or_many_workers(tmp_path, model, luma_images):
    from engine.ingest import ingest

    files = luma_images[::97][:6]
    embeddings = []
    for workers in (1, 3):
        with Catalog.open(tmp_path / f"w{workers}") as cat:
            report = ingest(cat, model, files, workers=workers, batch_size=4)
            assert report.added == len(files) and not report.failed
            rows = cat.db.conn.execute("SELECT path, width, height, content_hash, labels FROM images "
                                       "ORDER BY path").fetchall()
            ids = [r[0] for r in cat.db.conn.execute("SELECT id FROM images ORDER BY path")]
            embeddings.append((rows, cat.embeddings(ids)))
    assert embeddings[0][0] == embeddings[1][0]
    np.testing.assert_allclose(embeddings[0][1], embeddings[1][1], atol=1e-6)


def test_bench_command_runs_small(tmp_path, luma_dir, capsys):
    from cli.main import main

    code = main(["bench", "--folder", str(luma_dir / "images"), "--limit", "8", "--queries", "3",
                 "--skip-scale", "--skip-gui", "--work-dir", str(tmp_path / "bench"),
                 "--json", str(tmp_path / "bench.json")])
    out = capsys.readouterr().out
    assert code == 0
    for needle in ("machine", "pHash peer", "ingest", "ingest / pHash", "decode", "model", "knn"):
        assert needle in out
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert figures["ingest"]["images"] == 8 and figures["phash"]["images"] == 8
    assert figures["ingest_over_phash"] > 0 and figures["machine"]["cores"] >= 1


def test_bench_needs_a_folder_and_names_a_missing_one(tmp_path, capsys):
    """An installed copy has no ../shared: the folder is an argument, and a wrong one is one line."""
    from cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--skip-scale", "--skip-gui"])
    assert exc.value.code == 2
    assert "--folder" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    code = main(["bench", "--folder", str(missing), "--skip-scale", "--skip-gui"])
    err = capsys.readouterr().err
    assert code != 0
    assert str(missing) in err and "no such folder" in err


def test_bench_without_imagehash_skips_the_peer(tmp_path, luma_dir, capsys, monkeypatch):
    """imagehash only serves the pHash comparison: without it the rest is still measured."""
    import importlib.util

    from cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "imagehash" else real(name, *a, **k))
    code = main(["bench", "--folder", str(luma_dir / "images"), "--limit", "4", "--queries", "2",
                 "--skip-scale", "--skip-gui", "--work-dir", str(tmp_path / "bench"),
                 "--json", str(tmp_path / "bench.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "pHash peer     skipped" in out and "ingest / pHash" not in out
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert figures["phash"] is None and figures["ingest"]["images"] == 4


def test_projected_index_scores_with_codes_and_stores_neighbours(tmp_path):
    """A projection wider than the graph: the graph holds GRAPH_DIM dims, an int8 code the rest;
    the index's similarities approximate the projected cosines, every image gets its nearest
    neighbours, and all of it survives save/load; a side file of another save is refused."""
    from engine import index as index_mod

    x = _data(3000, 256, seed=4)
    q = synthetic_queries(x, 50, seed=8)
    p = Projection.fit(x, 192)
    index = VectorIndex.create(256, projection=p)
    assert index.graph_dim == index_mod.GRAPH_DIM == 128 and index.info()["stored_dim"] == 192
    index.add(np.arange(1000, 4000), x)
    found, sims = index.query(q, 10)
    projected = p.apply(q) @ p.apply(x).T                       # cosines of the projected vectors
    want = np.take_along_axis(projected, found - 1000, 1)
    assert np.abs(sims - want).max() < 0.02                     # int8 code error only
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert recall_at(found - 1000, exact) >= 0.9

    index.save(tmp_path / "index.bin")                          # computes the neighbour lists
    side = index._side
    nbrs = side.nbrs[:side.n]
    assert side.n == 3000 and (nbrs >= 1000).all() and (nbrs != side.labels[:side.n, None]).all()
    px = p.apply(x)
    true_first = np.argsort(-(px @ px.T), axis=1)[:, 1] + 1000   # [:, 0] is the image itself
    assert np.mean(nbrs[:, 0] == true_first) >= 0.9

    loaded = VectorIndex.load(tmp_path / "index.bin", 256, p)
    again, again_sims = loaded.query(q, 10)
    assert np.array_equal(again, found) and np.allclose(again_sims, sims)
    assert np.array_equal(loaded._side.nbrs[:3000], nbrs)

    # removed images never come back, not even as a neighbour of a result
    gone = np.unique(nbrs[:50, :4])
    loaded.remove(gone)
    found, _ = loaded.query(np.concatenate([q, x[:50]]), 10)
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    loaded.add(gone[:3], x[gone[:3] - 1000])                    # revived
    assert loaded.query(x[gone[0] - 1000], 1)[0][0, 0] == gone[0]

    # a side file from another save does not pass for this one
    other = VectorIndex.create(256, projection=p)
    other.add(np.arange(1000, 4000), x)
    other.save(tmp_path / "other.bin")
    (tmp_path / "other.side.npz").replace(tmp_path / "index.side.npz")
    with pytest.raises(CatalogError, match="another index file"):
        VectorIndex.load(tmp_path / "index.bin", 256, p)
    (tmp_path / "index.side.npz").unlink()
    with pytest.raises(CatalogError, match="unreadable"):
        VectorIndex.load(tmp_path / "index.bin", 256, p)


def test_neighbour_lists_follow_incremental_adds(tmp_path):
    x = _data(2000, 256, seed=5)
    p = Projection.fit(x, 192)
    index = VectorIndex.create(256, projection=p)
    index.add(np.arange(1500), x[:1500])
    index.query(x[:1], 1)                                       # links the first 1500
    index.add(np.arange(1500, 2000), x[1500:])
    index.add([7], x[7:8] * 1.0)                                # re-adding relinks it
    side = index._side
    assert not side.linked[side.find(np.array([7]))[0]]
    found, _ = index.query(x[1500:1510], 1)
    assert found[:, 0].tolist() == list(range(1500, 1510))
    assert side.linked[:side.n].all() and (side.nbrs[:side.n] >= 0).all()


def test_projection_of_an_older_narrower_layout_is_refitted(tmp_path, monkeypatch):
    monkeypatch.setattr(vector_store, "PROJECTION_MIN_IMAGES", 200)
    x = _data(400, 256, seed=6)
    with Catalog.open(tmp_path / "cat") as cat:
        cat.put_images(_rows(x))
        cat.vectors.fit_projection(dim=64)                        # as an older version fitted it
        monkeypatch.setattr(vector_store, "PROJECTION_DIM", 64)
        assert not cat.vectors.projection_due()
        monkeypatch.setattr(vector_store, "PROJECTION_DIM", 192)
        assert cat.vectors.projection_due()
        assert cat.vectors.maybe_fit_projection().dim == 192 and cat.vectors.index().projection.dim == 192


def test_check_accepts_a_projected_index_and_sees_a_damaged_side_file(tmp_path):
    from engine.consistency import check_catalog

    x = _data(600, 256, seed=9)
    with Catalog.open(tmp_path / "cat") as cat:
        cat.put_images(_rows(x))
        cat.vectors.fit_projection(dim=192)
        report = check_catalog(cat, files=False)
        assert report.healthy, report.to_json()
        assert [f.status for f in report.findings if f.check == "index"] == ["ok"]
    (tmp_path / "cat" / "index.side.npz").write_bytes(b"garbage")
    with Catalog.open(tmp_path / "cat") as cat:
        report = check_catalog(cat, files=False)
        assert report.find("index-file") is not None and not report.healthy
