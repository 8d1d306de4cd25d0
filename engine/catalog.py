"""The catalog: one folder holding the SQLite database, the HNSW index and a thumbnail cache.

Layout of a catalog folder (made only in a new or empty folder: engine.catalog_marker)::

    lookalike-catalog.json  the marker: format version, catalog id (= meta.catalog_id), created
    catalog.db        SQLite (WAL): products, images (+ embeddings), local_features, image_text,
                      ingest_errors, removed, projection, meta (schema: engine.catalog_schema)
    index.bin/.json   the HNSW index over image embeddings (engine.vector_store, engine.index)
    thumbnails/       cached JPEG thumbnails, keyed by content hash and size (engine.thumbnail_cache)
    write.lock        held by the one process that writes (imports, removals)

:class:`Catalog` is the store of records and holds every SQL statement of the engine (with the
small modules it owns: catalog_schema, catalog_health, decision_store, case_store,
image_text_store). It owns the vector store
(``catalog.vectors``) and the thumbnail cache (``catalog.thumbnails``).

Every write transaction bumps ``meta.version`` and stamps the rows it touches with it; removals
leave a tombstone in ``removed``. The index file records the version it reflects, so an index that
is behind (a crash, another process) is brought up to date from the database on open instead of
being trusted blindly. Embeddings live in the database, so the index can always be rebuilt.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import sqlite_utils
from filelock import FileLock

from .catalog_health import CatalogHealth
from .catalog_marker import DB_NAME, INDEX_NAME, LOCK_NAME, check_folder, ensure_identity, prepare, read_marker
from .catalog_schema import image_text_values, execute_statements, has_column, now_iso
from .catalog_storage import connect, storage_error, take_lock, tidy_after_reading
from .case_store import CaseStore
from .decision_store import DecisionStore
from .image_text_store import ImageTextStore
from .errors import CatalogBusyError, CatalogError, LookalikeError
from .faults import fault_point
from .milvus_store import claim_backend, store_for
from .paths import catalog_location, default_catalog_dir
from .thumbnail_cache import THUMBNAIL_DIR, ThumbnailCache
from .vector_store import VectorStore

__all__ = ["Catalog", "DB_NAME", "INDEX_NAME", "LOCK_NAME", "PRODUCT_COLUMNS", "THUMBNAIL_DIR",
           "execute_statements", "now_iso", "pack_embedding", "unpack_embeddings"]

PRODUCT_COLUMNS = (
    "id", "title", "brand", "price", "currency", "category", "url", "description", "sku", "gtin",
    "group_id",
)
#: Every column of the products table (what may be read by name, see product_rows).
PRODUCT_TABLE_COLUMNS = PRODUCT_COLUMNS + ("extra", "remote_images", "source", "updated_at")


def pack_embedding(vec: np.ndarray) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


def unpack_embeddings(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1).copy()


class Catalog:
    """A catalog folder. Thread-safe for one writer thread and any number of readers.

    Open with :meth:`open`; use as a context manager or call :meth:`close`.
    """

    def __init__(self, directory: Path, *, readonly: bool = False, recreate_emptied: bool = False):
        self.directory = Path(directory)
        self.db_path = self.directory / DB_NAME
        self.index_path = self.directory / INDEX_NAME
        self.readonly = readonly
        self.read_stand_ins: list[str] = []
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._write_lock = threading.RLock()
        self._file_lock: FileLock | None = None
        self._lock_depth = 0
        self._lock_owner: int | None = None
        self._closed = False
        self._columns: dict[tuple[str, str], bool] = {}
        self._identity_pending = False              # made before the marker: add it on next write
        self.recreated = False                      # an emptied database was started again empty
        self.vectors = VectorStore(self)            # the HNSW index (engine.vector_store)
        self.thumbnails = ThumbnailCache(self)      # thumbnails/ (engine.thumbnail_cache)
        self._init_db(recreate_emptied)
        if self.meta("vector_store"):               # its vectors in Milvus (engine.milvus_store)
            self.vectors = store_for(self)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: str | os.PathLike | None = None, *, create: bool = True,
             readonly: bool = False, recreate_emptied: bool = False) -> "Catalog":
        """Open the catalog in ``directory``; ``create``: make one there if the folder is new or
        empty (never in a folder of other files: NotACatalogError). An emptied database raises
        EmptiedCatalogError unless ``recreate_emptied`` (`lookalike check --repair`)."""
        directory, backend = catalog_location(directory) if directory else (default_catalog_dir(), None)
        check_folder(directory, create=create and not readonly, recreate=recreate_emptied and not readonly)
        catalog = cls(directory, readonly=readonly, recreate_emptied=recreate_emptied)
        if backend:             # milvus-lite:PATH, milvus://HOST:PORT/NAME (engine.milvus_store)
            claim_backend(catalog, backend)
        return catalog

    def _init_db(self, recreate_emptied: bool = False) -> None:
        try:
            # a new catalog's schema and marker are made holding the write lock; an existing one is
            # checked, and migrated only under the lock (engine.catalog_marker)
            prepare(self, recreate=recreate_emptied)
        except sqlite3.OperationalError as exc:
            if not self.readonly and (mapped := storage_error(exc, self.directory)) is not None:
                raise mapped from exc       # a full disk, an unwritable database file
            if "locked" in str(exc) or "busy" in str(exc):
                # another process is creating the same catalog this instant (its journal mode
                # switch or schema is not finished): the same answer as for a writer
                raise CatalogBusyError(f"{self.directory}: catalog is busy (another Lookalike process "
                                       "is writing to it)") from exc
            raise CatalogError(f"{self.db_path}: not a usable catalog database ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.db_path}: not a usable catalog database ({exc})") from exc

    @property
    def db(self) -> sqlite_utils.Database:
        """A per-thread connection (sqlite3 connections must not cross threads)."""
        if self._closed:
            raise CatalogError(f"{self.directory}: catalog is closed")
        db = getattr(self._local, "db", None)
        if db is None:
            # read-only: a mode=ro connection (engine.catalog_storage); transactions are explicit
            conn = connect(self.db_path, readonly=self.readonly)
            for statement in self.read_stand_ins:    # an older catalog read as it is (catalog_marker)
                conn.execute(statement)
            db = sqlite_utils.Database(conn)
            self._local.db = db
            self._connections.append(conn)
        return db

    def reconnect(self) -> None:
        """Close every thread's connection and forget the loaded index (a recovery replaced the
        database): each thread reconnects on its next query."""
        self.vectors.close()
        for conn in self._connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._connections = []
        self._local = threading.local()

    def close(self) -> None:
        if self._closed:
            return
        self.reconnect()
        self._closed = True
        if self.readonly:
            tidy_after_reading(self.db_path)

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ locking / transactions
    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the catalog's inter-process write lock (re-entrant within this object)."""
        if self.readonly:
            raise CatalogError(f"{self.directory}: catalog is open read-only; copy it to a writable folder to change it")
        with self._write_lock:
            if self._lock_depth == 0:
                self._file_lock = FileLock(str(self.directory / LOCK_NAME))
                if not take_lock(self._file_lock, 0.5, self.directory):
                    raise CatalogBusyError(
                        f"{self.directory}: catalog is busy (another Lookalike process is writing to it)")
                self._lock_owner = threading.get_ident()
            self._lock_depth += 1
            try:
                if self._identity_pending:      # a catalog made before the marker gets it now
                    ensure_identity(self)
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._file_lock is not None:
                    self._file_lock.release()

    @contextmanager
    def transaction(self, *, bump: bool = True) -> Iterator[sqlite_utils.Database]:
        """One SQLite write transaction. With ``bump`` the catalog version is increased and
        available as ``self.current_version`` inside the block."""
        db = self.db
        conn = db.conn
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                if bump:
                    row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
                    self.current_version = int(row[0]) + 1 if row else 1
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)",
                                 (str(self.current_version),))
                yield db
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:     # (SQLite may have rolled back already: a full disk)
                    conn.execute("ROLLBACK")
                raise storage_error(exc, self.directory) or exc   # a full disk: one line

    @contextmanager
    def read_snapshot(self) -> Iterator[None]:
        """Run the block's reads on this thread's connection in one read transaction (one
        consistent snapshot even while another process commits). Nests as a no-op."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    @property
    def holds_write_lock(self) -> bool:
        """Whether this thread is inside :meth:`writer` (imports, removals, repairs; not a search
        running beside them in the desktop)."""
        return self._lock_depth > 0 and self._lock_owner == threading.get_ident()

    @contextmanager
    def write_lock_if_free(self, *, for_cache: bool = False) -> Iterator[bool]:
        """Whether this object may write the catalog's files (the index) now, without waiting:
        True while it holds the write lock, or when the lock was free (then held for the block);
        False when another process holds it (that process writes them). A read-only catalog
        object writes nothing, except a derived cache file (``for_cache``: the duplicate scan's
        graph index of a Milvus catalog), which it may save while the lock is free."""
        if self.readonly and not for_cache:
            yield False
            return
        if self._lock_depth > 0:               # this catalog object is the writer
            yield True
            return
        lock = FileLock(str(self.directory / LOCK_NAME))
        if not take_lock(lock, 0, self.directory):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    # ------------------------------------------------------------------ meta
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction(bump=False) as db:
            db.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def version(self) -> int:
        return int(self.meta("version", "0"))

    @property
    def catalog_id(self) -> str | None:
        """The catalog's id (uuid4 hex; None for a catalog made before ids, until its next write)."""
        return self.meta("catalog_id") or getattr(read_marker(self.directory), "catalog_id", None)

    # ------------------------------------------------------------------ products
    def upsert_products(self, products: Iterable[dict], *, merge: bool = False) -> int:
        """Insert or update products (dicts with PRODUCT_COLUMNS keys plus ``extra``). With
        ``merge`` an existing product keeps the values the new dicts leave empty (a feed that
        repeats an id on later rows), and its image links are added to."""
        rows = []
        stamp = now_iso()
        for p in products:
            row = {k: p.get(k) for k in PRODUCT_COLUMNS}
            row["extra"] = json.dumps(p.get("extra") or {}, ensure_ascii=False)
            row["remote_images"] = json.dumps(list(p.get("remote_images") or []))
            row["source"] = p.get("source")
            row["updated_at"] = stamp
            rows.append(row)
        if rows:
            cols = list(rows[0])
            if merge:   # column names come from the constant list above, values stay parameters
                updates = ", ".join(
                    f"{c}=COALESCE(NULLIF(excluded.{c}, '{{}}'), {c})" if c == "extra" else
                    (f"{c}=(SELECT json_group_array(value) FROM (SELECT value FROM json_each(products.{c}) "
                     f"UNION SELECT value FROM json_each(excluded.{c})))") if c == "remote_images" else
                    f"{c}=excluded.{c}" if c == "updated_at" else
                    f"{c}=COALESCE(excluded.{c}, {c})"
                    for c in cols if c != "id")
            else:
                updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c != "id")
            sql = (f"INSERT INTO products ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                   f"ON CONFLICT(id) DO UPDATE SET {updates}")
            with self.transaction() as db:
                db.conn.executemany(sql, [tuple(r[c] for c in cols) for r in rows])
        return len(rows)

    def product(self, product_id: str) -> dict | None:
        row = self.db.conn.execute("SELECT * FROM products WHERE id=?", (product_id,)).fetchone()
        if row is None:
            return None
        return self._product_dict(row, self.db.conn.execute("SELECT * FROM products LIMIT 0").description)

    def product_rows(self, columns: Sequence[str]) -> Iterator[tuple]:
        """The named columns of every product (raw values: ``extra`` and ``remote_images`` are
        JSON text), by id."""
        unknown = [c for c in columns if c not in PRODUCT_TABLE_COLUMNS]
        if unknown or not columns:
            raise ValueError(f"not columns of the products table: {unknown or columns}")
        # the names are checked against the constant list above
        return iter(self.db.conn.execute(f"SELECT {', '.join(columns)} FROM products ORDER BY id"))

    @staticmethod
    def _product_dict(row, description) -> dict:
        d = {col[0]: value for col, value in zip(description, row)}
        for key in ("extra", "remote_images"):
            if key in d:
                d[key] = json.loads(d[key]) if d[key] else ({} if key == "extra" else [])
        return d

    # ------------------------------------------------------------------ images
    def image_by_path(self, path: str) -> dict | None:
        row = self.db.conn.execute(
            "SELECT id, path, content_hash, file_size, mtime, model_id, product_id FROM images WHERE path=?",
            (path,)).fetchone()
        if row is None:
            return None
        return dict(zip(("id", "path", "content_hash", "file_size", "mtime", "model_id", "product_id"), row))

    def known_files(self) -> dict[str, tuple[int, float, str, str]]:
        """path -> (file_size, mtime, content_hash, model_id) for every image (fast re-index checks)."""
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in self.db.conn.execute(
            "SELECT path, file_size, mtime, content_hash, model_id FROM images")}

    def put_images(self, rows: Sequence[dict]) -> list[int]:
        """Insert or replace images; each row: path, content_hash, file_size, mtime, width, height,
        product_id, model_id, embedding (np.ndarray), labels (list), and optionally
        local_features = (version, keypoints blob, descriptors blob[, mirrored descriptors blob[,
        dense blob]])
        (see engine.features), and text = (reader, words, lines) read on it (see image_text_store).
        Returns their image ids."""
        if not rows:
            return []
        stamp = now_iso()
        ids = []
        with self.transaction() as db:
            conn = db.conn
            v = self.current_version
            for r in rows:
                existing = conn.execute("SELECT id, added_at FROM images WHERE path=?", (r["path"],)).fetchone()
                values = (
                    r["content_hash"], r.get("file_size"), r.get("mtime"), r.get("width"), r.get("height"),
                    r.get("product_id"), r["model_id"], pack_embedding(r["embedding"]),
                    json.dumps(r.get("labels") or []), stamp, v,
                )
                if existing:
                    conn.execute(
                        "UPDATE images SET content_hash=?, file_size=?, mtime=?, width=?, height=?, "
                        "product_id=COALESCE(?, product_id), model_id=?, embedding=?, labels=?, "
                        "updated_at=?, version=? WHERE id=?", values + (existing[0],))
                    ids.append(existing[0])
                else:
                    cur = conn.execute(
                        "INSERT INTO images (content_hash, file_size, mtime, width, height, product_id, "
                        "model_id, embedding, labels, updated_at, version, path, added_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", values + (r["path"], stamp))
                    ids.append(cur.lastrowid)
                conn.execute("DELETE FROM removed WHERE image_id=?", (ids[-1],))
                conn.execute("DELETE FROM ingest_errors WHERE path=?", (r["path"],))
                if r.get("local_features") is not None:
                    lf = tuple(r["local_features"]) + (None,) * (5 - len(r["local_features"]))
                    conn.execute("INSERT OR REPLACE INTO local_features "
                                 "(image_id, version, keypoints, descriptors, mirrored, dense) VALUES (?,?,?,?,?,?)",
                                 (ids[-1], *lf[:5]))
                else:       # features of the old content are stale
                    conn.execute("DELETE FROM local_features WHERE image_id=?", (ids[-1],))
                if r.get("text") is not None:
                    conn.execute("INSERT OR REPLACE INTO image_text (image_id, reader, words, lines) "
                                 "VALUES (?,?,?,?)", (ids[-1], *image_text_values(r["text"])))
                else:       # text read on the old content is stale
                    conn.execute("DELETE FROM image_text WHERE image_id=?", (ids[-1],))
            fault_point("put-images-before-commit")
        return ids

    # ------------------------------------------------------------------ local features
    def local_feature_blobs(self, image_ids: Sequence[int], version: int, *, descriptors: bool = True
                            ) -> dict[int, tuple[bytes, bytes | None, bytes | None]]:
        """image id -> (keypoints, descriptors, mirrored descriptors or None) blobs of the given
        features version; ``descriptors=False``: the keypoints blob only (None for the others)."""
        mirrored = "mirrored" if descriptors and self._has_column("local_features", "mirrored") else "NULL"
        desc_col = "descriptors" if descriptors else "NULL"
        return {i: (kp, desc, mdesc) for i, kp, desc, mdesc in self._rows_by_id(
            f"SELECT image_id, keypoints, {desc_col}, {mirrored} FROM local_features "
            "WHERE version=? AND image_id IN ({})", image_ids, (version,))}

    def dense_feature_blobs(self, image_ids: Sequence[int], version: int) -> dict[int, bytes]:
        """image id -> the dense keypoints blob (engine.features.pack_dense) of the given features
        version, for the images that have one."""
        if not self._has_column("local_features", "dense"):
            return {}
        return {i: blob for i, blob in self._rows_by_id(
            "SELECT image_id, dense FROM local_features WHERE version=? AND dense IS NOT NULL "
            "AND image_id IN ({})", image_ids, (version,))}

    def put_local_feature_blobs(self, rows: Sequence[tuple]) -> None:
        """Store (image_id, version, keypoints, descriptors[, mirrored descriptors[, dense]]) rows
        (backfilling older catalogs)."""
        if rows:
            rows = [tuple(r) + (None,) * (6 - len(r)) for r in rows]
            with self.transaction(bump=False) as db:
                db.conn.executemany(
                    "INSERT OR REPLACE INTO local_features (image_id, version, keypoints, descriptors, "
                    "mirrored, dense) SELECT ?,?,?,?,?,? WHERE EXISTS (SELECT 1 FROM images WHERE id=?)",
                    [(*r[:6], r[0]) for r in rows])

    def images_without_local_features(self, version: int, *, complete: bool = False) -> list[tuple[int, str]]:
        """(image id, path) of the images lacking local features of ``version`` (``complete``: or
        lacking their mirrored descriptors or dense keypoints, which the feature pass stores with
        them)."""
        also = ""
        if complete:        # a catalog not yet migrated (opened read-only) has none
            also = "".join(f" OR f.{c} IS NULL" if self._has_column("local_features", c) else " OR 1"
                           for c in ("mirrored", "dense"))
        return list(self.db.conn.execute(
            "SELECT i.id, i.path FROM images i LEFT JOIN local_features f "
            f"ON f.image_id = i.id AND f.version = ? WHERE f.image_id IS NULL{also} ORDER BY i.id", (version,)))

    def _has_column(self, table: str, column: str) -> bool:
        # a read-only catalog made before the column existed is not migrated
        key = (table, column)
        if key not in self._columns:
            self._columns[key] = has_column(self.db.conn, table, column)
        return self._columns[key]

    def link_images(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Attach already-indexed images (path) to a product (id) without re-embedding."""
        pairs = list(pairs)
        if not pairs:
            return 0
        with self.transaction() as db:
            cur = db.conn.executemany(
                "UPDATE images SET product_id=?, version=? WHERE path=?",
                [(pid, self.current_version, path) for path, pid in pairs])
            return cur.rowcount

    def touch_images(self, rows: Iterable[tuple[str, int, float]]) -> None:
        """Record a new size/mtime for files whose content hash did not change."""
        rows = list(rows)
        if rows:
            with self.transaction(bump=False) as db:
                db.conn.executemany("UPDATE images SET file_size=?, mtime=? WHERE path=?",
                                    [(s, m, p) for p, s, m in rows])

    def remove_images(self, image_ids: Iterable[int]) -> int:
        ids = [int(i) for i in image_ids]
        if not ids:
            return 0
        with self.writer(), self.transaction() as db:
            conn = db.conn
            n = 0
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                n += conn.execute(f"DELETE FROM images WHERE id IN ({marks})", chunk).rowcount
                conn.executemany("INSERT OR REPLACE INTO removed VALUES (?, ?)",
                                 [(i, self.current_version) for i in chunk])
        self.vectors.remove(ids)
        return n

    def remove_paths(self, paths: Iterable[str | os.PathLike]) -> int:
        """Remove images by file path, or every image under a folder path."""
        ids: list[int] = []
        for p in paths:
            ids += self.image_ids_at(os.path.abspath(os.path.expanduser(p)))
        return self.remove_images(ids)

    def missing_images(self) -> list[tuple[int, str]]:
        return [(i, p) for i, p in self.db.conn.execute("SELECT id, path FROM images")
                if not os.path.isfile(p)]

    def remove_missing(self) -> int:
        """Forget images whose files have vanished from disk."""
        return self.remove_images(i for i, _ in self.missing_images())

    # ------------------------------------------------------------------ errors
    def record_errors(self, errors: Sequence[tuple[str, str]]) -> None:
        if not errors:
            return
        stamp = now_iso()
        with self.transaction(bump=False) as db:
            db.conn.executemany("DELETE FROM ingest_errors WHERE path=?", [(p,) for p, _ in errors])
            db.conn.executemany("INSERT INTO ingest_errors (path, reason, at) VALUES (?,?,?)",
                                [(p, r, stamp) for p, r in errors])

    def errors(self, limit: int | None = None) -> list[dict]:
        sql = "SELECT path, reason, at FROM ingest_errors ORDER BY id DESC"
        params: tuple = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        return [dict(zip(("path", "reason", "at"), r)) for r in self.db.conn.execute(sql, params)]

    # ------------------------------------------------------------------ reading records
    _RECORD_SQL = (
        "SELECT i.id, i.path, i.width, i.height, i.file_size, i.content_hash, i.model_id, i.labels, "
        "i.added_at, i.product_id, p.title, p.brand, p.price, p.currency, p.category, p.url, "
        "p.description, p.sku, p.gtin, p.group_id, p.extra "
        "FROM images i LEFT JOIN products p ON p.id = i.product_id"
    )
    _RECORD_KEYS = ("image_id", "path", "width", "height", "file_size", "content_hash", "model_id",
                    "labels", "added_at", "product_id", "title", "brand", "price", "currency",
                    "category", "url", "description", "sku", "gtin", "group_id", "extra")

    def _record(self, row) -> dict:
        d = dict(zip(self._RECORD_KEYS, row))
        d["labels"] = json.loads(d["labels"]) if d["labels"] else []
        d["extra"] = json.loads(d["extra"]) if d["extra"] else {}
        return d

    def resolve_image(self, text: str) -> int:
        """An image id from a path (as indexed) or a number; a one-line error otherwise."""
        if text.isdigit() and self.image_record(int(text)) is not None:
            return int(text)
        row = self.image_by_path(os.path.abspath(os.path.expanduser(text)))
        if row is None:
            raise LookalikeError(f"{text}: not an image of catalog {self.directory}")
        return int(row["id"])

    def image_record(self, image_id: int) -> dict | None:
        row = self.db.conn.execute(self._RECORD_SQL + " WHERE i.id=?", (int(image_id),)).fetchone()
        return self._record(row) if row else None

    def image_records(self, image_ids: Sequence[int]) -> list[dict]:
        """Records joined with product data, in the order of ``image_ids`` (missing ids skipped)."""
        found = {row[0]: self._record(row)
                 for row in self._rows_by_id(self._RECORD_SQL + " WHERE i.id IN ({})", image_ids)}
        return [found[i] for i in image_ids if i in found]

    def iter_records(self, batch: int = 1000) -> Iterator[dict]:
        conn = self.db.conn
        last = -1
        while True:
            rows = conn.execute(self._RECORD_SQL + " WHERE i.id > ? ORDER BY i.id LIMIT ?",
                                (last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._record(row)
            last = rows[-1][0]

    def embeddings(self, image_ids: Sequence[int]) -> np.ndarray:
        """Stored full-precision embeddings, rows in the order of ``image_ids``."""
        blobs = dict(self._rows_by_id("SELECT id, embedding FROM images WHERE id IN ({})", image_ids))
        missing = [i for i in image_ids if int(i) not in blobs]
        if missing:
            raise CatalogError(f"{self.db_path}: images {missing[:5]} have no stored embedding")
        return unpack_embeddings([blobs[int(i)] for i in image_ids], self.embedding_dim or 0)

    def iter_embeddings(self, batch: int = 5000, *, since_version: int = -1, dim: int | None = None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, embeddings) in batches, by id, for images written after ``since_version``;
        with ``dim`` only the embeddings of that many dimensions (the others are damaged)."""
        conn = self.db.conn
        sql = "SELECT id, embedding FROM images WHERE id > ? AND version > ?"
        params: tuple = (since_version,)
        if dim is not None:
            sql += " AND length(embedding) = ?"
            params += (int(dim) * 4,)
        last = -1
        while True:
            rows = conn.execute(sql + " ORDER BY id LIMIT ?", (last, *params, batch)).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            yield ids, unpack_embeddings([r[1] for r in rows], 0)
            last = rows[-1][0]

    # ------------------------------------------------------------------ statistics
    def count_images(self, since_version: int | None = None) -> int:
        """The number of images (``since_version``: written after that version)."""
        if since_version is None:
            return self.db.conn.execute("SELECT count(*) FROM images").fetchone()[0]
        return self.db.conn.execute("SELECT count(*) FROM images WHERE version > ?",
                                    (since_version,)).fetchone()[0]

    def count_products(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM products").fetchone()[0]

    @property
    def embedding_dim(self) -> int | None:
        row = self.db.conn.execute("SELECT length(embedding) FROM images LIMIT 1").fetchone()
        return row[0] // 4 if row else None

    def model_ids(self) -> dict[str, int]:
        return dict(self.db.conn.execute("SELECT model_id, count(*) FROM images GROUP BY model_id"))

    def facets(self) -> dict:
        conn = self.db.conn
        cats = [r[0] for r in conn.execute(
            "SELECT DISTINCT category FROM products WHERE category IS NOT NULL AND category != '' ORDER BY 1")]
        brands = [r[0] for r in conn.execute(
            "SELECT DISTINCT brand FROM products WHERE brand IS NOT NULL AND brand != '' ORDER BY 1")]
        lo, hi = conn.execute("SELECT min(price), max(price) FROM products").fetchone()
        return {"categories": cats, "brands": brands, "price_min": lo, "price_max": hi}

    def stats(self) -> dict:
        conn = self.db.conn
        size = sum(f.stat().st_size for f in self.directory.glob("*") if f.is_file())
        try:
            index = self.vectors.index()
            index_info = index.info() if index is not None else None
        except CatalogError as exc:          # a Milvus server down: the records still answer
            index_info = {"error": str(exc)}
        return {
            "catalog": str(self.directory),
            "images": self.count_images(),
            "products": self.count_products(),
            "products_with_images": conn.execute(
                "SELECT count(DISTINCT product_id) FROM images WHERE product_id IS NOT NULL").fetchone()[0],
            "errors": conn.execute("SELECT count(*) FROM ingest_errors").fetchone()[0],
            "models": self.model_ids(),
            "version": self.version,
            "disk_bytes": size,
            "index": index_info,
        }

    # ------------------------------------------------------------------ image queries
    def image_ids(self, since_version: int = -1) -> list[int]:
        """Ids of the images written after ``since_version`` (all by default), ascending."""
        # sorted here: the version index covers the query, a scan in id order would read every
        # row's embedding pages
        return sorted(r[0] for r in self.db.conn.execute(
            "SELECT id FROM images WHERE version > ?", (since_version,)))

    def image_paths(self, since_version: int = -1) -> list[tuple[int, str]]:
        """(id, path) of the images written after ``since_version`` (all by default), by id."""
        return self.db.conn.execute("SELECT id, path FROM images WHERE version > ? ORDER BY id",
                                    (since_version,)).fetchall()

    def image_ids_at(self, path: str) -> list[int]:
        """Ids of the image stored under this path and of every image under it as a folder,
        ascending (``path`` as os.path.abspath gives it: no trailing separator)."""
        return sorted(r[0] for r in self.db.conn.execute(
            "SELECT id FROM images WHERE path=? OR substr(path, 1, ?)=?",
            (path, len(path) + 1, path.rstrip(os.sep) + os.sep)))

    def paths_of(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> path (unknown ids left out)."""
        return dict(self._rows_by_id("SELECT id, path FROM images WHERE id IN ({})", image_ids))

    def content_hashes(self, image_ids: Iterable[int] | None = None) -> dict[int, str]:
        """image id -> content hash, of the given images (unknown ids left out) or of all."""
        if image_ids is None:
            return dict(self.db.conn.execute("SELECT id, content_hash FROM images"))
        return dict(self._rows_by_id("SELECT id, content_hash FROM images WHERE id IN ({})", image_ids))

    def path_and_hash(self, image_id: int) -> tuple[str, str] | None:
        row = self.db.conn.execute("SELECT path, content_hash FROM images WHERE id=?",
                                   (int(image_id),)).fetchone()
        return (row[0], row[1]) if row else None

    def image_dimensions(self, image_ids: Iterable[int]) -> dict[int, tuple[int | None, int | None]]:
        """image id -> (width, height) as stored (None where unknown; unknown ids left out)."""
        return {i: (w, h) for i, w, h in self._rows_by_id(
            "SELECT id, width, height FROM images WHERE id IN ({})", image_ids)}

    def iter_filter_fields(self) -> Iterator[tuple[int, str | None, str | None, float | None]]:
        """(image id, category, brand, price) of every image: what search filters look at
        (product fields None for an image without a product)."""
        yield from self.db.conn.execute(
            "SELECT i.id, p.category, p.brand, p.price FROM images i LEFT JOIN products p ON p.id = i.product_id")

    def same_content_groups(self, since_version: int = -1) -> list[list[int]]:
        """The ids (ascending) of each set of two or more images with one content hash (byte-
        identical files), for the sets with an image written after ``since_version``."""
        return [sorted(int(i) for i in ids_text.split(",")) for (ids_text,) in self.db.conn.execute(
            "SELECT group_concat(id) FROM images GROUP BY content_hash HAVING count(*) > 1 "
            "AND max(version) > ?", (since_version,))]

    def item_groups(self, image_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """image id -> (item group, product id) of the images whose product declares an item
        group (``products.group_id``, not empty); the others are left out."""
        return {i: (group, product) for i, group, product in self._rows_by_id(
            "SELECT i.id, p.group_id, i.product_id FROM images i JOIN products p ON p.id = i.product_id "
            "WHERE p.group_id IS NOT NULL AND p.group_id != '' AND i.id IN ({})", image_ids)}

    def listed_images(self, image_ids: Iterable[int]) -> set[int]:
        """The images among ``image_ids`` that belong to a product (a listing from a feed)."""
        return {r[0] for r in self._rows_by_id(
            "SELECT id FROM images WHERE product_id IS NOT NULL AND id IN ({})", image_ids)}

    def image_products(self) -> list[tuple[int, str]]:
        """(image id, product id) of every image that belongs to a product, by id."""
        return self.db.conn.execute(
            "SELECT id, product_id FROM images WHERE product_id IS NOT NULL ORDER BY id").fetchall()

    def count_grouped_images(self) -> int:
        """The images whose product has two or more images (what a learned metric is fitted on)."""
        return self.db.conn.execute(
            "SELECT count(*) FROM images WHERE product_id IN (SELECT product_id FROM images "
            "WHERE product_id IS NOT NULL GROUP BY product_id HAVING count(*) > 1)").fetchone()[0]

    def images_of_products(self, product_ids: Iterable[str]) -> dict[str, list[int]]:
        """product id -> the ids of its images, ascending (products without images left out)."""
        out: dict[str, list[int]] = {}
        ids = list(dict.fromkeys(str(p) for p in product_ids))
        for n in range(0, len(ids), 500):
            chunk = ids[n:n + 500]
            for image_id, product in self.db.conn.execute(
                    f"SELECT id, product_id FROM images WHERE product_id IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY id", chunk):
                out.setdefault(product, []).append(image_id)
        return out

    def iter_file_stamps(self) -> Iterator[tuple[int, str, int | None, float | None]]:
        """(id, path, file size, mtime) of every image as indexed, by id."""
        yield from self.db.conn.execute("SELECT id, path, file_size, mtime FROM images ORDER BY id")

    def removed_since(self, version: int) -> list[int]:
        """Ids of the images removed after ``version`` (tombstones)."""
        return [r[0] for r in self.db.conn.execute("SELECT image_id FROM removed WHERE version > ?",
                                                   (version,))]

    def _rows_by_id(self, sql: str, image_ids: Iterable[int], params: tuple = ()) -> Iterator[tuple]:
        """The rows of ``sql`` for the ids: its ``IN ({})`` gets a chunk of at most 500 (SQLite
        limits parameters), after the leading ``params``."""
        conn = self.db.conn
        for chunk in _chunks([int(i) for i in image_ids], 500):
            yield from conn.execute(sql.replace("{}", ",".join("?" * len(chunk))), (*params, *chunk))

    # ------------------------------------------------------------------ projection storage
    def stored_projection_key(self) -> str | None:
        """The key of the stored PCA projection (engine.index.Projection), or None."""
        row = self.db.conn.execute("SELECT key FROM projection WHERE id=1").fetchone()
        return row[0] if row else None

    def stored_projection(self) -> bytes | None:
        """The stored PCA projection (Projection.to_bytes), or None."""
        row = self.db.conn.execute("SELECT data FROM projection WHERE id=1").fetchone()
        return row[0] if row else None

    def store_projection(self, key: str, data: bytes, fitted_on: int) -> None:
        with self.transaction(bump=False) as db:
            db.conn.execute("INSERT OR REPLACE INTO projection VALUES (1, ?, ?, ?, ?)",
                            (key, data, int(fitted_on), now_iso()))

    def stored_learned_metric(self) -> bytes | None:
        """The stored learned metric (engine.learned_metric.LearnedMetric.to_bytes), or None."""
        try:
            row = self.db.conn.execute("SELECT data FROM learned_metric WHERE id=1").fetchone()
        except sqlite3.OperationalError:     # a read-only catalog made before the table existed
            return None
        return row[0] if row else None

    def store_learned_metric(self, data: bytes | None) -> None:
        """Store the learned metric (None: forget it). The catalog's version moves on, so that
        searchers holding the previous metric read the new one."""
        with self.transaction() as db:
            if data is None:
                db.conn.execute("DELETE FROM learned_metric")
            else:
                db.conn.execute("INSERT OR REPLACE INTO learned_metric VALUES (1, ?, ?)", (data, now_iso()))

    # ------------------------------------------------------------------ owned stores
    @property
    def health(self) -> CatalogHealth:
        """The checks and repairs of the database (engine.catalog_health)."""
        return CatalogHealth(self)

    @property
    def decision_store(self) -> DecisionStore:
        """The duplicate finder's decisions and references (engine.decision_store)."""
        return DecisionStore(self)

    @property
    def image_texts(self) -> ImageTextStore:
        """The text read on the catalog's images (engine.image_text_store)."""
        return ImageTextStore(self)

    @property
    def case_store(self) -> CaseStore:
        """Brand-protection cases: offers checked, their matches and decisions (engine.case_store)."""
        return CaseStore(self)


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
