"""A damaged catalog database: finding what is damaged, and recovering every readable row.

:func:`diagnose` runs SQLite's ``quick_check`` (``integrity_check``) and, when it is not clean,
reads every table and index to name those that cannot be read (read-only).

:func:`recover_folder` (``lookalike check --repair``, under the write lock) copies every
readable row of every table into a fresh database made with the current schema: each table is
read in rowid ranges, and a range SQLite cannot read is split in two until the damaged rows are
isolated (they are lost). A file whose 100-byte header is damaged is read through a copy with a
rebuilt header. The recovered database then replaces ``catalog.db`` by an atomic rename; the
damaged file (and its ``-wal``) stay next to it as ``catalog.db.damaged-<UTC time>``: a user's
data is never deleted. The caller rebuilds the index from the recovered embeddings.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import struct
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from .catalog_schema import create_or_migrate
from .errors import CatalogBusyError, CatalogDamagedError, CatalogError
from .sqlite_damage import is_damage

_BATCH = 256                      # rows per read
_MAX_QUERIES = 50_000             # reads per table before a damaged range is given up as lost
_ROWID_MIN, _ROWID_MAX = -(2 ** 63), 2 ** 63 - 1
_MAGIC = b"SQLite format 3\x00"
_UNREADABLE = (sqlite3.DatabaseError, CatalogDamagedError)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Diagnosis:
    errors: list[str]                                  # quick_check's lines, or the read error
    tables: list[str] = field(default_factory=list)    # tables whose rows cannot all be read
    indexes: list[str] = field(default_factory=list)   # indexes that cannot be read

    @property
    def indexes_only(self) -> bool:
        """Only SQLite's indexes are damaged: REINDEX rebuilds them from the tables."""
        return bool(self.indexes) and not self.tables

    def describe(self) -> str:
        parts = []
        if self.tables:
            parts.append("tables " + ", ".join(self.tables))
        if self.indexes:
            parts.append("indexes " + ", ".join(self.indexes))
        return "; ".join(parts) if parts else "the file cannot be read"


