"""The catalog database's schema: tables, indexes, the columns added since the first release, and
creating or migrating a database to it (engine.catalog_marker.prepare runs it on open, under
the write lock; a read-only opening only checks it with schema_gaps)."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from .errors import CatalogError

SCHEMA_VERSION = 1

SCHEMA = """
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
-- the text read on each image (engine.text_reading) by an import with read_text. reader: the
-- READER_ID of what read it, words: JSON list of its normalised words, lines: JSON
-- [[text, confidence, [x0, y0, ..., x3, y3]], ...] as read (no semicolons in comments here)
CREATE TABLE IF NOT EXISTS image_text (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    reader TEXT NOT NULL, words TEXT NOT NULL, lines TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projection (
    id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL, data BLOB NOT NULL,
    fitted_on INTEGER NOT NULL, fitted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS learned_metric (
    id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL, fitted_at TEXT NOT NULL
);
"""

#: The duplicate finder's decisions (engine.decision_store): created with the schema, and on the
#: next write of a catalog made before them; a catalog without them reads as holding no decisions,
#: so they are not among the SCHEMA_NAMES a read-only open requires.
DECISION_SCHEMA = """
CREATE TABLE IF NOT EXISTS pair_decisions (
    a TEXT NOT NULL, b TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('not_duplicate', 'confirmed')),
    at TEXT NOT NULL, a_id INTEGER, b_id INTEGER, score REAL,
    PRIMARY KEY (a, b), CHECK (a <= b)
);
CREATE TABLE IF NOT EXISTS dupe_references (
    content_hash TEXT PRIMARY KEY, image_id INTEGER, at TEXT NOT NULL
);
"""

#: Brand-protection cases (engine.case_store): offers checked against the catalog, with their best
#: matches, the edits found and the user's decision. Created like DECISION_SCHEMA: with the schema,
#: and on a catalog's first case. ``offer``: the offer's key (its CSV key column, else its image's
#: path); ``number``: its number within the case, for people; ``decided_sha256``: the image file's
#: SHA-256 when decided (a later file under the same key is another version of the offer).
CASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    name TEXT PRIMARY KEY, created_at TEXT NOT NULL, sources TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS case_offers (
    case_name TEXT NOT NULL, number INTEGER NOT NULL, offer TEXT NOT NULL,
    image_path TEXT NOT NULL, sha256 TEXT, fields TEXT NOT NULL DEFAULT '{}',
    checked_at TEXT, model_id TEXT, score REAL, strength TEXT, matches TEXT, edits TEXT, error TEXT,
    decision TEXT CHECK (decision IN ('infringing', 'not_infringing', 'unsure')),
    note TEXT, decided_at TEXT, decided_sha256 TEXT,
    PRIMARY KEY (case_name, offer), UNIQUE (case_name, number)
);
"""

#: Columns added to tables after their first release: (table, column, SQL type). Added on open
#: when missing (nullable, so older rows and older catalogs stay valid); write statements name
#: their columns, so a column another version adds never breaks them.
ADDED_COLUMNS = (
    # descriptors of the mirrored image at the mirrored keypoints (engine.features.mirror_of);
    # NULL: not computed yet (feature_store.backfill / `lookalike check --repair` fill it)
    ("local_features", "mirrored", "BLOB"),
    # the keypoints a dense detection adds (engine.features.dense_of): the duplicate scan's
    # re-check reads them instead of decoding the image; NULL: not computed yet (as above)
    ("local_features", "dense", "BLOB"),
)


def execute_statements(conn: sqlite3.Connection, sql: str) -> None:
    """Run the ';'-separated statements of ``sql`` (CREATE ... IF NOT EXISTS, no triggers) one by
    one inside the caller's transaction (``executescript`` would commit it first)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


class LazyTables:
    """Tables a catalog gets on its first write of their kind (DECISION_SCHEMA, CASE_SCHEMA; a new
    catalog has them from the start): until then it reads as holding none of their rows, so
    reading never writes and a read-only catalog can be read."""

    def __init__(self, sql: str):
        self.sql = sql
        self.names = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", sql))
        self._ready: set[str] = set()       # databases (by path) known to have them, in this process
        self._lock = threading.Lock()

    def present(self, catalog) -> bool:
        key = str(catalog.db_path)
        if key in self._ready:
            return True
        tables = {r[0] for r in catalog.db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if self.names <= tables:
            self._ready.add(key)
            return True
        return False

    def ensure(self, catalog) -> None:
        """Create them in a catalog made before them (a write transaction; another process doing
        the same is waited for)."""
        with self._lock:
            if not self.present(catalog):
                with catalog.transaction(bump=False) as db:
                    execute_statements(db.conn, self.sql)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def create_or_migrate(conn: sqlite3.Connection, db_path: Path, *, catalog_id: str | None = None) -> None:
    """Create the schema, add missing columns and the first meta rows (with ``catalog_id``),
    inside the caller's write transaction, holding the write lock. Raises CatalogError for a
    newer schema."""
    execute_statements(conn, SCHEMA)
    execute_statements(conn, DECISION_SCHEMA)
    execute_statements(conn, CASE_SCHEMA)
    add_missing_columns(conn)
    version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if version is None:
        conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('version', '0')")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (now_iso(),))
        if catalog_id:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('catalog_id', ?)", (catalog_id,))
    elif int(version[0]) > SCHEMA_VERSION:
        raise CatalogError(f"{db_path}: made by a newer Lookalike (schema {version[0]}); upgrade the app")


#: The tables and indexes SCHEMA creates, by name.
SCHEMA_NAMES = tuple(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", SCHEMA))


def schema_gaps(conn: sqlite3.Connection, db_path: Path, *, columns: bool) -> list[str]:
    """What a catalog database lacks of the schema (tables and indexes; ``columns``: also the
    columns of ADDED_COLUMNS), reading only. Raises CatalogError for a newer schema."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    if "meta" in names:
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and str(row[0]).isdigit() and int(row[0]) > SCHEMA_VERSION:
            raise CatalogError(f"{db_path}: made by a newer Lookalike (schema {row[0]}); upgrade the app")
    gaps = [n for n in SCHEMA_NAMES if n not in names]
    if columns:
        gaps += [f"{t}.{c}" for t, c, _kind in ADDED_COLUMNS if t in names and not has_column(conn, t, c)]
    return gaps


#: Tables a catalog cannot be read without (a database lacking one is not a usable catalog).
CORE_TABLES = ("meta", "products", "images")


def read_stand_ins(gaps: list[str]) -> list[str]:
    """CREATE TEMP TABLE statements standing in, empty, for the tables an older catalog lacks, so
    it can be read where it cannot be brought up to date (read-only media): temporary tables live
    in the connection, not in the file. Foreign keys are dropped (they cannot cross databases).
    Missing indexes only cost speed. Raises ValueError for a missing core table."""
    missing_core = [t for t in CORE_TABLES if t in gaps]
    if missing_core:
        raise ValueError(f"no {', '.join(missing_core)} table")
    out = []
    for statement in SCHEMA.split(";"):
        body = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))
        found = re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", body)
        if found and found.group(1) in gaps:
            body = re.sub(r"\s+REFERENCES \w+\(\w+\)(\s+ON DELETE (CASCADE|SET NULL))?", "", body)
            out.append(body.replace("CREATE TABLE", "CREATE TEMP TABLE", 1).strip())
    return out


