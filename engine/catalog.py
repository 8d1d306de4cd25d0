"""The catalog: one folder holding the SQLite database, the HNSW index and a thumbnail cache.

Layout of a catalog folder::

    catalog.db        SQLite (WAL): products, images (+ embeddings), ingest_errors, removed, meta
    index.bin/.json   the HNSW index over image embeddings (see engine.index)
    thumbnails/       cached JPEG thumbnails, keyed by content hash and size
    write.lock        held by the one process that writes (imports, removals)

Every write transaction bumps ``meta.version`` and stamps the rows it touches with it; removals
leave a tombstone in ``removed``. The index file records the version it reflects, so an index that
is behind (a crash, another process) is brought up to date from the database on open instead of
being trusted blindly. Embeddings live in the database, so the index can always be rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import sqlite_utils
from filelock import FileLock, Timeout

from .errors import CatalogBusyError, CatalogError, ImageError
from .faults import fault_point
from .index import GRAPH_DIM, PROJECTION_DIM, Projection, VectorIndex
from .paths import default_catalog_dir

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_NAME = "catalog.db"
INDEX_NAME = "index.bin"
LOCK_NAME = "write.lock"
THUMBNAIL_DIR = "thumbnails"

PRODUCT_COLUMNS = (
    "id", "title", "brand", "price", "currency", "category", "url", "description", "sku", "gtin",
    "group_id",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, title TEXT, brand TEXT, price REAL, currency TEXT, category TEXT,
    url TEXT, description TEXT, sku TEXT, gtin TEXT, group_id TEXT, extra TEXT,
    remote_images TEXT, source TEXT, updated_at TEXT
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, content_hash TEXT NOT NULL,
    file_size INTEGER, mtime REAL, width INTEGER, height INTEGER,
    product_id TEXT REFERENCES products(id) ON DELETE SET NULL,
    model_id TEXT NOT NULL, embedding BLOB NOT NULL, labels TEXT,
    added_at TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_product ON images(product_id);
CREATE INDEX IF NOT EXISTS images_hash ON images(content_hash);
CREATE INDEX IF NOT EXISTS images_version ON images(version);
CREATE INDEX IF NOT EXISTS products_category ON products(category);
CREATE INDEX IF NOT EXISTS products_brand ON products(brand);
CREATE TABLE IF NOT EXISTS removed (image_id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ingest_errors (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ingest_errors_path ON ingest_errors(path);
CREATE TABLE IF NOT EXISTS local_features (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    version INTEGER NOT NULL, keypoints BLOB NOT NULL, descriptors BLOB NOT NULL,
    mirrored BLOB
);
CREATE TABLE IF NOT EXISTS projection (
    id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL, data BLOB NOT NULL,
    fitted_on INTEGER NOT NULL, fitted_at TEXT NOT NULL
);
"""

#: Columns added to tables after their first release: (table, column, SQL type). Added on open
#: when missing (nullable, so older rows and older catalogs stay valid); write statements name
#: their columns, so a column another version adds never breaks them.
_ADDED_COLUMNS = (
    # descriptors of the mirrored image at the mirrored keypoints (engine.features.mirror_of);
    # NULL: not computed yet (feature_store.backfill / `lookalike check --repair` fill it)
    ("local_features", "mirrored", "BLOB"),
)

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


