"""The HNSW index (hnswlib) over image embeddings.

Labels are catalog image ids. Vectors are L2-normalised and compared by inner product, so the
distance hnswlib returns is ``1 - cosine``. hnswlib does not persist ``ef`` and its write calls
(add, resize, mark_deleted) must not run while another thread queries, so every call goes through
one lock. Saves are atomic: write to a temporary file, then rename over the old one, with a JSON
sidecar holding the parameters and the catalog version the index reflects.

Large catalogs store less per image: a :class:`Projection` (PCA fitted on the catalog's own
embeddings, kept in the catalog database) maps the model's 1280-d embeddings to 512 dims. Of the
unit 512-d vector ``u`` the graph holds the leading ``GRAPH_DIM`` (128) dims, normalised, in
float32 (512 B); the other 384 dims are kept beside the graph as an int8 code with one scale per
image (:class:`_Side`). A query walks the graph in 128 dims, then scores every candidate with the
whole 512-d vector (graph part + code: an approximate cosine, far closer to the exact one than the
128-d graph's) and expands the best candidates with their stored nearest neighbours (``NEIGHBOURS``
per image, found at build time), which pulls in images the graph search misses. The vector store
reads the exact embeddings of the best ``RERANK_SHORTLIST`` only (``VectorStore.nearest``), so
scores are always exact cosines. An index records the projection it was built with (``projection`` in the
sidecar) and is rebuilt when the catalog's projection changes. docs/benchmarks.md has the
measurements behind every number here.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import hnswlib
import numpy as np

from .errors import CatalogError
from .faults import fault_point

# docs/benchmarks.md ("Index design") has the measurements behind these values.
DEFAULT_M = 32
DEFAULT_EF_CONSTRUCTION = 400
DEFAULT_EF = 256
MIN_CAPACITY = 1024
#: Dimensions a projection keeps: the graph holds the first GRAPH_DIM of them, an int8 code the rest.
PROJECTION_DIM = 512
GRAPH_DIM = 128
#: Nearest neighbours stored per image of a projected index, and how many of a query's best
#: candidates are expanded with theirs.
NEIGHBOURS = 8
EXPAND = 4
#: Graph neighbours fetched per image when its neighbour list is computed (scored with the codes).
_LINK_CANDIDATES = 32
_LINK_EF = 64


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
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(x) <= 8:
            # numpy's own loops, not BLAS: OpenBLAS threads a [1, D] @ [D, d] product, and on a
            # busy 2-core machine waking its threads took 9-12 ms instead of 0.07 ms
            y = np.einsum("nd,dk->nk", x, self.components)
        else:
            y = x @ self.components
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


class _Side:
    """What a projected index keeps beside its graph, one row per label ever added (rows of
    removed labels stay until the next rebuild, flagged dead): the label (rows sorted by it),
    ``head`` = the norm of the graph part of the unit vector, the int8 code of the rest with its
    scale, and the labels of the image's nearest neighbours (-1: none)."""

    def __init__(self, tail_dim: int, capacity: int = 0):
        self.n = 0
        cap = max(int(capacity), 16)
        self.labels = np.empty(cap, np.int64)
        self.head = np.empty(cap, np.float32)
        self.scale = np.empty(cap, np.float32)
        self.codes = np.empty((cap, tail_dim), np.int8)
        self.nbrs = np.full((cap, NEIGHBOURS), -1, np.int64)
        self.alive = np.zeros(cap, bool)
        self.linked = np.zeros(cap, bool)     # its neighbour list is computed

    _FIELDS = ("labels", "head", "scale", "codes", "nbrs", "alive", "linked")

    def _grow(self, need: int) -> None:
        cap = len(self.labels)
        if need <= cap:
            return
        cap = max(need, int(cap * 1.5))
        for name in self._FIELDS:
            old = getattr(self, name)
            new = np.empty((cap,) + old.shape[1:], old.dtype)
            new[:self.n] = old[:self.n]
            setattr(self, name, new)

    def slots(self, labels: np.ndarray) -> np.ndarray:
        """Rows of ``labels`` (all present)."""
        return np.searchsorted(self.labels[:self.n], labels)

    def find(self, labels: np.ndarray) -> np.ndarray:
        """Rows of ``labels``, -1 where absent."""
        labels = np.asarray(labels, np.int64)
        pos = np.searchsorted(self.labels[:self.n], labels)
        pos_c = np.minimum(pos, max(self.n - 1, 0))
        ok = (pos < self.n) & (self.labels[pos_c] == labels) if self.n else np.zeros(len(labels), bool)
        return np.where(ok, pos, -1)

    def put(self, labels: np.ndarray, head: np.ndarray, scale: np.ndarray, codes: np.ndarray) -> None:
        labels = np.asarray(labels, np.int64)
        labels, last = np.unique(labels[::-1], return_index=True)    # the last of repeated labels
        last = len(head) - 1 - last
        head, scale, codes = head[last], scale[last], codes[last]
        rows = self.find(labels)
        old = rows >= 0
        r = rows[old]
        self.head[r], self.scale[r], self.codes[r] = head[old], scale[old], codes[old]
        self.alive[r], self.linked[r] = True, False
        new = ~old
        m = int(new.sum())
        if not m:
            return
        self._grow(self.n + m)
        n = self.n
        sl = slice(n, n + m)
        self.labels[sl], self.head[sl], self.scale[sl], self.codes[sl] = labels[new], head[new], scale[new], codes[new]
        self.nbrs[sl], self.alive[sl], self.linked[sl] = -1, True, False
        self.n = n + m
        if n and labels[new][0] < self.labels[n - 1]:      # not appended in order: re-sort the rows
            order = np.argsort(self.labels[:self.n], kind="stable")
            for name in self._FIELDS:
                arr = getattr(self, name)
                arr[:self.n] = arr[:self.n][order]

    def kill(self, labels) -> None:
        rows = self.find(np.asarray(list(labels), np.int64))
        self.alive[rows[rows >= 0]] = False

    def to_arrays(self, token: str) -> dict:
        out = {name: getattr(self, name)[:self.n] for name in self._FIELDS}
        out["token"] = np.array(token)
        return out

    @classmethod
    def from_arrays(cls, z, tail_dim: int) -> "_Side":
        self = cls(tail_dim, 0)
        arrays = {name: z[name] for name in cls._FIELDS}      # used as read: no second copy
        n = len(arrays["labels"])
        if (arrays["codes"].shape != (n, tail_dim) or arrays["nbrs"].shape != (n, NEIGHBOURS)
                or any(len(a) != n for a in arrays.values())):
            raise ValueError("side data of another shape")
        for name, a in arrays.items():
            setattr(self, name, a)
        self.n = n
        return self


