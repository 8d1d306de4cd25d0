"""The catalog's vector store: nearest-neighbour search over the stored image embeddings.

It keeps the HNSW index file (engine.index) in step with the catalog database: the index records
the catalog version it reflects and is brought up to date from the database (new and changed
embeddings, removal tombstones) on use, so an index left behind by a crash or by another process
is never trusted blindly; the embeddings live in the database, so it can always be rebuilt. Large
catalogs get a PCA projection (fitted on a sample, stored in the database) and their shortlists
are re-ranked with the stored full embeddings, so returned cosines are exact.

Only the process holding the catalog's write lock writes the index files: a reader (a search, a
check, the desktop between imports) brings a stale index up to date, or rebuilds it, in memory
only. An index carries the catalog's identity (``meta.catalog_id``) and, on open, a few of its
vectors are compared with the stored embeddings, so another catalog's index files (even with the
same count and version) are rebuilt instead of trusted.

Everything here reaches the database through the Catalog's methods. A server backend replaces
this object behind the same interface: ``nearest``, ``index``, ``sync``, ``save``, ``rebuild``,
``remove``, the projection methods, ``close``.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .catalog_storage import storage_error
from .errors import CatalogError
from .index import GRAPH_DIM, PROJECTION_DIM, Projection, VectorIndex

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)

#: A catalog this large gets a PCA projection for its index (below it, full dims cost little RAM:
#: 10k x 5 KB = 50 MB). See docs/benchmarks.md.
PROJECTION_MIN_IMAGES = 10_000
#: Refit (and rebuild the index) when the catalog has grown this many times since the last fit.
PROJECTION_REFIT_GROWTH = 4
#: Embeddings sampled to fit the projection.
PROJECTION_SAMPLE = 50_000
#: Candidates fetched from a projected index (ranked there by its in-memory codes) and re-ranked
#: with the stored embeddings, at least (docs/benchmarks.md: at 1M the code's top 32 holds 99.7 %
#: of the exact top 10 when the candidates hold them).
RERANK_SHORTLIST = 32
#: Vectors of a loaded index compared with the stored embeddings on open (its identity check).
IDENTITY_SAMPLE = 8


class VectorStore:
    """The HNSW index of one catalog (``catalog.vectors``): loaded on first use, kept up to date
    with the database, saved only by the process holding the catalog's write lock (:meth:`save`,
    :meth:`rebuild` and :meth:`remove` take it when it is free). Thread-safe."""

    def __init__(self, catalog: "Catalog", path: Path | None = None, *, cache: bool = False):
        """``cache``: the file is derived and optional (a Milvus catalog's scan graph index): it is
        saved even by a read-only catalog object while the write lock is free, and a failure to
        save it is logged, not raised."""
        self.catalog = catalog
        self.path = path or catalog.index_path
        self.cache = cache
        self._index: VectorIndex | None = None
        self._index_lock = threading.Lock()
        self._sync_lock = threading.RLock()     # one thread applies database changes to the index
        self._projection: Projection | None = None

    def close(self) -> None:
        """Forget the loaded index (the catalog is closing)."""
        with self._index_lock:
            self._index = None

    # ------------------------------------------------------------------ searching
    def nearest(self, vectors: np.ndarray, k: int, *, shortlist: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest images of each query embedding: (ids [N,k'], cosines [N,k']).
        With a projected index, the index's best ``max(shortlist, RERANK_SHORTLIST, k)``
        candidates (by its in-memory approximate cosines) are re-ranked with the stored
        full-precision embeddings, so the cosines are exact."""
        index = self.index()
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if index is None or len(index) == 0:
            return np.zeros((len(vectors), 0), np.int64), np.zeros((len(vectors), 0), np.float32)
        if index.projection is None:
            return index.query(vectors, k)
        ids, _ = index.query(vectors, max(k, shortlist or 0, RERANK_SHORTLIST))
        k = min(k, ids.shape[1])
        out_ids = np.empty((len(vectors), k), np.int64)
        out_sims = np.empty((len(vectors), k), np.float32)
        for row, (cand, q) in enumerate(zip(ids, vectors)):
            sims = self.catalog.embeddings(cand.tolist()) @ q
            order = np.argsort(-sims, kind="stable")[:k]
            out_ids[row], out_sims[row] = cand[order], sims[order]
        return out_ids, out_sims

    # ------------------------------------------------------------------ the index
    def loaded(self) -> VectorIndex | None:
        """The index if it is loaded already (never loads it)."""
        with self._index_lock:
            return self._index

    def index(self) -> VectorIndex | None:
        """The HNSW index, loaded on first use and brought up to date with the database.
        None while the catalog holds no images."""
        with self._index_lock:
            key = self.projection_key()
            if self._index is not None and (self._index.projection.key if self._index.projection
                                            else None) != key:
                self._index = None          # another process refitted the projection
            if self._index is None:
                dim = self.catalog.embedding_dim
                if dim is None:
                    return None
                self._index = self._open(dim)
                return self._index
            index = self._index
        self.sync(index)
        return index

    def filtered_nearest(self, vectors: np.ndarray, k: int, filters) -> None:
        """None: the HNSW index cannot filter inside its search, so a search whose filters are
        too selective for the nearest images scans the records (engine.search); a Milvus catalog
        filters in Milvus (engine.milvus_store)."""
        return None

    def graph_index(self) -> VectorIndex | None:
        """The index the duplicate scan's kNN self-join queries (every image's neighbours): this
        catalog's own index."""
        return self.index()

    def _open(self, dim: int) -> VectorIndex:
        """Load the saved index and check it against the database (the cheap consistency check
        on open): an index claiming a version the database never reached (a restored or replaced
        database), whose vector count differs from the image count once brought up to date (a
        damaged or mismatched file), or that is another catalog's (:meth:`_foreign`), is rebuilt
        from the stored embeddings; saved only by the thread inside ``catalog.writer()``."""
        catalog = self.catalog
        index = VectorIndex.load_or_create(self.path, dim, self.projection())
        with self.snapshot():
            version = catalog.version
            if index.version > version:
                reason = f"index is at version {index.version}, the database at {version}"
            else:
                self._sync_locked(index, save=False)
                count = catalog.count_images()
                if len(index) == count:
                    reason = self._foreign(index)
                else:
                    reason = f"index holds {len(index)} vectors for {count} images"
            if reason is not None:
                log.warning("%s: %s; rebuilding it from the stored embeddings%s", self.path, reason,
                            "" if catalog.holds_write_lock else
                            " in memory (`lookalike check --repair` saves it)")
                index = VectorIndex.create(dim, ef=index.ef, M=index.M, ef_construction=index.ef_construction,
                                           capacity=catalog.count_images(), projection=self.projection())
                self._sync_locked(index, save=False)
        if index.dirty and catalog.holds_write_lock:
            self._save(index)
        return index

    def _foreign(self, index: VectorIndex) -> str | None:
        """Why a loaded index that matches the database's count is not this catalog's, or None:
        its sidecar names another catalog, or sampled vectors differ from the stored embeddings
        (another catalog's files, same count and version: the same image ids, other images)."""
        mine = self.catalog.meta("catalog_id")
        if index.catalog_id and mine and index.catalog_id != mine:
            return f"index belongs to catalog {index.catalog_id}, not to this one ({mine})"
        ids = index.sample_ids(IDENTITY_SAMPLE)
        if not ids:
            return None
        try:
            want = index.graph_vectors(self.catalog.embeddings(ids))
        except CatalogError:
            return "index holds images the database does not"
        except ValueError:          # damaged stored embeddings: `check` reports them
            return None
        if float(np.abs(index.vectors(ids) - want).max()) > 1e-4:
            return "index vectors differ from the stored embeddings (another catalog's index)"
        return None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Hold off other threads' syncs and read the database in one consistent snapshot for
        the block (comparing an index with the database)."""
        with self._sync_lock, self.catalog.read_snapshot():
            yield

    def sync(self, index: VectorIndex | None = None, *, save: bool | None = None) -> int:
        """Apply database changes newer than the index's version (the loaded index by default).
        Returns the number applied. ``save`` None: save only from the thread holding the catalog's
        write lock (a reader keeps the changes in memory)."""
        if index is None:      # (not `index or`: an empty index is falsy)
            index = self.loaded()
        if index is None:
            return 0
        with self._sync_lock:
            return self._sync_locked(index, save)

    def _sync_locked(self, index: VectorIndex, save: bool | None) -> int:
        catalog = self.catalog
        target = catalog.version
        if index.version >= target:
            if save and index.dirty:
                self._save(index)
            return 0
        changed = 0
        gone = catalog.removed_since(index.version)
        if gone:
            changed += index.remove(gone)
        for ids, vecs in catalog.iter_embeddings(since_version=index.version):
            index.add(ids, vecs)
            changed += len(ids)
        index.version = target
        if save is None:
            save = catalog.holds_write_lock
        if save and (changed or index.dirty):
            self._save(index)
        return changed

    def save(self) -> None:
        """Bring the index up to date with what was committed and save it, loading it first (an
        import must leave a saved index behind, not a first search that builds it)."""
        if self.index() is not None:
            self.sync(save=True)

    def _save(self, index: VectorIndex) -> None:
        """Save the index, only while holding the write lock (taken here when free): a process
        that merely reads never writes the index files; the writer does. A full disk or an
        unwritable folder is one line; the saved index is left as it was."""
        catalog = self.catalog
        if catalog.readonly and not self.cache:
            return
        try:
            with self._sync_lock, catalog.write_lock_if_free(for_cache=self.cache) as mine:
                if mine:                       # else another process writes; it saves the index
                    index.catalog_id = catalog.meta("catalog_id")
                    try:
                        index.save(self.path)
                    except OSError as exc:  # a stale index is recovered from the database on next open
                        raise storage_error(exc, catalog.directory) or CatalogError(
                            f"{self.path}: cannot save the index ({exc.strerror})") from exc
        except CatalogError as exc:
            if not self.cache:
                raise
            log.info("%s; the index stays in memory", exc)

    def rebuild(self, **params) -> VectorIndex:
        """Build a fresh index from the stored embeddings and save it."""
        catalog = self.catalog
        dim = catalog.embedding_dim
        if dim is None:
            raise CatalogError(f"{catalog.directory}: catalog is empty, nothing to index")
        index = VectorIndex.create(dim, projection=self.projection(),
                                   capacity=max(catalog.count_images(), 1), **params)
        for ids, vecs in catalog.iter_embeddings():
            index.add(ids, vecs)
        index.version = catalog.version
        self._save(index)
        with self._index_lock:
            self._index = index
        return index

    def remove(self, image_ids: list[int]) -> None:
        """Drop removed images from the loaded index at once and save it (the tombstones in the
        database do the same for an index loaded later)."""
        index = self.loaded()
        if index is not None:
            index.remove(image_ids)
            self._save(index)

    def delete_files(self) -> bool:
        """Delete the saved index files; returns whether there was an index file."""
        existed = self.path.exists()
        for p in (self.path, VectorIndex.meta_path(self.path), VectorIndex.side_path(self.path)):
            p.unlink(missing_ok=True)
        return existed

    # ------------------------------------------------------------------ projection
    def projection_key(self) -> str | None:
        return self.catalog.stored_projection_key()

    def projection(self) -> Projection | None:
        """The catalog's PCA projection for its index, or None (full dims)."""
        key = self.projection_key()
        if key is None:
            return None
        if self._projection is None or self._projection.key != key:
            self._projection = Projection.from_bytes(self.catalog.stored_projection())
        return self._projection

    def projection_due(self) -> bool:
        catalog = self.catalog
        dim = catalog.embedding_dim
        if dim is None or dim <= GRAPH_DIM:
            return False                       # nothing to gain
        n = catalog.count_images()
        current = self.projection()
        if current is None:
            return n >= PROJECTION_MIN_IMAGES
        if current.dim < min(PROJECTION_DIM, dim) and n >= PROJECTION_MIN_IMAGES:
            return True                        # fitted for an older, narrower index layout
        return n >= PROJECTION_REFIT_GROWTH * current.fitted_on

    def fit_projection(self, *, dim: int | None = None, sample: int = PROJECTION_SAMPLE,
                       seed: int = 0, **index_params) -> Projection:
        """Fit a PCA projection on a sample of the stored embeddings, store it and rebuild the
        index with it (minutes for a million images: done rarely, see :meth:`projection_due`)."""
        catalog = self.catalog
        with catalog.writer():
            ids = np.array(catalog.image_ids(), np.int64)
            if len(ids) < 2:
                raise CatalogError(f"{catalog.directory}: too few images to fit a projection")
            rng = np.random.default_rng(seed)
            pick = np.sort(rng.choice(ids, size=min(sample, len(ids)), replace=False))
            projection = Projection.fit(catalog.embeddings(pick.tolist()), dim or PROJECTION_DIM,
                                        fitted_on=len(ids))
            catalog.store_projection(projection.key, projection.to_bytes(), projection.fitted_on)
            self._projection = projection
            self.rebuild(**index_params)
        return projection

    def maybe_fit_projection(self) -> Projection | None:
        """Fit (or refit) the projection when the catalog has outgrown the current one."""
        if self.catalog.readonly or not self.projection_due():
            return None
        return self.fit_projection()
