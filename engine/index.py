"""The HNSW index (hnswlib) over image embeddings.

Labels are catalog image ids. Vectors are L2-normalised and compared by inner product, so the
distance hnswlib returns is ``1 - cosine``. hnswlib does not persist ``ef`` and its write calls
(add, resize, mark_deleted) must not run while another thread queries, so every call goes through
one lock. Saves are atomic: write to a temporary file, then rename over the old one, with a JSON
sidecar holding the parameters and the catalog version the index reflects.

Large catalogs store less per image: a :class:`Projection` (PCA fitted on the catalog's own
embeddings, kept in the catalog database) maps the model's 1280-d embeddings to 256 dims before
they enter the graph (1 KB of vector per image instead of 5 KB). The index then yields a shortlist
whose order is approximate; the catalog re-ranks it with the stored full-precision embeddings
(``Catalog.nearest``), so scores are always exact cosines. An index records the projection it was
built with (``projection`` in the sidecar) and is rebuilt when the catalog's projection changes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import hnswlib
import numpy as np

from .errors import CatalogError
from .faults import fault_point

# At 100k projected vectors M=32/ef_construction=400 re-ranks to recall@10 0.986 at ef 256 where
# M=16/200 gives 0.971 (M=24/300: 0.982), for 128 more bytes per image (docs/benchmarks.md).
DEFAULT_M = 32
DEFAULT_EF_CONSTRUCTION = 400
DEFAULT_EF = 256
MIN_CAPACITY = 1024
#: Dimensions a projection keeps (see docs/benchmarks.md for the measurements behind it).
PROJECTION_DIM = 256


@dataclass(frozen=True, eq=False)
class Projection:
    """A linear map from embeddings (``D`` dims) to ``d`` dims: ``y = normalise(x @ components)``.

    ``components`` are the top ``d`` eigenvectors of the embeddings' second-moment matrix
    (uncentred PCA): for unit vectors it is the rank-``d`` subspace that best preserves their
    inner products, which is what the index ranks by. Outputs are L2-normalised so the index
    stays a cosine index (the stored full embeddings re-rank the shortlist exactly).
    """

    components: np.ndarray          # [D, d] float32, orthonormal columns
    fitted_on: int                  # number of embeddings it was fitted on
    explained: float = 0.0          # share of the second moment the d components keep

    @property
    def input_dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def __post_init__(self) -> None:
        h = hashlib.blake2b(np.ascontiguousarray(self.components, np.float32).tobytes(), digest_size=8)
        object.__setattr__(self, "_key", h.hexdigest())

    @property
    def key(self) -> str:
        """A fingerprint naming this exact projection (an index built with another is rebuilt)."""
        return self._key

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int = PROJECTION_DIM, *, fitted_on: int | None = None
            ) -> "Projection":
        """Fit on ``vectors`` [N, D] (a random sample of the catalog is enough)."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError("need at least two vectors to fit a projection")
        dim = int(min(dim, x.shape[1]))
        second = (x.T.astype(np.float64) @ x.astype(np.float64)) / len(x)
        values, vectors_ = np.linalg.eigh(second)          # ascending
        order = np.argsort(values)[::-1][:dim]
        comps = vectors_[:, order]
        # a deterministic sign per component, so refitting the same data gives the same key
        signs = np.sign(comps[np.argmax(np.abs(comps), axis=0), np.arange(dim)])
        comps = comps * np.where(signs == 0, 1, signs)
        explained = float(values[order].sum() / max(values.sum(), 1e-30))
        return cls(np.ascontiguousarray(comps, dtype=np.float32),
                   int(fitted_on if fitted_on is not None else len(x)), explained)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        y = np.atleast_2d(np.asarray(vectors, dtype=np.float32)) @ self.components
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        np.maximum(norms, 1e-12, out=norms)
        return np.ascontiguousarray(y / norms, dtype=np.float32)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, components=self.components, fitted_on=np.int64(self.fitted_on),
                 explained=np.float64(self.explained))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Projection":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(np.ascontiguousarray(z["components"], dtype=np.float32), int(z["fitted_on"]),
                       float(z["explained"]))