def database_content(db_path: Path) -> str | None:
    """What the SQLite file holds: "catalog" (Lookalike's ``meta`` table with a ``schema`` row),
    "empty" (an empty file, no tables), "other" (tables, but not Lookalike's), or None (missing
    or unreadable: not SQLite, damaged, locked; the catalog's opening reports it). Reads only."""
    try:
        if db_path.stat().st_size == 0:
            return "empty"
    except OSError:
        return None
    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        conn.execute("PRAGMA query_only=1")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return "empty"
        if "meta" in tables and conn.execute("SELECT 1 FROM meta WHERE key='schema'").fetchone():
            return "catalog"
        return "other"
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def add_missing_columns(conn: sqlite3.Connection) -> None:
    """Idempotent migration: add the columns of ADDED_COLUMNS a catalog lacks."""
    for table, column, kind in ADDED_COLUMNS:
        if not has_column(conn, table, column):
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):      # another process just added it
                    raise


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return column in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def image_text_values(text: Sequence) -> tuple[str, str, str]:
    """(reader, words, lines) -> the image_text columns (JSON; box corners rounded to pixels)."""
    reader, words, lines = text
    packed = [[str(t), round(float(c), 4), [round(float(v)) for corner in box for v in corner]]
              for t, c, box in lines]
    return str(reader), json.dumps(list(words), ensure_ascii=False), json.dumps(packed, ensure_ascii=False)
