"""A catalog's vectors in Milvus: ``catalog.vectors`` when the catalog's
``meta.vector_store`` names a Milvus backend (engine.paths.catalog_location):

* ``milvus-lite``: Milvus Lite in the catalog folder (``vectors.milvus.db``), collection
  ``lookalike_<catalog id>``, index FLAT below ``IVF_MIN_IMAGES`` images, else IVF_FLAT;
* ``milvus://HOST:PORT/NAME``: a Milvus server, collection NAME, index HNSW.

The catalog's SQLite database stays the record store (products, images and their embeddings,
local features, decisions); Milvus holds one row per image: its id, its unit embedding (metric IP
= cosine) and the scalar fields filters use (product_id, category, brand, price, group_id), so a
later step can push filters down. It is kept in step like the HNSW index (engine.vector_store):
``meta.milvus_version`` records the catalog version the collection reflects (written once the
rows are durable, so a crash between leaves it behind, never ahead: the sync is idempotent); only the
process holding the catalog's write lock writes Milvus. A reader whose collection is behind (or
that cannot open it: Milvus Lite is one process at a time) searches it without the images changed
since, and those exactly over their stored embeddings, merged: answers stay correct, only slower.
The collection is marked with its catalog's id (``OWNER_PROPERTY``); another catalog (a second
desktop's records) neither writes nor searches it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .errors import CatalogBusyError, CatalogError
from .milvus_filters import filter_expression
from .paths import LITE_FILE, LITE_SCHEME, SERVER_SCHEME
from .vector_store import VectorStore

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)

VERSION_KEY = "milvus_version"
SYNCED_AT_KEY = "milvus_synced_at"
INDEX_KEY = "milvus_index"
BACKEND_KEY = "vector_store"
INSTALL_HINT = 'pip install "lookalike[milvus]"'
#: Below this many images Milvus Lite scans every vector (FLAT: exact, a few ms); above, IVF_FLAT.
IVF_MIN_IMAGES = 5_000
#: IVF lists per sqrt(images) (nlist ~ 4 sqrt(n), 1265 at 100k) and the share probed per query,
#: at least ``NPROBE_MIN``: at 100k, recall@10 vs exact 0.9915 for stored rows among their
#: look-alikes (the local HNSW index's 0.991), 1.0 for real photos (docs/milvus.md)
NLIST_PER_ROOT = 4
NPROBE_SHARE = 1 / 5
NPROBE_MIN = 32
#: HNSW on a server: graph degree and build breadth (the local index's choices, engine.index), and
#: search breadth: at 100k on a Milvus 2.3.5 server, recall@10 vs exact for stored rows among
#: their look-alikes 0.9665 at ef 256, 0.974 at 512 (nearest p50 7.5 / 10.2 ms); real copy photos
#: 0.999 either way (docs/milvus.md).
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF = 32, 200, 512
#: Rows per upsert, and query rows x k per search call (Milvus caps nq and topk at 16384).
UPSERT_BATCH = 2_000
SEARCH_CELLS = 65_536
ID_RANGE = 10_000
MAX_TOPK = 16_384
#: A reader behind by more than this many images searches them from the stored embeddings in
#: batches instead of keeping them in memory.
DELTA_IN_MEMORY = 20_000
SCALARS = ("product_id", "category", "brand", "group_id")
#: a filtered search scores the images that pass exactly when at most this many do (their ids from
#: a scalar query, their embeddings from the records), else asks Milvus with the filter
FILTER_EXACT_MAX = 4_096
#: the duplicate scan's local kNN graph index, in the catalog's records folder (:meth:`graph_index`)
GRAPH_FILE = "scan-graph.hnsw"
#: Collection property naming the catalog (its ``catalog_id``) whose records the rows mirror: the
#: ids are that catalog's image ids, so another catalog must neither search nor overwrite them.
OWNER_PROPERTY = "lookalike.catalog_id"
CONNECT_TIMEOUT = 5.0
#: a server with authentication on: "USER:PASSWORD" or an API key, from the environment (never
#: stored in the catalog, whose meta names the server)
TOKEN_ENV = "LOOKALIKE_MILVUS_TOKEN"
#: A server's searches: "Strong" consistency waits for the server's time tick, about 390 ms a
#: search on Milvus 2.3.5 standalone against 6.7 ms for "Session" or "Bounded" (docs/milvus.md).
#: The process that made the last sync reads its own writes ("Session"); another process searches
#: "Bounded" (Milvus's default staleness: 5 s) once the last sync is older than this, "Strong"
#: before.
BOUNDED_AFTER_S = 30.0
_lite_users: dict[str, int] = {}        # Milvus Lite files open in this process -> users
_lite_lock = threading.Lock()


def milvus_error(uri: str, exc: BaseException) -> CatalogError:
    """One line naming the backend."""
    text = " ".join(str(getattr(exc, "message", "") or exc).split())
    return CatalogError(f"{uri}: Milvus error: {text[:300]}")


def _pymilvus():
    try:
        import pymilvus
    except ImportError as exc:
        raise CatalogError(f"this catalog keeps its vectors in Milvus: {INSTALL_HINT}") from exc
    return pymilvus


def store_for(catalog: "Catalog"):
    """The vector store ``meta.vector_store`` names: the HNSW index, or a MilvusVectorStore."""
    from .vector_store import VectorStore

    backend = catalog.meta(BACKEND_KEY) or ""
    try:
        return MilvusVectorStore(catalog, backend) if backend else VectorStore(catalog)
    except CatalogError:
        catalog.close()                  # (called while opening: the caller gets no catalog)
        raise


def claim_backend(catalog: "Catalog", backend: str) -> None:
    """Give a catalog opened as ``milvus-lite:PATH`` / ``milvus://...`` that backend: a new (empty)
    catalog takes it; one already using another is a one-line error (move it with ``vectors``)."""
    current = catalog.meta(BACKEND_KEY) or ""
    if current == backend:
        return
    try:
        if catalog.count_images() or catalog.readonly:
            raise CatalogError(f"{catalog.directory}: its vectors are in {current or 'the local index'}"
                               f", not {backend}: move them with `lookalike vectors --to ...`")
        _pymilvus()
        with catalog.writer():
            catalog.set_meta(BACKEND_KEY, backend)
            catalog.set_meta(VERSION_KEY, "-1")
    except CatalogError:
        catalog.close()
        raise
    catalog.vectors.close()
    catalog.vectors = store_for(catalog)


def best_nlist(n: int) -> int:
    return max(1, min(65_536, round(NLIST_PER_ROOT * math.sqrt(max(n, 1)))))


def best_nprobe(nlist: int) -> int:
    return min(nlist, max(NPROBE_MIN, math.ceil(nlist * NPROBE_SHARE)))


class MilvusIndex:
    """What the search and the duplicate scan use of an index: ``len``, ``query``, ``projection``."""

    projection = None

    def __init__(self, store: "MilvusVectorStore", count: int):
        self.store, self.count = store, count

    def __len__(self) -> int:
        return self.count

    def query(self, vectors: np.ndarray, k: int, *, ef: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        return self.store.nearest(vectors, k)

    def info(self) -> dict:
        return self.store.info()


class MilvusVectorStore:
    """``catalog.vectors`` kept in a Milvus collection; the interface of engine.vector_store."""

    def __init__(self, catalog: "Catalog", backend: str):
        _pymilvus()                              # (not installed: say so on open)
        self.catalog = catalog
        self.backend = backend
        if backend == LITE_SCHEME.rstrip(":"):
            self.server = None
            self.path = catalog.directory / LITE_FILE
            self.uri = str(self.path)
            self.collection = f"lookalike_{catalog.catalog_id or 'catalog'}"
        elif backend.startswith(SERVER_SCHEME):
            from .paths import parse_server
            host, port, name = parse_server(backend)
            self.server = f"http://{host}:{port}"
            self.path = catalog.index_path          # (no file here: check/repair leave it alone)
            self.uri = backend
            self.collection = name
        else:
            raise CatalogError(f"{catalog.directory}: unknown vector store {backend!r} in its meta table")
        self._client = None
        self._unavailable: str | None = None    # why this process cannot use the collection
        self._lock = threading.RLock()
        self._delta: tuple | None = None         # (catalog version, reflected version, ids, vecs)
        self._checked = False
        self._cached_settings: dict | None = None
        self._loaded = False                     # the collection is loaded for searching
        self._graph: VectorStore | None = None   # the duplicate scan's local index
        self._owner_ok = False                   # the collection is this catalog's (checked)
        self._synced_at: str | None = None       # the sync time this process last recorded

    # ------------------------------------------------------------------ connection
    def client(self):
        """The connected MilvusClient; None when Milvus Lite's file is held by another process."""
        with self._lock:
            if self._client is not None or self._unavailable:
                return self._client
            pymilvus = _pymilvus()
            try:
                if self.server is None:
                    self._client = self._open_lite(pymilvus)
                else:
                    token = os.environ.get(TOKEN_ENV, "")
                    self._client = pymilvus.MilvusClient(self.server, timeout=CONNECT_TIMEOUT,
                                                         **({"token": token} if token else {}))
            except Exception as exc:             # grpc, pymilvus and milvus_lite raise their own
                raise milvus_error(self.uri, exc) from exc
            return self._client

    def _open_lite(self, pymilvus):
        key = str(self.path.resolve())
        if not self.catalog.readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            client = pymilvus.MilvusClient(key)
        except pymilvus.MilvusException as exc:
            if "Open local milvus failed" not in str(exc) or not Path(key).exists():
                raise
            self._unavailable = "its Milvus Lite file is open in another process"
            log.warning("%s: %s; searching the stored embeddings instead", key, self._unavailable)
            return None
        with _lite_lock:
            _lite_users[key] = _lite_users.get(key, 0) + 1
        return client

    def close(self) -> None:
        """Let the Milvus Lite file go when no other catalog of this process uses it, and the
        scan's graph index."""
        with self._lock:
            client, self._client, self._delta = self._client, None, None
            self._checked = self._loaded = self._owner_ok = False
            graph, self._graph = self._graph, None
        if graph is not None:
            graph.close()
        if client is None:
            return
        try:
            client.close()
        except Exception:
            pass
        if self.server is None:
            key = str(self.path.resolve())
            with _lite_lock:
                _lite_users[key] = _lite_users.get(key, 1) - 1
                last = _lite_users[key] <= 0
                if last:
                    del _lite_users[key]
            if last:
                from milvus_lite.server_manager import server_manager_instance
                server_manager_instance.release_server(key)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CatalogError:
            raise
        except Exception as exc:
            raise milvus_error(self.uri, exc) from exc

    # ------------------------------------------------------------------ the collection
    def reflected_version(self) -> int:
        return int(self.catalog.meta(VERSION_KEY, "-1") or -1)

    def _exists(self, client) -> bool:
        return bool(self._call(client.has_collection, self.collection))

    def _ready(self):
        """The client with the collection loaded (once per process), or None: no collection, or
        no access to it."""
        with self._lock:
            client = self.client()
            if client is None:
                return None
            if not self._loaded:
                if not self._exists(client):
                    return None
                self._claim(client)
                self._call(client.load_collection, self.collection)
                self._loaded = True
            return client

    def _owner(self) -> str:
        return self.catalog.catalog_id or str(self.catalog.directory)

    def _owner_problem(self, client) -> str | None:
        """Why the existing collection is not this catalog's (another catalog's ids), or None. A
        collection without the owner property (made by an earlier version) is taken as this one's."""
        props = self._call(client.describe_collection, self.collection).get("properties") or {}
        owner = props.get(OWNER_PROPERTY)
        if owner is None or owner == self._owner():
            return None
        return (f"collection {self.collection} holds the vectors of another catalog ({owner}), whose "
                "records are on another desktop or in another folder; catalogs cannot share a "
                "collection yet: open that catalog, or use another collection name")

    def _claim(self, client) -> None:
        """Refuse another catalog's collection (a one-line CatalogError): its ids are that
        catalog's images, so searching it would name the wrong images and writing it would destroy
        the other catalog's vectors. The writer marks an unmarked collection as this catalog's."""
        if self._owner_ok:
            return
        if (why := self._owner_problem(client)) is not None:
            raise CatalogError(f"{self.uri}: {why}")
        if not self.catalog.readonly and self.catalog.holds_write_lock:
            self._mark(client)
        self._owner_ok = True

    def _mark(self, client) -> None:
        self._call(client.alter_collection_properties, self.collection,
                   properties={OWNER_PROPERTY: self._owner()})

    def _check_schema(self, client) -> str | None:
        """Why the collection is not one this store made for this catalog's dims, or None."""
        fields = {f["name"]: f for f in self._call(client.describe_collection, self.collection)["fields"]}
        want = {"id", "embedding", *SCALARS, "price"}
        if set(fields) != want:
            return f"collection {self.collection} has fields {sorted(fields)}, not {sorted(want)}"
        dim = int(fields["embedding"].get("params", {}).get("dim", 0))
        if self.catalog.embedding_dim not in (None, dim):
            return f"collection {self.collection} holds {dim}-d vectors, the catalog {self.catalog.embedding_dim}-d"
        return None

    def owner_problem(self) -> str | None:
        """Why the collection belongs to another catalog, or None (no collection: None)."""
        client = self.client()
        if client is None or not self._exists(client):
            return None
        return self._owner_problem(client)

    def schema_problem(self) -> str | None:
        """Why the collection is not usable as this catalog's, or None (no collection: None)."""
        client = self.client()
        if client is None or not self._exists(client):
            return None if client is not None else self._unavailable
        return self._check_schema(client)

    def _index_spec(self, n: int) -> dict:
        """The index for ``n`` images: HNSW on a server, FLAT or IVF_FLAT on Milvus Lite."""
        if self.server is not None:
            return {"index_type": "HNSW", "M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
        if n < IVF_MIN_IMAGES:
            return {"index_type": "FLAT"}
        return {"index_type": "IVF_FLAT", "nlist": best_nlist(n)}

    def _index_params(self, client, n: int):
        spec = self._index_spec(n)
        build = {k: v for k, v in spec.items() if k != "index_type"}
        params = client.prepare_index_params()
        # pymilvus 3 sends the build parameters as separate key-value pairs, which a server reads;
        # Milvus Lite 3.2 reads them only from one JSON "params" entry and otherwise builds with
        # its defaults (IVF nlist 128, whatever was asked): give Lite that entry
        params.add_index("embedding", index_type=spec["index_type"], metric_type="IP",
                         params=build if self.server is not None or not build else {"params": build})
        self.catalog.set_meta(INDEX_KEY, json.dumps(spec))
        self._cached_settings = None
        return params

    def _create(self, client, dim: int, n: int) -> None:
        pymilvus = _pymilvus()
        DataType = pymilvus.DataType
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
        # not nullable (servers before Milvus 2.5 have no nulls): a missing value is "" / NaN,
        # which no filter expression (==, <=, ...) matches
        for name in SCALARS:
            schema.add_field(name, DataType.VARCHAR, max_length=1024)
        schema.add_field("price", DataType.DOUBLE)
        self._call(client.create_collection, self.collection, schema=schema,
                   index_params=self._index_params(client, n), consistency_level="Strong")
        self._mark(client)
        self._owner_ok = True

    def index_settings(self) -> dict:
        """The collection's index type and parameters, with the search's (nprobe, ef)."""
        try:
            settings = json.loads(self.catalog.meta(INDEX_KEY) or "{}")
        except ValueError:
            settings = {}
        if "nlist" in settings:
            settings["nprobe"] = best_nprobe(settings["nlist"])
        if settings.get("index_type") == "HNSW":
            settings["ef"] = HNSW_EF
        return settings

    def count(self) -> int:
        client = self._ready()
        if client is None:
            return 0
        rows = self._call(client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def ids(self) -> set[int]:
        """Every id in the collection."""
        client = self._ready()
        if client is None:
            return set()
        # by id ranges of ID_RANGE (Milvus caps a query at 16384 rows; its query iterator needs
        # a timestamp service Milvus Lite lacks)
        top = max(self.catalog.image_ids()[-1:] or [0])
        out: set[int] = set()
        for lo in range(0, top + 1, ID_RANGE):
            out.update(self._ids_where(client, f"id >= {lo} and id < {lo + ID_RANGE}"))
        out.update(self._ids_where(client, f"id < 0 or id >= {top - top % ID_RANGE + ID_RANGE}"))
        return out

    def _ids_where(self, client, expr: str) -> list[int]:
        rows = self._call(client.query, self.collection, filter=expr, output_fields=["id"], limit=MAX_TOPK)
        return [int(r["id"]) for r in rows]

    def info(self) -> dict:
        return {"backend": "milvus-lite" if self.server is None else "milvus", "uri": self.uri,
                "collection": self.collection, "count": self.count(),
                "version": self.reflected_version(), **self.index_settings(),
                **({"unavailable": self._unavailable} if self._unavailable else {})}

    # ------------------------------------------------------------------ keeping in step
    def _may_write(self) -> Iterator[bool]:
        return self.catalog.write_lock_if_free()

    def sync(self, index: MilvusIndex | None = None, *, save: bool | None = None) -> int:
        """Apply database changes newer than ``meta.milvus_version`` to the collection, only in the
        process that may write the catalog (it takes the write lock when free). Returns how many."""
        catalog = self.catalog
        if catalog.readonly or save is False:
            return 0
        if self._checked and self.reflected_version() >= catalog.version:
            return 0
        with self._lock, self._may_write() as mine:
            client = self.client()
            if not mine or client is None:
                return 0
            since = self.reflected_version()
            exists = self._exists(client)
            if exists:
                self._claim(client)
            if not exists or since > catalog.version:
                return self._refill(client)      # (a database older than its collection too)
            first = not self._checked
            if first and (why := self._check_schema(client)) is not None:
                raise CatalogError(f"{self.uri}: {why}: run `lookalike check --repair`")
            changed = 0
            if since < catalog.version:
                with catalog.read_snapshot():
                    target = catalog.version
                    gone = catalog.removed_since(since)
                    if gone:
                        self._call(client.delete, self.collection, ids=[int(i) for i in gone])
                        changed += len(gone)
                    for ids, vecs in catalog.iter_embeddings(batch=UPSERT_BATCH, since_version=since):
                        self._upsert(client, ids, vecs)
                        changed += len(ids)
                if self.server is None:
                    # Milvus Lite persists on flush; a server's acknowledged upserts are already
                    # durable in its log, and a flush per import would seal a small segment
                    # each time (Milvus advises against it) and costs 2.5 s (docs/milvus.md)
                    self._call(client.flush, self.collection)
                self._reflect(target)
                self._delta = None
            self._checked = True
            if first and (n := self.count()) != catalog.count_images():
                log.warning("%s: collection %s holds %d rows for %d images; refilling it", self.uri,
                            self.collection, n, catalog.count_images())
                return self._refill(client)
            if (changed or first) and self._index_due(client):
                self._reindex(client)
            return changed

    def _reflect(self, version: int) -> None:
        """Record that the collection now reflects ``version`` (its rows durable), and when."""
        self._synced_at = f"{time.time():.6f}"
        self.catalog.set_meta(VERSION_KEY, str(version))
        self.catalog.set_meta(SYNCED_AT_KEY, self._synced_at)

    def _consistency(self) -> dict:
        """The search's consistency level on a server (BOUNDED_AFTER_S); Milvus Lite: none."""
        if self.server is None:
            return {}
        synced_at = self.catalog.meta(SYNCED_AT_KEY)
        if synced_at is not None and synced_at == self._synced_at:
            return {"consistency_level": "Session"}      # the last sync was this process's
        try:
            age = time.time() - float(synced_at or 0)
        except ValueError:
            age = 0.0
        return {"consistency_level": "Bounded" if age > BOUNDED_AFTER_S else "Strong"}

    def _upsert(self, client, ids: np.ndarray, vecs: np.ndarray) -> None:
        records = {r["image_id"]: r for r in self.catalog.image_records(ids.tolist())}
        rows = []
        for i, v in zip(ids.tolist(), vecs):
            r = records.get(i, {})
            row = {"id": i, "embedding": v, "price": _price(r.get("price"))}
            row.update({name: _text(r.get(name)) for name in SCALARS})
            rows.append(row)
        self._call(client.upsert, self.collection, rows)

    def _refill(self, client) -> int:
        """Drop and fill the collection from the stored embeddings; returns the rows written."""
        catalog = self.catalog
        if self._exists(client):
            self._claim(client)
            self._call(client.drop_collection, self.collection)
        self._delta, self._loaded, self._owner_ok = None, False, False
        dim = catalog.embedding_dim
        if dim is None:
            catalog.set_meta(VERSION_KEY, str(catalog.version))
            return 0
        n = 0
        self._create(client, dim, catalog.count_images())
        with catalog.read_snapshot():
            target = catalog.version
            for ids, vecs in catalog.iter_embeddings(batch=UPSERT_BATCH):
                self._upsert(client, ids, vecs)
                n += len(ids)
        self._call(client.flush, self.collection)
        self._reflect(target)
        self._checked = True
        return n

    def _index_due(self, client) -> bool:
        """Whether the catalog outgrew its Milvus Lite index (FLAT -> IVF_FLAT, nlist x2), or
        the index was built without the parameters asked for (an IVF index made before they
        reached Milvus Lite: its default nlist)."""
        if self.server is not None:
            return False
        n = self.count()
        settings = self._settings()
        if settings.get("index_type") == "FLAT":
            return n >= IVF_MIN_IMAGES
        nlist = settings.get("nlist") or 1
        if n >= IVF_MIN_IMAGES and not 0.5 <= best_nlist(n) / nlist <= 2:
            return True
        built = self._call(client.describe_index, self.collection, "embedding") or {}
        return "nlist" in settings and str((built.get("params") or {}).get("nlist")) != str(nlist)

    def _reindex(self, client) -> None:
        n = self.count()
        log.info("%s: re-indexing %s for %d images", self.uri, self.collection, n)
        self._call(client.release_collection, self.collection)
        self._call(client.drop_index, self.collection, "embedding")
        self._call(client.create_index, self.collection, self._index_params(client, n))
        self._call(client.load_collection, self.collection)

    def save(self) -> None:
        """Bring the collection up to date (after an import), as the writer."""
        self.sync()

    def rebuild(self, **_params) -> MilvusIndex:
        """Drop the collection and fill it again from the stored embeddings."""
        catalog = self.catalog
        with self._lock, catalog.writer():
            client = self.client()
            if client is None:
                raise CatalogError(f"{self.uri}: {self._unavailable}")
            self._refill(client)
        return MilvusIndex(self, catalog.count_images())

    def remove(self, image_ids: list[int]) -> None:
        """Removed images leave the collection with the next sync (their tombstones)."""
        self.sync()

    def delete_files(self) -> bool:
        """Drop the collection (the records it mirrored are gone) and the scan's local graph
        index; whether there was a collection."""
        self._graph_store().delete_files()
        client = self.client()
        if client is None or not self._exists(client):
            return False
        self._claim(client)
        self._call(client.drop_collection, self.collection)
        self._loaded = self._owner_ok = False
        return True

    def drop(self) -> None:
        """Drop the collection and let Milvus Lite's file go (moving the vectors elsewhere)."""
        self.delete_files()
        self.close()

    # ------------------------------------------------------------------ searching
    def index(self) -> MilvusIndex | None:
        """The collection, brought up to date by the writer; None while the catalog is empty."""
        self.sync()
        if self.catalog.embedding_dim is None:
            return None
        return MilvusIndex(self, self.catalog.count_images())

    def graph_index(self):
        """The index the duplicate scan's kNN self-join queries: a local HNSW index over the
        catalog's stored embeddings (engine.vector_store, with its PCA projection from 10,000
        images), kept in the records folder as GRAPH_FILE and brought up to date on use like a
        local catalog's index. A self-join asks for every image's neighbours, a batch job: through
        Milvus Lite it took more than 26 minutes at 100k images, about 60 images a second
        (docs/milvus.md). The scan's pairs are then verified and scored from the records as for
        a local catalog; search keeps asking Milvus."""
        graph = self._graph_store()
        try:
            graph.maybe_fit_projection()
        except CatalogBusyError as exc:  # another process writes: this scan's graph goes without
            log.info("%s; the scan's graph index is built without a fitted projection", exc)
        graph.save()                 # (while the write lock is free; else it stays in memory)
        return graph.loaded()

    def _graph_store(self) -> VectorStore:
        """The local VectorStore of the scan's graph index (GRAPH_FILE), made on first use."""
        with self._lock:
            if self._graph is None:
                self._graph = VectorStore(self.catalog, self.catalog.directory / GRAPH_FILE, cache=True)
            return self._graph

    def nearest(self, vectors: np.ndarray, k: int, *, shortlist: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest images of each query embedding: (ids [N,k'], cosines [N,k']), the
        cosines the inner products of unit vectors. Images changed since the collection's version
        are searched exactly over their stored embeddings and merged in."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        k = min(int(k), self.catalog.count_images())
        if k <= 0:
            return np.zeros((len(vectors), 0), np.int64), np.zeros((len(vectors), 0), np.float32)
        stale, delta = self._stale()
        parts = []
        if self._ready() is not None:
            parts.append(self._search(vectors, min(k + len(stale), MAX_TOPK), stale))
        elif not delta:
            delta = [(-1, None)]             # nothing in Milvus: everything, exactly
        for ids, vecs in self._delta_batches(delta):
            sims = vectors @ vecs.T
            parts.append((np.broadcast_to(ids, sims.shape), sims))
        return _merge(parts, k)

    def filtered_nearest(self, vectors: np.ndarray, k: int, filters
                         ) -> tuple[np.ndarray, np.ndarray] | None:
        """The ``k`` nearest images of each query embedding among those that pass ``filters``
        (engine.search.SearchFilters: category, brand, price range, excluded ids), the filters
        pushed down into Milvus as an expression on the collection's scalar fields (the search's
        answer for filters too selective for the nearest images to contain enough). When at most
        FILTER_EXACT_MAX images pass, a scalar query names them and they are scored exactly;
        more are searched with the filter. Images changed since the collection's version are
        filtered from their records and searched exactly. None when the filters cannot be
        written as an expression or this process cannot use the collection: the caller scans
        the records instead."""
        expr = filter_expression(filters)
        client = self._ready() if expr is not None else None
        if client is None:
            return None
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        k = min(int(k), MAX_TOPK)
        stale, delta = self._stale()
        passing = self._call(client.query, self.collection, filter=expr, output_fields=["id"],
                             limit=FILTER_EXACT_MAX + 1, **self._consistency())
        if len(passing) <= FILTER_EXACT_MAX:
            # few pass: score them exactly (a graph search with a filter this selective misses
            # some: 74 of 90 at 0.1% on a 100k HNSW collection, Milvus 2.3.5)
            ids = np.array(sorted({int(r["id"]) for r in passing} - stale), np.int64)
            sims = vectors @ self.catalog.embeddings(ids.tolist()).T if len(ids) else \
                np.zeros((len(vectors), 0), np.float32)
            parts = [(np.broadcast_to(ids, sims.shape), sims)]
        else:
            parts = [self._search(vectors, min(k + len(stale), MAX_TOPK), stale, expr=expr, every_list=True)]
        for ids, vecs in self._delta_batches(delta):
            records = {r["image_id"]: r for r in self.catalog.image_records(ids.tolist())}
            keep = [n for n, i in enumerate(ids.tolist()) if i in records and filters.accepts(records[i])]
            if keep:
                sims = vectors @ vecs[keep].T
                parts.append((np.broadcast_to(ids[keep], sims.shape), sims))
        return _merge(parts, k, ragged=True)

    def _search(self, vectors: np.ndarray, k: int, skip: set[int], *, expr: str = "",
                every_list: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Milvus's ``k`` best per query row, without ``skip``, padded with -1 / -inf.
        ``every_list``: an IVF index probes all its lists (a filtered search: the images that
        pass a selective filter are spread over every list, so the usual probe misses most)."""
        client = self._ready()
        settings = self._settings()
        params = {"metric_type": "IP", "params": {}}
        if "nprobe" in settings:
            params["params"]["nprobe"] = settings["nlist"] if every_list else settings["nprobe"]
        if "ef" in settings:
            params["params"]["ef"] = max(settings["ef"], k)
        out_ids = np.full((len(vectors), k), -1, np.int64)
        out_sims = np.full((len(vectors), k), -np.inf, np.float32)
        step = max(1, SEARCH_CELLS // max(k, 1))
        level = self._consistency()
        for start in range(0, len(vectors), step):
            rows = self._call(client.search, self.collection, data=list(vectors[start:start + step]),
                              filter=expr, limit=k, search_params=params, output_fields=[], **level)
            for r, hits in enumerate(rows, start):
                got = [(h["id"], h["distance"]) for h in hits if h["id"] not in skip][:k]
                if got:
                    out_ids[r, :len(got)] = [g[0] for g in got]
                    out_sims[r, :len(got)] = [g[1] for g in got]
        return out_ids, out_sims

    def _settings(self) -> dict:
        with self._lock:
            if self._cached_settings is None:
                self._cached_settings = self.index_settings()
            return self._cached_settings

    def _stale(self) -> tuple[set[int], list]:
        """(ids whose collection rows are stale or gone, the exact part: [(since version, (ids,
        vecs) or None to stream)]) for a collection behind the database; empty when in step."""
        catalog = self.catalog
        with self._lock:
            version = catalog.version
            if self._delta is not None and self._delta[0] == version:
                return self._delta[1], self._delta[2]
            since = self.reflected_version() if self.client() is not None else -1
            stale: set[int] = set()
            delta: list = []
            if since < version:
                with catalog.read_snapshot():
                    changed = catalog.image_ids(since)
                    stale = set(changed) | set(catalog.removed_since(since))
                    if changed and len(changed) <= DELTA_IN_MEMORY:
                        delta = [(since, (np.array(changed, np.int64), catalog.embeddings(changed)))]
                    elif changed:
                        delta = [(since, None)]
            self._delta = (version, stale, delta)
            return stale, delta

    def _delta_batches(self, delta: list) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for since, held in delta:
            if held is not None:
                yield held
            else:
                yield from self.catalog.iter_embeddings(since_version=since)

    # ------------------------------------------------------------------ no projection here
    def loaded(self):
        return None

    def projection_key(self) -> None:
        return None

    def projection(self) -> None:
        return None

    def projection_due(self) -> bool:
        return False

    def fit_projection(self, **_kwargs) -> None:
        return None

    def maybe_fit_projection(self) -> None:
        return None

    def snapshot(self):
        return self.catalog.read_snapshot()


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int, *, ragged: bool = False
           ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of (ids, sims) column blocks per row. Rows that found fewer are cut to the
    shortest (``ragged``: padded with id -1 and -inf instead)."""
    ids = np.concatenate([p[0] for p in parts], axis=1)
    sims = np.concatenate([p[1] for p in parts], axis=1).astype(np.float32)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    sims = np.take_along_axis(sims, order, 1)
    ids = np.take_along_axis(ids, order, 1).astype(np.int64)
    if ragged:
        ids[~np.isfinite(sims)] = -1
        return ids, sims
    k = min(k, int(np.isfinite(sims).sum(axis=1).min()))    # (an IVF probe may find fewer)
    return ids[:, :k], sims[:, :k]


def _params(info: dict) -> dict:
    raw = info.get("params")
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return {}
    return raw or {}


def _text(value) -> str:
    """A scalar text field's value; "" when missing."""
    return "" if value is None else str(value)[:1024]


def _price(value) -> float:
    """The price field's value; NaN when missing (no comparison matches it)."""
    try:
        return math.nan if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return math.nan