def execute_statements(conn: sqlite3.Connection, sql: str) -> None:
    """Run the ';'-separated statements of ``sql`` (CREATE ... IF NOT EXISTS, no triggers) one by
    one inside the caller's transaction (``executescript`` would commit it first)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


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

    def __init__(self, directory: Path, *, readonly: bool = False):
        self.directory = Path(directory)
        self.db_path = self.directory / DB_NAME
        self.index_path = self.directory / INDEX_NAME
        self.thumbnails_dir = self.directory / THUMBNAIL_DIR
        self.readonly = readonly
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._file_lock: FileLock | None = None
        self._lock_depth = 0
        self._index: VectorIndex | None = None
        self._index_lock = threading.Lock()
        self._sync_lock = threading.RLock()     # one thread applies database changes to the index
        self._projection: Projection | None = None
        self._closed = False
        self._columns: dict[tuple[str, str], bool] = {}
        self._init_db()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: str | os.PathLike | None = None, *, create: bool = True,
             readonly: bool = False) -> "Catalog":
        directory = Path(directory).expanduser() if directory else default_catalog_dir()
        if directory.exists() and not directory.is_dir():
            raise CatalogError(f"{directory}: not a folder")
        if not (directory / DB_NAME).exists():
            if not create:
                raise CatalogError(f"{directory}: no catalog here (no {DB_NAME})")
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(f"{directory}: cannot create the catalog folder ({exc.strerror})") from exc
        return cls(directory, readonly=readonly)

    def _init_db(self) -> None:
        try:
            conn = self.db.conn
            # schema, migration and meta in one write transaction: BEGIN IMMEDIATE waits (busy
            # timeout) for a process that is creating or migrating the same catalog right now,
            # where statements run one by one could meet its half-made schema ("database is locked")
            with self.transaction(bump=False):
                execute_statements(conn, _SCHEMA)
                if not self.readonly:
                    self._add_missing_columns(conn)
                version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if version is None:
                    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('version', '0')")
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (now_iso(),))
                elif int(version[0]) > SCHEMA_VERSION:
                    raise CatalogError(
                        f"{self.db_path}: made by a newer Lookalike (schema {version[0]}); upgrade the app")
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{self.db_path}: not a usable catalog database ({exc})") from exc

    @staticmethod
    def _add_missing_columns(conn: sqlite3.Connection) -> None:
        """Idempotent migration: add the columns of _ADDED_COLUMNS a catalog lacks."""
        for table, column, kind in _ADDED_COLUMNS:
            have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):      # another process just added it
                        raise

    @property
    def db(self) -> sqlite_utils.Database:
        """A per-thread connection (sqlite3 connections must not cross threads)."""
        if self._closed:
            raise CatalogError(f"{self.directory}: catalog is closed")
        db = getattr(self._local, "db", None)
        if db is None:
            # autocommit mode: transactions are explicit (see transaction())
            conn = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            db = sqlite_utils.Database(conn)
            self._local.db = db
            self._all_connections().append(conn)
        return db

    def _all_connections(self) -> list:
        if not hasattr(self, "_connections"):
            self._connections = []
        return self._connections

    def close(self) -> None:
        if self._closed:
            return
        with self._index_lock:
            self._index = None
        for conn in self._all_connections():
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._connections = []
        self._closed = True

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ locking / transactions
    @contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the catalog's inter-process write lock (re-entrant within this object)."""
        if self.readonly:
            raise CatalogError(f"{self.directory}: catalog is open read-only")
        with self._write_lock:
            if self._lock_depth == 0:
                self._file_lock = FileLock(str(self.directory / LOCK_NAME))
                try:
                    self._file_lock.acquire(timeout=0.5)
                except Timeout:
                    raise CatalogBusyError(
                        f"{self.directory}: catalog is busy (another Lookalike process is writing to it)"
                    ) from None
            self._lock_depth += 1
            try:
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
            conn.execute("BEGIN IMMEDIATE")
            try:
                if bump:
                    row = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
                    self.current_version = int(row[0]) + 1 if row else 1
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)",
                                 (str(self.current_version),))
                yield db
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

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
        local_features = (version, keypoints blob, descriptors blob[, mirrored descriptors blob])
        (see engine.features).
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
                    lf = tuple(r["local_features"]) + (None,) * (4 - len(r["local_features"]))
                    conn.execute("INSERT OR REPLACE INTO local_features "
                                 "(image_id, version, keypoints, descriptors, mirrored) VALUES (?,?,?,?,?)",
                                 (ids[-1], *lf[:4]))
                else:       # features of the old content are stale
                    conn.execute("DELETE FROM local_features WHERE image_id=?", (ids[-1],))
            fault_point("put-images-before-commit")
        return ids

    # ------------------------------------------------------------------ local features
    def local_feature_blobs(self, image_ids: Sequence[int], version: int, *, descriptors: bool = True
                            ) -> dict[int, tuple[bytes, bytes | None, bytes | None]]:
        """image id -> (keypoints, descriptors, mirrored descriptors or None) blobs of the given
        features version; ``descriptors=False``: the keypoints blob only (None for the others)."""
        out: dict[int, tuple[bytes, bytes | None, bytes | None]] = {}
        conn = self.db.conn
        mirrored = "mirrored" if descriptors and self._has_column("local_features", "mirrored") else "NULL"
        desc_col = "descriptors" if descriptors else "NULL"
        for chunk in _chunks([int(i) for i in image_ids], 500):
            marks = ",".join("?" * len(chunk))
            for i, kp, desc, mdesc in conn.execute(
                    f"SELECT image_id, keypoints, {desc_col}, {mirrored} FROM local_features "
                    f"WHERE version=? AND image_id IN ({marks})", (version, *chunk)):
                out[i] = (kp, desc, mdesc)
        return out

    def put_local_feature_blobs(self, rows: Sequence[tuple]) -> None:
        """Store (image_id, version, keypoints, descriptors[, mirrored descriptors]) rows
        (backfilling older catalogs)."""
        if rows:
            rows = [tuple(r) + (None,) * (5 - len(r)) for r in rows]
            with self.transaction(bump=False) as db:
                db.conn.executemany(
                    "INSERT OR REPLACE INTO local_features (image_id, version, keypoints, descriptors, "
                    "mirrored) SELECT ?,?,?,?,? WHERE EXISTS (SELECT 1 FROM images WHERE id=?)",
                    [(*r[:5], r[0]) for r in rows])

    def images_without_local_features(self, version: int, *, mirrored: bool = False) -> list[tuple[int, str]]:
        """(image id, path) of the images lacking local features of ``version`` (``mirrored``: or
        lacking their mirrored descriptors)."""
        also = ""
        if mirrored:        # a catalog not yet migrated (opened read-only) has none
            also = " OR f.mirrored IS NULL" if self._has_column("local_features", "mirrored") else " OR 1"
        return list(self.db.conn.execute(
            "SELECT i.id, i.path FROM images i LEFT JOIN local_features f "
            f"ON f.image_id = i.id AND f.version = ? WHERE f.image_id IS NULL{also} ORDER BY i.id", (version,)))

    def _has_column(self, table: str, column: str) -> bool:
        # a read-only catalog made before the column existed is not migrated
        key = (table, column)
        if key not in self._columns:
            self._columns[key] = column in {r[1] for r in self.db.conn.execute(f"PRAGMA table_info({table})")}
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
        index = self._loaded_index()
        if index is not None:
            index.remove(ids)
            self._save_index(index)
        return n

    def remove_paths(self, paths: Iterable[str | os.PathLike]) -> int:
        """Remove images by file path, or every image under a folder path."""
        ids: list[int] = []
        conn = self.db.conn
        for p in paths:
            p = os.path.abspath(os.path.expanduser(p))
            ids += [r[0] for r in conn.execute(
                "SELECT id FROM images WHERE path=? OR substr(path, 1, ?)=?",
                (p, len(p) + 1, p.rstrip(os.sep) + os.sep))]
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

    def image_record(self, image_id: int) -> dict | None:
        row = self.db.conn.execute(self._RECORD_SQL + " WHERE i.id=?", (int(image_id),)).fetchone()
        return self._record(row) if row else None

    def image_records(self, image_ids: Sequence[int]) -> list[dict]:
        """Records joined with product data, in the order of ``image_ids`` (missing ids skipped)."""
        found: dict[int, dict] = {}
        conn = self.db.conn
        for chunk in _chunks([int(i) for i in image_ids], 500):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(self._RECORD_SQL + f" WHERE i.id IN ({marks})", chunk):
                found[row[0]] = self._record(row)
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
        blobs: dict[int, bytes] = {}
        conn = self.db.conn
        for chunk in _chunks([int(i) for i in image_ids], 500):
            marks = ",".join("?" * len(chunk))
            for i, b in conn.execute(f"SELECT id, embedding FROM images WHERE id IN ({marks})", chunk):
                blobs[i] = b
        missing = [i for i in image_ids if int(i) not in blobs]
        if missing:
            raise CatalogError(f"{self.db_path}: images {missing[:5]} have no stored embedding")
        return unpack_embeddings([blobs[int(i)] for i in image_ids], self.embedding_dim or 0)

    def iter_embeddings(self, batch: int = 5000, *, since_version: int = -1
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, embeddings) in batches, for images written after ``since_version``."""
        conn = self.db.conn
        last = -1
        while True:
            rows = conn.execute(
                "SELECT id, embedding FROM images WHERE id > ? AND version > ? ORDER BY id LIMIT ?",
                (last, since_version, batch)).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            yield ids, unpack_embeddings([r[1] for r in rows], 0)
            last = rows[-1][0]

    # ------------------------------------------------------------------ statistics
    def count_images(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM images").fetchone()[0]

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
        index = self.index()
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
            "index": index.info() if index is not None else None,
        }

    # ------------------------------------------------------------------ index
    def _loaded_index(self) -> VectorIndex | None:
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
                dim = self.embedding_dim
                if dim is None:
                    return None
                self._index = self._open_index(dim)
                return self._index
            index = self._index
        self.sync_index(index)
        return index

    def _open_index(self, dim: int) -> VectorIndex:
        """Load the saved index and check it against the database (the cheap consistency check
        on open): an index claiming a version the database never reached (a restored or replaced
        database), or whose vector count differs from the image count once brought up to date
        (a damaged or mismatched file), is rebuilt from the stored embeddings."""
        index = VectorIndex.load_or_create(self.index_path, dim, self.projection())
        with self._sync_lock, self._read_snapshot():
            version = self.version
            if index.version > version:
                reason = f"index is at version {index.version}, the database at {version}"
            else:
                self._sync_locked(index, save=False)
                count = self.count_images()
                if len(index) == count:
                    reason = None
                else:
                    reason = f"index holds {len(index)} vectors for {count} images"
            if reason is not None:
                log.warning("%s: %s; rebuilding it from the stored embeddings", self.index_path, reason)
                index = VectorIndex.create(dim, ef=index.ef, M=index.M, ef_construction=index.ef_construction,
                                           capacity=self.count_images(), projection=self.projection())
                self._sync_locked(index, save=False)
        if index.dirty:
            self._save_index(index)
        return index

    @contextmanager
    def _read_snapshot(self) -> Iterator[None]:
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

    # ------------------------------------------------------------------ projection
    def projection_key(self) -> str | None:
        row = self.db.conn.execute("SELECT key FROM projection WHERE id=1").fetchone()
        return row[0] if row else None

    def projection(self) -> Projection | None:
        """The catalog's PCA projection for its index, or None (full dims)."""
        key = self.projection_key()
        if key is None:
            return None
        if self._projection is None or self._projection.key != key:
            row = self.db.conn.execute("SELECT data FROM projection WHERE id=1").fetchone()
            self._projection = Projection.from_bytes(row[0])
        return self._projection

    def projection_due(self) -> bool:
        dim = self.embedding_dim
        if dim is None or dim <= GRAPH_DIM:
            return False                       # nothing to gain
        n = self.count_images()
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
        with self.writer():
            ids = np.array([r[0] for r in self.db.conn.execute("SELECT id FROM images")], np.int64)
            if len(ids) < 2:
                raise CatalogError(f"{self.directory}: too few images to fit a projection")
            rng = np.random.default_rng(seed)
            pick = np.sort(rng.choice(ids, size=min(sample, len(ids)), replace=False))
            projection = Projection.fit(self.embeddings(pick.tolist()), dim or PROJECTION_DIM,
                                        fitted_on=len(ids))
            with self.transaction(bump=False) as db:
                db.conn.execute("INSERT OR REPLACE INTO projection VALUES (1, ?, ?, ?, ?)",
                                (projection.key, projection.to_bytes(), projection.fitted_on, now_iso()))
            self._projection = projection
            self.rebuild_index(**index_params)
        return projection

    def maybe_fit_projection(self) -> Projection | None:
        """Fit (or refit) the projection when the catalog has outgrown the current one."""
        if self.readonly or not self.projection_due():
            return None
        return self.fit_projection()

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
            sims = self.embeddings(cand.tolist()) @ q
            order = np.argsort(-sims, kind="stable")[:k]
            out_ids[row], out_sims[row] = cand[order], sims[order]
        return out_ids, out_sims

    def sync_index(self, index: VectorIndex | None = None, *, save: bool | None = None) -> int:
        """Apply database changes newer than the index's version. Returns the number applied."""
        index = index or self._loaded_index()
        if index is None:
            return 0
        with self._sync_lock:
            return self._sync_locked(index, save)

    def _sync_locked(self, index: VectorIndex, save: bool | None) -> int:
        target = self.version
        if index.version >= target:
            if save and index.dirty:
                self._save_index(index)
            return 0
        changed = 0
        conn = self.db.conn
        gone = [r[0] for r in conn.execute("SELECT image_id FROM removed WHERE version > ?", (index.version,))]
        if gone:
            changed += index.remove(gone)
        for ids, vecs in self.iter_embeddings(since_version=index.version):
            index.add(ids, vecs)
            changed += len(ids)
        index.version = target
        if save is None:
            save = not self.readonly
        if save and (changed or index.dirty):
            self._save_index(index)
        return changed

    def _save_index(self, index: VectorIndex) -> None:
        """Save the index, only while holding the write lock: a process that merely reads (a
        search while another process imports) never writes the index files; the writer does."""
        if self.readonly:
            return
        with self._sync_lock:
            if self._lock_depth > 0:           # this catalog object is the writer
                self._write_index_file(index)
                return
            lock = FileLock(str(self.directory / LOCK_NAME))
            try:
                lock.acquire(timeout=0)
            except Timeout:                    # another process writes; it saves the index
                return
            try:
                self._write_index_file(index)
            finally:
                lock.release()

    def _write_index_file(self, index: VectorIndex) -> None:
        try:
            index.save(self.index_path)
        except OSError as exc:  # a stale index is recovered from the database on next open
            raise CatalogError(f"{self.index_path}: cannot save the index ({exc.strerror})") from exc

    def rebuild_index(self, **params) -> VectorIndex:
        """Build a fresh index from the stored embeddings and save it."""
        dim = self.embedding_dim
        if dim is None:
            raise CatalogError(f"{self.directory}: catalog is empty, nothing to index")
        index = VectorIndex.create(dim, projection=self.projection(),
                                   capacity=max(self.count_images(), 1), **params)
        for ids, vecs in self.iter_embeddings():
            index.add(ids, vecs)
        index.version = self.version
        self._save_index(index)
        with self._index_lock:
            self._index = index
        return index

    # ------------------------------------------------------------------ thumbnails
    def thumbnail(self, image_id: int, size: int = 256) -> Path:
        """A cached JPEG thumbnail (longest side ``size``), created on first use. Qt-free; call
        it off any UI thread. Raises ImageError if the image cannot be read."""
        import cv2

        from .imaging import load_image

        row = self.db.conn.execute("SELECT path, content_hash FROM images WHERE id=?",
                                   (int(image_id),)).fetchone()
        if row is None:
            raise CatalogError(f"{self.directory}: no image with id {image_id}")
        path, digest = row
        out = self.thumbnails_dir / digest[:2] / f"{digest[:32]}-{size}.jpg"
        if out.exists():
            return out
        rgb = load_image(path, min_short_side=size)
        h, w = rgb.shape[:2]
        scale = size / max(h, w)
        if scale < 1:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
        if not ok:
            raise ImageError(path, "cannot encode a thumbnail")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, out)
        return out


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
