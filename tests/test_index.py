import numpy as np
import pytest

from engine.errors import CatalogError
from engine.index import VectorIndex


def unit(rng, n, d):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_add_query_remove_and_revive():
    rng = np.random.default_rng(0)
    vecs = unit(rng, 50, 16)
    index = VectorIndex.create(16)
    index.add(np.arange(100, 150), vecs)
    ids, sims = index.query(vecs[7], 3)
    assert ids[0, 0] == 107 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert index.remove([107]) == 1 and index.remove([107]) == 0 and len(index) == 49
    ids, _ = index.query(vecs[7], 49)
    assert 107 not in ids[0].tolist()
    index.add([107], vecs[7:8])          # re-adding revives the id
    assert len(index) == 50 and index.query(vecs[7], 1)[0][0, 0] == 107


def test_grows_past_capacity_and_k_larger_than_size():
    rng = np.random.default_rng(1)
    index = VectorIndex.create(8, capacity=10)
    vecs = unit(rng, 3000, 8)
    index.add(np.arange(3000), vecs)
    assert len(index) == 3000 and index.info()["capacity"] >= 3000
    small = VectorIndex.create(8)
    small.add([1, 2], vecs[:2])
    ids, sims = small.query(vecs[0], 10)
    assert ids.shape == (1, 2)


def test_save_is_atomic_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    vecs = unit(rng, 200, 32)
    index = VectorIndex.create(32, ef=77)
    index.add(np.arange(200), vecs)
    index.remove([5, 6])
    index.version = 42
    path = tmp_path / "index.bin"
    index.save(path)
    assert not list(tmp_path.glob("*.tmp"))
    loaded = VectorIndex.load(path, 32)
    assert loaded.version == 42 and loaded.ef == 77 and len(loaded) == 198
    assert loaded._index.ef == 77            # ef is restored after load (hnswlib does not persist it)
    ids, _ = loaded.query(vecs[5], 5)
    assert 5 not in ids[0].tolist()
    with pytest.raises(CatalogError, match="dimension"):
        VectorIndex.load(path, 64)


def test_damaged_index_file_starts_empty(tmp_path):
    path = tmp_path / "index.bin"
    index = VectorIndex.create(4)
    index.add([1], np.ones((1, 4), np.float32) / 2)
    index.save(path)
    path.write_bytes(b"garbage")
    fresh = VectorIndex.load_or_create(path, 4)
    assert len(fresh) == 0 and fresh.version == 0


def test_damaged_bytes_inside_the_index_file_are_refused_before_hnswlib_reads_them(tmp_path):
    """hnswlib trusts what it loads (a damaged link list can crash the process): the size and
    CRC-32 written in the sidecar are checked first, and load_or_create starts empty instead."""
    rng = np.random.default_rng(4)
    index = VectorIndex.create(16)
    index.add(np.arange(300), unit(rng, 300, 16))
    path = tmp_path / "index.bin"
    index.save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match="do not match.*damaged"):
        VectorIndex.load(path, 16)
    assert len(VectorIndex.load_or_create(path, 16)) == 0
    path.write_bytes(bytes(data[:-10]))                # cut short
    with pytest.raises(CatalogError, match="do not match.*damaged"):
        VectorIndex.load(path, 16)


def test_recall_against_exact_search():
    rng = np.random.default_rng(3)
    data = unit(rng, 5000, 64)
    queries = unit(rng, 100, 64)
    index = VectorIndex.create(64)
    index.add(np.arange(5000), data)
    ids, _ = index.query(queries, 10)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), exact.tolist())])
    assert recall >= 0.95