class VectorIndex:
    """``dim`` is the embedding dimension callers pass in; with a projection the graph holds
    ``projection.dim``-dimensional vectors and :meth:`add`/:meth:`query` project on the way in."""

    def __init__(self, index: hnswlib.Index, *, dim: int, M: int, ef_construction: int, ef: int,
                 version: int = 0, projection: Projection | None = None):
        self._index = index
        self.dim = dim
        self.projection = projection
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
               ef: int = DEFAULT_EF, capacity: int = MIN_CAPACITY,
               projection: Projection | None = None) -> "VectorIndex":
        _check_projection(projection, dim)
        index = hnswlib.Index(space="ip", dim=projection.dim if projection else dim)
        index.init_index(max_elements=max(capacity, MIN_CAPACITY), M=M, ef_construction=ef_construction,
                         random_seed=100)
        return cls(index, dim=dim, M=M, ef_construction=ef_construction, ef=ef, projection=projection)

    @property
    def stored_dim(self) -> int:
        """Dimensions of the vectors the graph holds."""
        return self.projection.dim if self.projection else self.dim

    @staticmethod
    def meta_path(path: Path) -> Path:
        return Path(path).with_suffix(".json")

    @classmethod
    def load(cls, path: Path, dim: int, projection: Projection | None = None) -> "VectorIndex":
        path = Path(path)
        _check_projection(projection, dim)
        try:
            meta = json.loads(cls.meta_path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CatalogError(f"{cls.meta_path(path)}: index parameters unreadable ({exc})") from exc
        if meta.get("dim") != dim:
            raise CatalogError(f"{path}: index has dimension {meta.get('dim')}, catalog has {dim}")
        want = projection.key if projection else None
        if meta.get("projection") != want:
            raise CatalogError(f"{path}: index was built with another projection "
                               f"({meta.get('projection')}, catalog has {want})")
        index = hnswlib.Index(space="ip", dim=projection.dim if projection else dim)
        try:
            index.load_index(str(path), max_elements=int(meta.get("capacity", 0)))
        except (RuntimeError, OSError, MemoryError) as exc:
            raise CatalogError(f"{path}: index file unreadable ({exc})") from exc
        elements = meta.get("elements")
        if elements is not None and int(elements) != index.get_current_count():
            # a crash between the two renames of save(): the sidecar belongs to another file
            raise CatalogError(f"{path}: index file and {cls.meta_path(path).name} do not match "
                               f"({index.get_current_count()} elements, sidecar says {elements})")
        self = cls(index, dim=dim, M=int(meta["M"]), ef_construction=int(meta["ef_construction"]),
                   ef=int(meta.get("ef", DEFAULT_EF)), version=int(meta.get("version", 0)),
                   projection=projection)
        self._deleted = set(int(i) for i in meta.get("deleted", []))
        return self

    @classmethod
    def load_or_create(cls, path: Path, dim: int, projection: Projection | None = None,
                       **params) -> "VectorIndex":
        """Load the saved index; a missing or unreadable one (or one built with another
        projection) starts empty at version 0, and the catalog refills it from the stored
        embeddings."""
        path = Path(path)
        if path.exists() and cls.meta_path(path).exists():
            try:
                return cls.load(path, dim, projection)
            except CatalogError:
                pass
        return cls.create(dim, projection=projection, **params)

    def save(self, path: Path) -> None:
        path = Path(path)
        tag = f".{os.getpid()}-{threading.get_ident()}.tmp"
        tmp = path.with_name(path.name + tag)
        meta_tmp = self.meta_path(path).with_name(self.meta_path(path).name + tag)
        with self._lock:
            self._index.save_index(str(tmp))
            meta = self.info()
            meta["elements"] = self._index.get_current_count()
            meta["deleted"] = sorted(self._deleted)
        # the sidecar is renamed last and names the version: if we die between the two renames the
        # index is newer than its sidecar says. Re-applying changes to it is harmless, and when
        # the element counts differ load() refuses the pair and the catalog rebuilds the index.
        meta_tmp.write_text(json.dumps(meta))
        _fsync(tmp)
        _fsync(meta_tmp)
        fault_point("index-save-before-rename")
        os.replace(tmp, path)
        fault_point("index-save-between-renames")
        os.replace(meta_tmp, self.meta_path(path))
        self.dirty = False

    def info(self) -> dict:
        return {
            "dim": self.dim, "M": self.M, "ef_construction": self.ef_construction, "ef": self.ef,
            "count": self._index.get_current_count() - len(self._deleted),
            "capacity": self._index.get_max_elements(), "version": self.version, "space": "cosine",
            "projection": self.projection.key if self.projection else None,
            "stored_dim": self.stored_dim,
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
        if self.projection is not None:
            vectors = self.projection.apply(vectors)
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
                except RuntimeError as exc:
                    if "already deleted" not in str(exc):
                        continue          # not in the index
                    # deleted in the file but not in our list (a sidecar older than the file)
                self._deleted.add(i)
                self.dirty = True
                n += 1
        return n

    def set_ef(self, ef: int) -> None:
        with self._lock:
            self.ef = int(ef)
            self._index.set_ef(self.ef)

    # ------------------------------------------------------------------ queries
    def ids(self) -> set[int]:
        """The labels of the live (not deleted) vectors."""
        with self._lock:
            return set(int(i) for i in self._index.get_ids_list()) - self._deleted

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of live ``ids`` (KeyError-free: ids must come from :meth:`ids`)."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            return np.asarray(self._index.get_items(list(map(int, ids))), dtype=np.float32)

    def __len__(self) -> int:
        return self._index.get_current_count() - len(self._deleted)

    def query(self, vectors: np.ndarray, k: int, *, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids [N,k'], cosine similarities [N,k']) with k' = min(k, len(self)). With a
        projection the similarities are those of the projected vectors (approximate). ``ef``
        overrides the search breadth for this call only (at least k)."""
        vectors = np.atleast_2d(np.ascontiguousarray(vectors, dtype=np.float32))
        if self.projection is not None:
            vectors = self.projection.apply(vectors)
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


def _check_projection(projection: Projection | None, dim: int) -> None:
    if projection is not None and projection.input_dim != dim:
        raise ValueError(f"projection maps {projection.input_dim} dims, index takes {dim}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
