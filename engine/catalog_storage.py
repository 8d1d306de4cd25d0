"""Opening the catalog database, and storage failures as one-line errors.

A writable catalog connects normally, in WAL mode. A read-only one (search, info, export, check,
the duplicate listing) opens its database with a ``file:...?mode=ro`` URI, so nothing can write it
by accident. SQLite reads a WAL database only where its ``-wal`` and ``-shm`` files exist or can
be created (https://sqlite.org/wal.html#readonly); on read-only media (a DVD, a share, another
user's folder) they usually cannot, and the database is opened ``immutable=1``
(https://sqlite.org/uri.html#uriimmutable: no locks, no ``-shm``; it assumes nobody changes the
file meanwhile, which holds for read-only media; in another user's folder that user could, and a
long-lived reader may then see errors until it reopens). Immutable mode reads the database file
alone, so a ``-wal`` file holding commits not yet merged into it is refused instead of silently
ignored.

:func:`storage_error` maps a full disk (SQLITE_FULL, ENOSPC, EDQUOT) to :class:`DiskFullError`
and a folder or file that cannot be written (SQLITE_READONLY, EACCES, EPERM, EROFS) to
:class:`CatalogReadOnlyError`, both naming the catalog folder.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from filelock import BaseFileLock, Timeout

from .errors import CatalogError, CatalogReadOnlyError, DiskFullError
from .sqlite_damage import DamageAwareConnection

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READONLY_ERRNOS = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                    errno.EROFS: "read-only file system"}


def connect(db_path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), safe to hand between threads
    one at a time; SQLite's damage errors on it are CatalogDamagedErrors (engine.sqlite_damage).
    Raises CatalogReadOnlyError for a writable catalog in a folder that cannot be written."""
    db_path = Path(db_path)
    if readonly:
        uri = db_path.absolute().as_uri() + "?mode=ro"       # (as_uri escapes ? and # in names)
        if _needs_immutable(db_path):
            uri += "&immutable=1"
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False, isolation_level=None,
                               factory=DamageAwareConnection)
    else:
        folder = db_path.parent
        if not os.access(folder, os.W_OK) or (db_path.exists() and not os.access(db_path, os.W_OK)):
            raise CatalogReadOnlyError(folder)
        conn = sqlite3.connect(db_path, timeout=30, check_same_thread=False, isolation_level=None,
                               factory=DamageAwareConnection)
    conn.path = str(db_path)                   # the file its damage errors name (not the URI)
    try:
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except Exception:                          # sqlite3.Error, CatalogDamagedError
        conn.close()
        raise
    return conn


def tidy_after_reading(db_path: Path) -> None:
    """Remove the empty -wal/-shm files SQLite made for read-only connections (which cannot
    remove them), so reading leaves the folder as it was: a plain connection that reads once and
    closes lets SQLite do it, only when it is the last connection (a writer elsewhere keeps them)
    and its -wal holds nothing; on read-only media there are none."""
    wal = Path(f"{db_path}-wal")
    try:
        if not os.access(db_path.parent, os.W_OK) or wal.stat().st_size:
            return
    except OSError:             # no -wal: nothing to tidy
        return
    try:
        conn = sqlite3.connect(db_path, timeout=0.1)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        pass


def _needs_immutable(db_path: Path) -> bool:
    """Whether a read-only connection must open the database immutable: its folder cannot be
    written and SQLite could not make the -wal/-shm files it needs."""
    if os.access(db_path.parent, os.W_OK):
        return False
    wal, shm = Path(f"{db_path}-wal"), Path(f"{db_path}-shm")
    if wal.exists() and shm.exists():
        return False                  # SQLite reads them (the -shm in private memory if unwritable)
    if wal.exists() and wal.stat().st_size > 0:
        raise CatalogReadOnlyError(db_path.parent, f"{wal.name} holds changes not merged into {db_path.name}")
    return True


def storage_error(exc: BaseException, folder) -> CatalogError | None:
    """The one-line error for a full disk or an unwritable catalog, or None for other failures."""
    if isinstance(exc, CatalogError):
        return None
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if code is not None else None
        if primary == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc):
            return DiskFullError(folder)
        if primary == sqlite3.SQLITE_READONLY or "attempt to write a readonly database" in str(exc):
            return CatalogReadOnlyError(folder)
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _FULL_ERRNOS:
            return DiskFullError(folder, os.strerror(exc.errno).lower())
        if exc.errno in _READONLY_ERRNOS:
            return CatalogReadOnlyError(folder, _READONLY_ERRNOS[exc.errno])
    return None


def take_lock(lock: BaseFileLock, timeout: float, folder: Path) -> bool:
    """Take the catalog's write lock; False when another process holds it. A folder that cannot
    hold the lock file (read-only media, another user's folder, a full disk) is one line."""
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        return False
    except OSError as exc:
        raise storage_error(exc, folder) or CatalogError(
            f"{lock.lock_file}: cannot take the write lock ({exc})") from exc
    return True
