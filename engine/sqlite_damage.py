"""Where the engine meets SQLite: a damaged database file becomes one CatalogDamagedError.

The catalog's connections are made with ``factory=DamageAwareConnection``; every statement and
every row read through them (``execute``, ``executemany``, ``fetch*``, iteration) turns SQLite's
"database disk image is malformed", "file is not a database" and read errors into
:class:`~engine.errors.CatalogDamagedError` naming the file and the remedy (`lookalike check
--repair`). Other SQLite errors (busy, locked, full, read-only, constraint) pass unchanged.
"""

from __future__ import annotations

import sqlite3

from .errors import CatalogDamagedError

# SQLite result codes (https://sqlite.org/rescode.html) that mean the file's content is damaged
# or unreadable, not that the disk is full, read-only or locked
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_IOERR = 10
_DAMAGE_CODES = {
    _SQLITE_CORRUPT, _SQLITE_NOTADB, _SQLITE_IOERR,
    _SQLITE_IOERR | (1 << 8),        # SQLITE_IOERR_READ
    _SQLITE_IOERR | (2 << 8),        # SQLITE_IOERR_SHORT_READ
    _SQLITE_IOERR | (33 << 8),       # SQLITE_IOERR_CORRUPTFS
}
_DAMAGE_TEXT = ("malformed", "file is not a database", "disk i/o error")


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` (a sqlite3 error) says the database file is damaged or unreadable."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in _DAMAGE_CODES or (code & 0xFF) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return any(t in str(exc).lower() for t in _DAMAGE_TEXT)


def damaged_error(db_path, exc: BaseException) -> CatalogDamagedError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CatalogDamagedError(db_path, reason)


class DamageAwareCursor(sqlite3.Cursor):
    """A cursor whose damage errors are CatalogDamagedErrors (see the module docstring)."""

    def _damaged(self, exc: sqlite3.DatabaseError) -> BaseException:
        if is_damage(exc):
            return damaged_error(getattr(self.connection, "path", "catalog database"), exc)
        return exc

    def execute(self, sql, parameters=(), /):
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def executemany(self, sql, seq_of_parameters, /):
        try:
            return super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def fetchone(self):
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def fetchmany(self, size=None):
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def fetchall(self):
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def __next__(self):
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc


class DamageAwareConnection(sqlite3.Connection):
    """``sqlite3.connect(path, factory=DamageAwareConnection)``: statements run on
    DamageAwareCursors; ``self.path`` is the database file named in errors."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self.path = str(database)

    def cursor(self, factory=DamageAwareCursor):
        return super().cursor(factory)

    def execute(self, sql, parameters=(), /):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters, /):
        return self.cursor().executemany(sql, seq_of_parameters)
