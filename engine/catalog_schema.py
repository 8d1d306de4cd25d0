"""The catalog database's schema: tables, indexes, the columns added since the first release, and
creating or migrating a database to it (engine.catalog runs it on open)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

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

#: Columns added to tables after their first release: (table, column, SQL type). Added on open
#: when missing (nullable, so older rows and older catalogs stay valid); write statements name
#: their columns, so a column another version adds never breaks them.
ADDED_COLUMNS = (
    # descriptors of the mirrored image at the mirrored keypoints (engine.features.mirror_of);
    # NULL: not computed yet (feature_store.backfill / `lookalike check --repair` fill it)
    ("local_features", "mirrored", "BLOB"),
)


def execute_statements(conn: sqlite3.Connection, sql: str) -> None:
    """Run the ';'-separated statements of ``sql`` (CREATE ... IF NOT EXISTS, no triggers) one by
    one inside the caller's transaction (``executescript`` would commit it first)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


def create_or_migrate(conn: sqlite3.Connection, db_path: Path, *, readonly: bool) -> None:
    """Create the schema, add missing columns (unless ``readonly``) and the first meta rows,
    inside the caller's write transaction. Raises CatalogError for a newer schema."""
    execute_statements(conn, SCHEMA)
    if not readonly:
        add_missing_columns(conn)
    version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    if version is None:
        conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('version', '0')")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (now_iso(),))
    elif int(version[0]) > SCHEMA_VERSION:
        raise CatalogError(f"{db_path}: made by a newer Lookalike (schema {version[0]}); upgrade the app")


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