class VectorIndex:
    """``dim`` is the embedding dimension callers pass in; with a projection :meth:`add` and
    :meth:`query` project on the way in, the graph holds the first :attr:`graph_dim` projected
    dims and a :class:`_Side` store the rest (see the module docstring)."""

    def __init__(self, index: hnswlib.Index, *, dim: int, M: int, ef_construction: int, ef: int,
                 version: int = 0, projection: Projection | None = None, side: "_Side | None" = None):
        self._index = index
        self.dim = dim
        self.projection = projection
        self.graph_dim = graph_dim(projection) if projection is not None else dim
        self._side = side if side is not None or projection is None else _Side(projection.dim - self.graph_dim)
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.version = version
        self.catalog_id: str | None = None     # the catalog it was saved for (None: unknown)
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
        index = hnswlib.Index(space="ip", dim=graph_dim(projection) if projection else dim)
        index.init_index(max_elements=max(capacity, MIN_CAPACITY), M=M, ef_construction=ef_construction,
                         random_seed=100)
        side = _Side(projection.dim - graph_dim(projection), capacity) if projection else None
        return cls(index, dim=dim, M=M, ef_construction=ef_construction, ef=ef, projection=projection,
                   side=side)

    @property
    def stored_dim(self) -> int:
        """Dimensions of the vectors the graph holds."""
        return self.projection.dim if self.projection else self.dim

    @staticmethod
    def meta_path(path: Path) -> Path:
        return Path(path).with_suffix(".json")

    @staticmethod
    def side_path(path: Path) -> Path:
        return Path(path).with_suffix(".side.npz")

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
        if projection is not None and meta.get("graph_dim") != graph_dim(projection):
            raise CatalogError(f"{path}: index of an older layout (graph of {meta.get('stored_dim')} dims)")
        side = None
        if projection is not None:
            side_path = cls.side_path(path)
            try:
                with np.load(side_path, allow_pickle=False) as z:
                    if str(z["token"]) != meta.get("side"):
                        raise CatalogError(f"{side_path}: belongs to another index file")
                    side = _Side.from_arrays(z, projection.dim - graph_dim(projection))
            except (OSError, ValueError, KeyError) as exc:
                raise CatalogError(f"{side_path}: unreadable ({exc})") from exc
        if "file_crc32" in meta:
            # hnswlib trusts the file it loads (damaged bytes can crash the process): check it
            # against the checksum written with it first. An index saved before has none.
            try:
                found = file_checksum(path)
            except OSError as exc:
                raise CatalogError(f"{path}: index file unreadable ({exc.strerror or exc})") from exc
            if found != (meta.get("file_bytes"), meta.get("file_crc32")):
                raise CatalogError(f"{path}: index file and {cls.meta_path(path).name} do not match "
                                   "(its size or checksum differs: the file is damaged, or a save was cut short)")
        index = hnswlib.Index(space="ip", dim=graph_dim(projection) if projection else dim)
        try:
            index.load_index(str(path), max_elements=int(meta.get("capacity", 0)))
        except (RuntimeError, OSError, MemoryError) as exc:
            raise CatalogError(f"{path}: index file unreadable ({exc})") from exc
        if side is not None and side.n != index.get_current_count():
            raise CatalogError(f"{path}: index file and {cls.side_path(path).name} do not match "
                               f"({index.get_current_count()} elements, {side.n} rows)")
        elements = meta.get("elements")
        if elements is not None and int(elements) != index.get_current_count():
            # a crash between the two renames of save(): the sidecar belongs to another file
            raise CatalogError(f"{path}: index file and {cls.meta_path(path).name} do not match "
                               f"({index.get_current_count()} elements, sidecar says {elements})")
        self = cls(index, dim=dim, M=int(meta["M"]), ef_construction=int(meta["ef_construction"]),
                   ef=int(meta.get("ef", DEFAULT_EF)), version=int(meta.get("version", 0)),
                   projection=projection, side=side)
        self._deleted = set(int(i) for i in meta.get("deleted", []))
        self.catalog_id = meta.get("catalog_id")
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
        """Write the index atomically (temporary files, fsync, renames). Raises OSError (a full
        disk: ENOSPC) with the temporary files removed and the saved index left as it was."""
        path = Path(path)
        tag = f".{os.getpid()}-{threading.get_ident()}.tmp"
        tmp = path.with_name(path.name + tag)
        meta_tmp = self.meta_path(path).with_name(self.meta_path(path).name + tag)
        side_tmp = self.side_path(path).with_name(self.side_path(path).name + tag)
        try:
            self._write_temporary(tmp, meta_tmp, side_tmp)
        except BaseException:
            for p in (tmp, meta_tmp, side_tmp):
                p.unlink(missing_ok=True)
            raise
        fault_point("index-save-before-rename")
        os.replace(tmp, path)
        fault_point("index-save-between-renames")
        if self._side is not None:
            os.replace(side_tmp, self.side_path(path))
        os.replace(meta_tmp, self.meta_path(path))
        self.dirty = False

    def _write_temporary(self, tmp: Path, meta_tmp: Path, side_tmp: Path) -> None:
        with self._lock:
            self._link_pending()
            self._index.save_index(str(tmp))
            _check_written(tmp, self._index.get_current_count())
            meta = self.info()
            meta["file_bytes"], meta["file_crc32"] = file_checksum(tmp)
            meta["elements"] = self._index.get_current_count()
            meta["deleted"] = sorted(self._deleted)
            meta["catalog_id"] = self.catalog_id
            if self._side is not None:
                meta["side"] = secrets.token_hex(8)
                with open(side_tmp, "wb") as f:
                    np.savez(f, **self._side.to_arrays(meta["side"]))
        # the sidecar is renamed last and names the version: if we die between the renames the
        # index is newer than its sidecar says. Re-applying changes to it is harmless, and when
        # the element counts (or the side file's token) differ load() refuses the set and the
        # catalog rebuilds the index.
        meta_tmp.write_text(json.dumps(meta))
        _fsync(tmp)
        _fsync(meta_tmp)
        if self._side is not None:
            _fsync(side_tmp)

    def info(self) -> dict:
        return {
            "dim": self.dim, "M": self.M, "ef_construction": self.ef_construction, "ef": self.ef,
            "count": self._index.get_current_count() - len(self._deleted),
            "capacity": self._index.get_max_elements(), "version": self.version, "space": "cosine",
            "projection": self.projection.key if self.projection else None,
            "stored_dim": self.stored_dim, "graph_dim": self.graph_dim,
            "neighbours": NEIGHBOURS if self._side is not None else 0,
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
        parts = None
        if self.projection is not None:
            vectors, *parts = self._split(self.projection.apply(vectors))
        with self._lock:
            need = self._index.get_current_count() + len(ids)
            if need > self._index.get_max_elements():
                self._index.resize_index(max(need, int(self._index.get_max_elements() * 1.5)))
            self._index.add_items(vectors, ids)
            if parts is not None:
                self._side.put(ids, *parts)
            self._deleted.difference_update(int(i) for i in ids)
            self.dirty = True

    def _split(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Unit projected vectors -> (normalised graph part, its norm, code scale, int8 code)."""
        g = self.graph_dim
        head = u[:, :g]
        norm = np.linalg.norm(head, axis=1)
        graph = np.ascontiguousarray(head / np.maximum(norm, 1e-12)[:, None], dtype=np.float32)
        tail = u[:, g:]
        peak = np.abs(tail).max(axis=1) if tail.shape[1] else np.zeros(len(u), np.float32)
        scale = np.maximum(peak, 1e-12) / 127.0
        codes = np.clip(np.rint(tail / scale[:, None]), -127, 127).astype(np.int8)
        return graph, norm.astype(np.float32), scale.astype(np.float32), codes

    def _link_pending(self) -> None:
        """Compute the neighbour lists of the images added since the last call (under the lock):
        their graph neighbours, scored with the full projected vectors, best NEIGHBOURS kept."""
        side = self._side
        if side is None or side.n == 0:
            return
        rows = np.nonzero(~side.linked[:side.n] & side.alive[:side.n])[0]
        if rows.size == 0:
            return
        live = self._index.get_current_count() - len(self._deleted)
        kk = min(_LINK_CANDIDATES + 1, live)
        self._index.set_ef(max(_LINK_EF, kk))
        try:
            for part in np.array_split(rows, max(1, len(rows) // 2000)):
                labels = side.labels[part]
                graph = np.asarray(self._index.get_items(labels.tolist()), np.float32)
                while True:
                    try:
                        cand, dist = self._index.knn_query(graph, k=kk)
                        break
                    except RuntimeError:         # part of the graph unreachable: ask for fewer
                        if kk <= 2:
                            raise
                        kk //= 2
                cand = cand.astype(np.int64)
                crow = side.slots(cand)
                sims = self._scores(1.0 - dist, side.head[part][:, None], crow,
                                    side.codes[part].astype(np.float32) * side.scale[part][:, None])
                sims[cand == labels[:, None]] = -np.inf
                keep = np.argsort(-sims, axis=1, kind="stable")[:, :NEIGHBOURS]
                best = np.take_along_axis(cand, keep, 1)
                best[np.take_along_axis(sims, keep, 1) == -np.inf] = -1
                side.nbrs[part, :best.shape[1]] = best
                side.nbrs[part, best.shape[1]:] = -1
        finally:
            self._index.set_ef(self.ef)
        side.linked[rows] = True

    def _scores(self, graph_sims: np.ndarray, q_head: np.ndarray, rows: np.ndarray,
                q_tail: np.ndarray) -> np.ndarray:
        """Approximate cosines of the full projected vectors: graph part + code part.
        ``graph_sims`` [N, C] cosines of the graph parts, ``q_head`` [N, 1] the query's graph-part
        norm, ``rows`` [N, C] side rows of the candidates, ``q_tail`` [N, T] the query's code part."""
        side = self._side
        out = graph_sims * side.head[rows] * q_head
        if q_tail.shape[1]:
            codes = side.codes[rows].astype(np.float32)          # [N, C, T]
            out += np.einsum("nct,nt->nc", codes, q_tail) * side.scale[rows]
        return out.astype(np.float32)

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
            if self._side is not None:
                self._side.kill(ids)
        return n

    def set_ef(self, ef: int) -> None:
        with self._lock:
            self.ef = int(ef)
            self._index.set_ef(self.ef)

    # ------------------------------------------------------------------ queries
    def sample_ids(self, k: int) -> list[int]:
        """Up to ``k`` live labels spread evenly over the sorted labels (a cheap identity check:
        a projected index keeps its labels beside the graph)."""
        with self._lock:
            if self._side is not None:
                n = self._side.n
                labels = self._side.labels[:n][self._side.alive[:n]]
            else:
                labels = np.asarray(self._index.get_ids_list(), np.int64)
                if self._deleted:
                    labels = labels[~np.isin(labels, np.fromiter(self._deleted, np.int64))]
        labels = np.sort(labels)
        if len(labels) > k:
            labels = labels[np.linspace(0, len(labels) - 1, k).round().astype(np.int64)]
        return labels.tolist()

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

    def graph_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """What the graph holds for these embeddings (what :meth:`vectors` returns for them)."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if self.projection is None:
            return x
        return self._split(self.projection.apply(x))[0]

    def __len__(self) -> int:
        return self._index.get_current_count() - len(self._deleted)

    def query(self, vectors: np.ndarray, k: int, *, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids [N,k'], cosine similarities [N,k']) with k' = min(k, len(self)). With a
        projection the similarities are those of the projected vectors (approximate). ``ef``
        overrides the search breadth for this call only (at least k)."""
        vectors = np.atleast_2d(np.ascontiguousarray(vectors, dtype=np.float32))
        if self.projection is not None:
            return self._query_projected(vectors, k, ef)
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

    def _query_projected(self, vectors: np.ndarray, k: int, ef: int | None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Graph walk in ``graph_dim`` dims for ``max(k, ef)`` candidates, scored with the full
        projected vectors; the best ``EXPAND`` candidates' stored neighbours join them; the best
        ``k`` by that score are returned with it (an approximate cosine)."""
        u = self.projection.apply(vectors)
        g = self.graph_dim
        q_head = np.linalg.norm(u[:, :g], axis=1, keepdims=True)
        q_graph = np.ascontiguousarray(u[:, :g] / np.maximum(q_head, 1e-12), dtype=np.float32)
        side = self._side
        with self._lock:
            self._link_pending()
            live = self._index.get_current_count() - len(self._deleted)
            k = min(int(k), live)
            if k <= 0:
                return np.zeros((len(u), 0), np.int64), np.zeros((len(u), 0), np.float32)
            want = max(k, int(ef) if ef is not None else self.ef)
            walk = min(want, live)
            if self._index.ef != want:
                self._index.set_ef(want)
            try:
                try:
                    labels, dist = self._index.knn_query(q_graph, k=walk)
                except RuntimeError:          # fewer than `walk` reachable: the k asked for, or raise
                    if walk == k:
                        raise
                    labels, dist = self._index.knn_query(q_graph, k=k)
            finally:
                self._index.set_ef(self.ef)
            labels = labels.astype(np.int64)
            rows = side.slots(labels)
            q_tail = u[:, g:]
            sims = np.concatenate([self._scores(1.0 - dist[c:c + 64], q_head[c:c + 64], rows[c:c + 64],
                                                q_tail[c:c + 64]) for c in range(0, len(u), 64)])
            out_ids = np.empty((len(u), k), np.int64)
            out_sims = np.empty((len(u), k), np.float32)
            for i in range(len(u)):
                cand, cs = labels[i], sims[i]
                if EXPAND and NEIGHBOURS:
                    best = rows[i, np.argpartition(-cs, min(EXPAND, len(cs) - 1))[:EXPAND]]
                    extra = np.unique(side.nbrs[best].ravel())
                    extra = extra[extra >= 0]
                    erow = side.find(extra)
                    ok = erow >= 0
                    ok[ok] = side.alive[erow[ok]]
                    extra, erow = extra[ok], erow[ok]
                    new = ~np.isin(extra, cand)
                    extra, erow = extra[new], erow[new]
                    if extra.size:
                        eg = np.asarray(self._index.get_items(extra.tolist()), np.float32) @ q_graph[i]
                        es = self._scores(eg[None], q_head[i:i + 1], erow[None], q_tail[i:i + 1])[0]
                        cand, cs = np.concatenate([cand, extra]), np.concatenate([cs, es])
                top = np.argsort(-cs, kind="stable")[:k]
                out_ids[i], out_sims[i] = cand[top], cs[top]
        return out_ids, out_sims


def graph_dim(projection: Projection) -> int:
    """Dimensions of a projected index's graph: the leading GRAPH_DIM of the projection."""
    return min(GRAPH_DIM, projection.dim)


def _check_projection(projection: Projection | None, dim: int) -> None:
    if projection is not None and projection.input_dim != dim:
        raise ValueError(f"projection maps {projection.input_dim} dims, index takes {dim}")


#: hnswlib's save_index: a 96-byte header, then per element its level-0 record (the size the
#: header names at byte 24) and a 4-byte size of its upper-level links.
_HNSW_HEADER = 96


def _check_written(path: Path, elements: int) -> None:
    """hnswlib's save_index ignores write errors (a full disk leaves a short file without an
    exception): refuse a file shorter than its own header says it must be, or one written as the
    disk filled up, as ENOSPC."""
    size = os.path.getsize(path)
    per_element = 0
    if size >= _HNSW_HEADER:
        with open(path, "rb") as f:
            f.seek(24)
            per_element = int.from_bytes(f.read(8), "little")
    short = size < _HNSW_HEADER or size < _HNSW_HEADER + elements * (per_element + 4)
    full = False
    if hasattr(os, "statvfs"):          # (POSIX only)
        st = os.statvfs(path)
        full = st.f_blocks > 0 and (st.f_bavail == 0 or st.f_bfree == 0)   # (0 blocks: not reported)
    if short or full:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def file_checksum(path: Path) -> tuple[int, int]:
    """(size in bytes, CRC-32) of a file, read in 1 MiB blocks (CRC-32 runs at several GB/s: a
    100k-image index of 0.5 GB adds about 0.15 s to its load)."""
    crc = 0
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return size, crc


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
