"""The HNSW index (hnswlib) over image embeddings.

Labels are catalog image ids. Vectors are L2-normalised and compared by inner product, so the
distance hnswlib returns is ``1 - cosine``. hnswlib does not persist ``ef`` and its write calls
(add, resize, mark_deleted) must not run while another thread queries, so every call goes through
one lock. Saves are atomic: write to a temporary file, then rename over the old one, with a JSON
sidecar holding the parameters and the catalog version the index reflects.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Sequence

import hnswlib
import numpy as np

from .errors import CatalogError

DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 128
MIN_CAPACITY = 1024


class VectorIndex:
    def __init__(self, index: hnswlib.Index, *, dim: int, M: int, ef_construction: int, ef: int,
                 version: int = 0):
        self._index = index
        self.dim = dim
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.version = version
        self._lock = threading.Lock()
        self._deleted: set[int] = set()
        self.dirty = False        # changed since the last save or load
        self._index.set_ef(ef)

    # ------------------------------------------------------------------ creation / persistence
    @classmethod
    def create(cls, dim: int, *, M: int = DEFAULT_M, ef_construction: int = DEFAULT_EF_CONSTRUCTION,
               ef: int = DEFAULT_EF, capacity: int = MIN_CAPACITY) -> "VectorIndex":
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=max(capacity, MIN_CAPACITY), M=M, ef_construction=ef_construction,
                         random_seed=100)
        return cls(index, dim=dim, M=M, ef_construction=ef_construction, ef=ef)

    @staticmethod
    def meta_path(path: Path) -> Path:
        return Path(path).with_suffix(".json")

    @classmethod
    def load(cls, path: Path, dim: int) -> "VectorIndex":
        path = Path(path)
        try:
            meta = json.loads(cls.meta_path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CatalogError(f"{cls.meta_path(path)}: index parameters unreadable ({exc})") from exc
        if meta.get("dim") != dim:
            raise CatalogError(f"{path}: index has dimension {meta.get('dim')}, catalog has {dim}")
        index = hnswlib.Index(space="ip", dim=dim)
        try:
            index.load_index(str(path), max_elements=int(meta.get("capacity", 0)))
        except (RuntimeError, OSError, MemoryError) as exc:
            raise CatalogError(f"{path}: index file unreadable ({exc})") from exc
        self = cls(index, dim=dim, M=int(meta["M"]), ef_construction=int(meta["ef_construction"]),
                   ef=int(meta.get("ef", DEFAULT_EF)), version=int(meta.get("version", 0)))
        self._deleted = set(int(i) for i in meta.get("deleted", []))
        return self

    @classmethod
    def load_or_create(cls, path: Path, dim: int) -> "VectorIndex":
        """Load the saved index; a missing or unreadable one starts empty at version 0, and the
        catalog refills it from the stored embeddings."""
        path = Path(path)
        if path.exists() and cls.meta_path(path).exists():
            try:
                return cls.load(path, dim)
            except CatalogError:
                pass
        return cls.create(dim)

    def save(self, path: Path) -> None:
        path = Path(path)
        tag = f".{os.getpid()}-{threading.get_ident()}.tmp"
        tmp = path.with_name(path.name + tag)
        meta_tmp = self.meta_path(path).with_name(self.meta_path(path).name + tag)
        with self._lock:
            self._index.save_index(str(tmp))
            meta = self.info()
            meta["deleted"] = sorted(self._deleted)
        # the sidecar is renamed last and names the version: if we die between the two renames the
        # index is newer than its sidecar says, and re-applying changes to it is harmless.
        meta_tmp.write_text(json.dumps(meta))
        _fsync(tmp)
        os.replace(tmp, path)
        os.replace(meta_tmp, self.meta_path(path))
        self.dirty = False

    def info(self) -> dict:
        return {
            "dim": self.dim, "M": self.M, "ef_construction": self.ef_construction, "ef": self.ef,
            "count": self._index.get_current_count() - len(self._deleted),
            "capacity": self._index.get_max_elements(), "version": self.version, "space": "cosine",
        }

    # ------------------------------------------------------------------ writes
    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Add or replace vectors (re-adding a removed id revives it)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"vectors of shape {vectors.shape}, expected ({len(ids)}, {self.dim})")
        with self._lock:
            need = self._index.get_current_count() + len(ids)
            if need > self._index.get_max_elements():
                self._index.resize_index(max(need, int(self._index.get_max_elements() * 1.5)))
            self._index.add_items(vectors, ids)
            self._deleted.difference_update(int(i) for i in ids)
            self.dirty = True

    def remove(self, ids: Sequence[int]) -> int:
        n = 0
        with self._lock:
            for i in ids:
                i = int(i)
                if i in self._deleted:
                    continue
                try:
                    self._index.mark_deleted(i)
                except RuntimeError:  # not in the index
                    continue
                self._deleted.add(i)
                self.dirty = True
                n += 1
        return n

    def set_ef(self, ef: int) -> None:
        with self._lock:
            self.ef = int(ef)
            self._index.set_ef(self.ef)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return self._index.get_current_count() - len(self._deleted)

    def query(self, vectors: np.ndarray, k: int, *, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids [N,k'], cosine similarities [N,k']) with k' = min(k, len(self)). ``ef`` overrides
        the search breadth for this call only (at least k)."""
        vectors = np.atleast_2d(np.ascontiguousarray(vectors, dtype=np.float32))
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros((len(vectors), 0), np.int64), np.zeros((len(vectors), 0), np.float32)
        with self._lock:
            want = max(k, int(ef)) if ef is not None else max(k, self.ef)
            if self._index.ef != want:
                self._index.set_ef(want)
            try:
                labels, dist = self._index.knn_query(vectors, k=k)
            finally:
                self._index.set_ef(self.ef)
        return labels.astype(np.int64), (1.0 - dist).astype(np.float32)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