def diagnose(conn: sqlite3.Connection, full: bool = False) -> Diagnosis | None:
    """None when SQLite finds the database sound, else what is damaged. Only reads."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]      # a constant name
    except _UNREADABLE as exc:
        rows = [getattr(exc, "reason", None) or str(exc)]
    if rows == ["ok"]:
        return None
    lines = [line.strip() for r in rows for line in str(r).splitlines()]
    diagnosis = Diagnosis([line for line in lines if line and not line.startswith("***")])
    _attribute(conn, diagnosis)
    try:
        entries = conn.execute("SELECT type, name, tbl_name FROM sqlite_master "
                               "WHERE type IN ('table', 'index')").fetchall()
    except _UNREADABLE:
        diagnosis.tables.append("sqlite_master")
        return diagnosis
    for kind, name, table in entries:
        if name.startswith("sqlite_") and kind == "table":
            continue
        try:
            if kind == "table":
                sql = f"SELECT * FROM {_q(name)} NOT INDEXED"
            else:
                cols = [r[2] for r in conn.execute(f"PRAGMA index_info({_q(name)})") if r[2]]
                if not cols:
                    continue
                order = ", ".join(_q(c) for c in cols)
                sql = f"SELECT {order} FROM {_q(table)} INDEXED BY {_q(name)} ORDER BY {order}"
            for _ in conn.execute(sql):
                pass
        except _UNREADABLE:
            target = diagnosis.tables if kind == "table" else diagnosis.indexes
            if name not in target:
                target.append(name)
        except sqlite3.Error:        # an index SQLite will not scan this way: not a damage sign
            pass
    return diagnosis


_NAMED = re.compile(r"(?:value in|column) (\w+)\.\w+|(?:from|in) index (\w+)")
_PAGE = re.compile(r"\b[Pp]age (\d+)")


def _attribute(conn: sqlite3.Connection, diagnosis: Diagnosis) -> None:
    """The tables and indexes that quick_check's lines name, directly ("NULL value in
    images.path", "missing from index X") or by page number (through SQLite's dbstat table,
    where it is compiled in and can read the file)."""
    names: dict[str, None] = {}
    pages: set[int] = set()
    for line in diagnosis.errors:
        for table, index in _NAMED.findall(line):
            names[table or index] = None
        pages.update(int(p) for p in _PAGE.findall(line))
    if pages:
        try:
            for (name,) in conn.execute("SELECT DISTINCT name FROM dbstat WHERE pageno IN "
                                        f"({','.join('?' * len(pages))})", sorted(pages)):
                names[name] = None
        except _UNREADABLE:
            pass
    try:
        kinds = dict(conn.execute("SELECT name, type FROM sqlite_master"))
    except _UNREADABLE:
        kinds = {}
    for name in names:
        target = diagnosis.indexes if kinds.get(name) == "index" else diagnosis.tables
        if name in kinds and name not in target:
            target.append(name)


# ---------------------------------------------------------------------- recovery
@dataclass
class Recovery:
    damaged_copy: Path | None = None                              # where the damaged file is kept
    tables: dict[str, tuple[int | None, int]] = field(default_factory=dict)  # name -> (before, after)
    lost_images: list[tuple[str, str | None]] = field(default_factory=list)  # (path, product id)

    def lost(self, table: str) -> int | None:
        before, after = self.tables.get(table, (None, 0))
        return None if before is None else max(before - after, 0)

    def summary(self) -> str:
        """One line: what was recovered, what was lost, what to do about it."""
        before, after = self.tables.get("images", (None, 0))
        if before is None:
            text = f"recovered {after} images (how many were lost is unknown)"
        else:
            text = f"recovered {after} of {before} images"
        lost = self.lost("images")
        if lost:
            text += f"; {lost} lost"
            if self.lost_images:
                text += " (e.g. " + ", ".join(p for p, _ in self.lost_images[:3]) + ")"
        others = [f"{t} {a} of {b}" for t, (b, a) in self.tables.items()
                  if t != "images" and b is not None and b > a]
        if others:
            text += "; other rows lost: " + ", ".join(others)
        if self.damaged_copy is not None:
            text += f"; the damaged file is kept as {self.damaged_copy.name}"
        return text


def recover_folder(directory: Path, *, lock_held: bool = False) -> Recovery:
    """Recover the catalog database of ``directory`` in place (see the module docstring). Takes
    the catalog's write lock unless the caller holds it (CatalogBusyError when another process
    writes). Raises CatalogError when nothing at all can be read."""
    from filelock import FileLock

    from .catalog import DB_NAME, LOCK_NAME
    from .catalog_storage import take_lock

    db_path = Path(directory) / DB_NAME
    if lock_held:
        return _recover_locked(db_path)
    lock = FileLock(str(Path(directory) / LOCK_NAME))
    if not take_lock(lock, 0.5, Path(directory)):
        raise CatalogBusyError(f"{directory}: catalog is busy (another Lookalike process is "
                               "writing to it)")
    try:
        return _recover_locked(db_path)
    finally:
        lock.release()


def _recover_locked(db_path: Path) -> Recovery:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    fresh = db_path.with_name(f"{db_path.name}.recovering-{stamp}")
    readable = db_path
    patched: Path | None = None
    try:
        with closing(_open_source(db_path)) as src:
            if not _schema_readable(src):
                patched = _with_rebuilt_header(db_path, stamp)
        if patched is not None:
            readable = patched
            with closing(_open_source(patched)) as src:
                if not _schema_readable(src):
                    raise _beyond_recovery(db_path)
        with closing(_open_source(readable)) as src:
            if "images" not in {n for n, _ in _source_schema(src, tables_only=True)}:
                raise _beyond_recovery(db_path)
        recovery = _copy_rows(readable, fresh)
        recovery.damaged_copy = _swap_in(db_path, fresh, stamp)
        return recovery
    except (sqlite3.Error, OSError) as exc:      # a full disk, an unwritable folder: one line
        from .catalog_storage import storage_error

        mapped = storage_error(exc, db_path.parent)
        if mapped is None:
            raise CatalogError(f"{db_path}: recovery failed ({exc}); the damaged file is unchanged") from exc
        raise mapped from exc
    finally:
        for leftover in (fresh, patched):
            if leftover is not None:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(str(leftover) + suffix).unlink(missing_ok=True)


def _beyond_recovery(db_path: Path) -> CatalogError:
    return CatalogError(f"{db_path}: the database is damaged beyond recovery (its table of contents "
                        "cannot be read); move it away and re-run `lookalike index` to start anew")


def _open_source(path: Path) -> sqlite3.Connection:
    """A connection that only reads the damaged file. ``writable_schema`` lets SQLite open a
    file shorter than its header says (a truncated copy) instead of calling it malformed."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("PRAGMA query_only=ON", "PRAGMA writable_schema=ON"):
        try:
            conn.execute(pragma)
        except sqlite3.DatabaseError:
            pass
    return conn


