"""catalog.vectors: the index lifecycle (load, sync, save, rebuild), the projection and exact
re-ranking, behind the VectorStore interface; the Catalog's old methods delegate to it."""

import numpy as np
import pytest

from engine.catalog import Catalog
from engine.errors import CatalogError
from engine.index import VectorIndex
from engine.vector_store import VectorStore


def _vecs(n, d=16, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(vectors, start=0):
    return [{"path": f"/v/{start + i:05d}.jpg", "content_hash": f"h{start + i}", "file_size": 1,
             "mtime": 1.0, "width": 10, "height": 10, "product_id": None, "model_id": "m@1",
             "embedding": v, "labels": []} for i, v in enumerate(vectors)]


def _saved_version(cat) -> int:
    return VectorIndex.load(cat.index_path, cat.embedding_dim, cat.vectors.projection()).version


def test_nearest_is_exact_without_a_projection(tmp_path):
    x = _vecs(300)
    with Catalog.open(tmp_path) as cat:
        assert isinstance(cat.vectors, VectorStore) and cat.vectors.path == cat.index_path
        ids, sims = cat.vectors.nearest(x[:2], 5)
        assert ids.shape == sims.shape == (2, 0)              # empty catalog
        stored = np.array(cat.put_images(_rows(x)))
        q = _vecs(4, seed=1)
        ids, sims = cat.vectors.nearest(q, 5)
        exact = q @ x.T
        want = np.argsort(-exact, axis=1)[:, :5]
        assert (ids == stored[want]).all()
        np.testing.assert_allclose(sims, np.take_along_axis(exact, want, axis=1), atol=1e-5)
        # the Catalog's method is the same search
        same_ids, same_sims = cat.vectors.nearest(q, 5)
        assert (same_ids == ids).all() and np.allclose(same_sims, sims)


def test_nearest_with_a_projection_returns_exact_cosines(tmp_path):
    x = _vecs(500, d=256, seed=2)
    with Catalog.open(tmp_path) as cat:
        stored = np.array(cat.put_images(_rows(x)))
        projection = cat.vectors.fit_projection(dim=192)
        assert cat.vectors.projection().key == projection.key == cat.vectors.projection_key()
        assert cat.vectors.index().projection.key == projection.key
        q = x[[3, 77, 401]]
        ids, sims = cat.vectors.nearest(q, 10, shortlist=50)
        assert ids.shape == (3, 10) and ids[:, 0].tolist() == stored[[3, 77, 401]].tolist()
        for row in range(3):                 # each cosine is the stored embeddings' exact one
            np.testing.assert_allclose(sims[row], cat.embeddings(ids[row].tolist()) @ q[row], atol=1e-5)
            assert (np.diff(sims[row]) <= 1e-6).all()


def test_index_is_loaded_once_and_kept_in_step(tmp_path):
    x = _vecs(40)
    with Catalog.open(tmp_path) as cat:
        assert cat.vectors.index() is None and cat.vectors.loaded() is None   # no images yet
        ids = cat.put_images(_rows(x[:30]))
        index = cat.vectors.index()
        assert cat.vectors.loaded() is index and cat.vectors.index() is index and len(index) == 30
        cat.put_images(_rows(x[30:], 30))
        assert cat.vectors.index() is index and len(index) == 40     # synced on use
        cat.remove_images(ids[:5])
        assert len(cat.vectors.loaded()) == 35                      # dropped at once
        assert cat.vectors.sync() == 0 and cat.vectors.sync() == 0      # nothing left to apply


def test_sync_applies_changes_to_a_given_index(tmp_path):
    x = _vecs(20)
    with Catalog.open(tmp_path) as cat:
        ids = cat.put_images(_rows(x))
        cat.remove_images(ids[:3])
        fresh = VectorIndex.create(16, capacity=20)
        assert len(fresh) == 0
        with cat.vectors.snapshot():
            assert cat.vectors.sync(fresh, save=False) == 17
        assert fresh.ids() == set(cat.image_ids()) and fresh.version == cat.version
        assert cat.vectors.loaded() is None                          # the given one, not the loaded one


def test_save_writes_an_up_to_date_index(tmp_path):
    x = _vecs(30)
    with Catalog.open(tmp_path) as cat:
        cat.put_images(_rows(x[:10]))
        assert not cat.index_path.exists()
        cat.vectors.save()                                            # loads, syncs, saves
        assert _saved_version(cat) == cat.version
        cat.put_images(_rows(x[10:], 10))
        assert _saved_version(cat) < cat.version
        cat.vectors.save()
        assert _saved_version(cat) == cat.version


def test_only_the_writer_saves_the_index(tmp_path):
    x = _vecs(30)
    with Catalog.open(tmp_path) as writer, Catalog.open(tmp_path) as reader:
        writer.put_images(_rows(x[:10]))
        writer.vectors.save()
        saved = _saved_version(writer)
        with writer.writer():
            writer.put_images(_rows(x[10:], 10))
            assert len(reader.vectors.index()) == 30                  # the reader syncs in memory...
            reader.vectors.save()
            assert _saved_version(writer) == saved                   # ...but leaves the file alone
            writer.vectors.save()
            assert _saved_version(writer) == writer.version
    with Catalog.open(tmp_path, readonly=True) as ro:
        ro.vectors.rebuild()
        assert len(ro.vectors.loaded()) == 30


def test_rebuild_and_delete_files(tmp_path):
    x = _vecs(12)
    with Catalog.open(tmp_path) as cat:
        with pytest.raises(CatalogError, match="empty"):
            cat.vectors.rebuild()
        cat.put_images(_rows(x))
        index = cat.vectors.rebuild(M=8)
        assert cat.vectors.loaded() is index and index.M == 8 and len(index) == 12
        assert _saved_version(cat) == cat.version
        assert cat.vectors.delete_files() is True
        assert not cat.index_path.exists() and not VectorIndex.meta_path(cat.index_path).exists()
        assert cat.vectors.delete_files() is False


def test_projection_policy_delegates(tmp_path, monkeypatch):
    from engine import vector_store

    monkeypatch.setattr(vector_store, "PROJECTION_MIN_IMAGES", 100)
    x = _vecs(480, d=256, seed=4)
    with Catalog.open(tmp_path) as cat:
        cat.put_images(_rows(x[:90]))
        assert not cat.vectors.projection_due() and cat.vectors.maybe_fit_projection() is None
        cat.put_images(_rows(x[90:120], 90))
        assert cat.vectors.projection_due() and cat.vectors.projection() is None
        fitted = cat.vectors.maybe_fit_projection()
        assert fitted.fitted_on == 120 and cat.vectors.projection().key == fitted.key
        cat.put_images(_rows(x[120:], 120))                           # 480 = 4 x 120
        assert cat.vectors.projection_due()
        refit = cat.vectors.maybe_fit_projection()
        assert refit.fitted_on == 480 and cat.vectors.index().projection.key == refit.key
    with Catalog.open(tmp_path, readonly=True) as ro:
        assert ro.vectors.maybe_fit_projection() is None


def test_closing_forgets_the_loaded_index(tmp_path):
    cat = Catalog.open(tmp_path)
    cat.put_images(_rows(_vecs(5)))
    assert cat.vectors.index() is not None
    cat.close()
    assert cat.vectors.loaded() is None