def _schema_readable(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT name, sql FROM sqlite_master").fetchall()
        return True
    except sqlite3.DatabaseError:
        return False


def _with_rebuilt_header(db_path: Path, stamp: str) -> Path | None:
    """A copy of the database (and its -wal) with a plausible 100-byte header where the first
    page's own one is damaged, or None when the file is too short to be a database."""
    size = db_path.stat().st_size
    with open(db_path, "rb") as fh:
        head = fh.read(8 * 65536)
    # the page size under which pages 2-8 start like b-tree pages (the first byte a page type)
    page_size = next((p for p in (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)
                      if size >= 2 * p and size % p == 0
                      and any(head[k * p] in (2, 5, 10, 13) for k in range(1, 8) if k * p < len(head))),
                     None)
    if page_size is None or head[100] not in (2, 5, 10, 13):    # page 1 must start a b-tree
        return None
    wal = Path(str(db_path) + "-wal")
    header = (_MAGIC + struct.pack(">H", page_size if page_size < 65536 else 1)
              + bytes([2 if wal.exists() else 1] * 2) + bytes([0, 64, 32, 32])
              + struct.pack(">IIIIIIIIIIII", 1, size // page_size, 0, 0, 1, 4, 0, 0, 1, 0, 0, 0)
              + bytes(20) + struct.pack(">II", 1, 3_045_000))
    copy = db_path.with_name(f"{db_path.name}.reading-{stamp}")
    shutil.copyfile(db_path, copy)
    if wal.exists():
        shutil.copyfile(wal, str(copy) + "-wal")
    with open(copy, "r+b") as fh:
        fh.write(header)
    return copy


def _copy_rows(src_path: Path, dst_path: Path) -> Recovery:
    recovery = Recovery()
    with closing(_open_source(src_path)) as src, \
            closing(sqlite3.connect(dst_path, isolation_level=None)) as dst:
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.execute("BEGIN IMMEDIATE")
        create_or_migrate(dst, dst_path, catalog_id=_marker_id(dst_path.parent))
        for name, sql in _source_schema(src):      # tables and indexes of a newer or other module
            try:
                dst.execute(sql.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
                            .replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
                            .replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ", 1))
            except sqlite3.Error:
                pass
        tables = [r[0] for r in dst.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        src_tables = {n for n, _ in _source_schema(src, tables_only=True)}
        for table in tables:
            if table in src_tables:
                recovery.tables[table] = _copy_table(src, dst, table)
        _drop_orphans(dst)
        recovery.lost_images = _lost_images(src, dst)
        dst.execute("COMMIT")
        dst.execute("PRAGMA journal_mode=WAL")
    return recovery


def _marker_id(directory: Path) -> str | None:
    """The catalog id of the folder's marker (the id stays if the meta table is lost)."""
    from .catalog_marker import read_marker

    try:
        marker = read_marker(directory)
    except CatalogError:
        return None
    return marker.catalog_id if marker else None


def _source_schema(src: sqlite3.Connection, tables_only: bool = False) -> list[tuple[str, str]]:
    kinds = "('table')" if tables_only else "('table', 'index')"
    try:
        return [(n, s) for n, s in src.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type IN {kinds} AND sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type DESC")]
    except sqlite3.DatabaseError:
        return []


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({_q(table)})")]
    except sqlite3.DatabaseError:
        return []


def _count(src: sqlite3.Connection, table: str) -> int | None:
    """The table's row count before the damage, when any of its b-trees can still count it."""
    for sql in (f"SELECT count(*) FROM {_q(table)}", f"SELECT count(*) FROM {_q(table)} NOT INDEXED"):
        try:
            return int(src.execute(sql).fetchone()[0])
        except sqlite3.DatabaseError:
            continue
    return None


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> tuple[int | None, int]:
    """Copy the readable rows of ``table``; returns (rows before, rows copied)."""
    cols = [c for c in _columns(dst, table) if c in set(_columns(src, table))]
    if not cols:
        return _count(src, table), 0
    names = ", ".join(_q(c) for c in cols)
    select = (f"SELECT rowid, {names} FROM {_q(table)} WHERE rowid BETWEEN ? AND ? "
              f"ORDER BY rowid LIMIT {_BATCH}")
    verb = "INSERT OR REPLACE" if table == "meta" else "INSERT OR IGNORE"   # meta: the old values win
    insert = f"{verb} INTO {_q(table)} ({names}) VALUES ({', '.join('?' * len(cols))})"
    queries = 0

    def copy_range(lo: int, hi: int) -> None:
        nonlocal queries
        pos = lo
        while pos <= hi and queries < _MAX_QUERIES:
            queries += 1
            try:
                rows = src.execute(select, (pos, hi)).fetchall()
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc) or pos == hi:
                    return                          # the damaged row (or nothing) is lost
                mid = pos + (hi - pos) // 2
                copy_range(pos, mid)
                copy_range(mid + 1, hi)
                return
            if not rows:
                return
            for row in rows:
                try:
                    dst.execute(insert, row[1:])
                except sqlite3.Error:               # a damaged value that fits no column
                    pass
            pos = rows[-1][0] + 1

    copy_range(_ROWID_MIN, _ROWID_MAX)
    copied = dst.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
    return _count(src, table), int(copied)


def _drop_orphans(dst: sqlite3.Connection) -> None:
    """Rows that hang off lost images or products: features and text of an image that is gone
    are dropped, links to a product that is gone are cleared."""
    dst.execute("DELETE FROM local_features WHERE image_id NOT IN (SELECT id FROM images)")
    dst.execute("DELETE FROM image_text WHERE image_id NOT IN (SELECT id FROM images)")
    dst.execute("UPDATE images SET product_id=NULL WHERE product_id IS NOT NULL "
                "AND product_id NOT IN (SELECT id FROM products)")


def _lost_images(src: sqlite3.Connection, dst: sqlite3.Connection) -> list[tuple[str, str | None]]:
    """(path, product id) of the images that were not recovered, as far as the damaged file's
    indexes of paths and of products can still be read (they hold the id with the key)."""
    try:
        before = src.execute("SELECT id, path FROM images INDEXED BY sqlite_autoindex_images_1 "
                             "ORDER BY path").fetchall()
    except sqlite3.Error:
        return []
    try:
        links = dict(src.execute("SELECT id, product_id FROM images INDEXED BY images_product "
                                 "WHERE product_id IS NOT NULL").fetchall())
    except sqlite3.Error:
        links = {}
    kept = {r[0] for r in dst.execute("SELECT id FROM images")}
    products = {r[0] for r in dst.execute("SELECT id FROM products")}
    return [(p, links.get(i) if links.get(i) in products else None)
            for i, p in before if i not in kept and isinstance(p, str)]


def _swap_in(db_path: Path, fresh: Path, stamp: str) -> Path:
    """Put ``fresh`` in place of ``db_path``; the damaged file and its -wal are kept under
    ``catalog.db.damaged-<stamp>`` (hard links where the file system allows, else copies)."""
    kept = db_path.with_name(f"{db_path.name}.damaged-{stamp}")
    wal, shm = Path(str(db_path) + "-wal"), Path(str(db_path) + "-shm")
    with open(fresh, "rb+") as fh:
        os.fsync(fh.fileno())
    _keep(db_path, kept)
    if wal.exists():
        _keep(wal, Path(str(kept) + "-wal"))
    # the damaged database's WAL must not be applied to the new file: gone first (kept above)
    wal.unlink(missing_ok=True)
    shm.unlink(missing_ok=True)
    os.replace(fresh, db_path)
    try:
        fd = os.open(db_path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:       # a folder that cannot be opened or fsynced (Windows): the rename stands
        pass
    return kept


def _keep(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

