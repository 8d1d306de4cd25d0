"""What makes a folder a Lookalike catalog, and which files in it are Lookalike's.

A catalog folder identifies itself with a small marker file, ``lookalike-catalog.json``::

    {"format": 1, "catalog_id": "<uuid4 hex>", "created_at": "...Z", "app_version": "0.1.0"}

written when the catalog is created (the database keeps the same id as ``meta.catalog_id``).
Catalogs made before the marker are recognised by their database (a ``meta`` table with a
``schema`` row) and get the marker on their next write.

Lookalike creates a catalog only in a new or empty folder, refuses a folder of other files, and
only ever deletes or replaces the names listed here (:func:`is_own_name`), so a user's file that
happens to sit in a catalog folder is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog_schema import create_or_migrate, database_content, now_iso, read_stand_ins, schema_gaps
from .errors import CatalogError, EmptiedCatalogError, NotACatalogError
from .thumbnail_cache import THUMBNAIL_DIR, is_own_thumbnail_file

if TYPE_CHECKING:
    from .catalog import Catalog

MARKER_NAME = "lookalike-catalog.json"
#: The marker's format; a marker of a higher format was written by a newer Lookalike.
MARKER_FORMAT = 1

DB_NAME = "catalog.db"
INDEX_NAME = "index.bin"
LOCK_NAME = "write.lock"

#: The files Lookalike writes at the top of a catalog folder (SQLite's journal files included).
OWN_FILES = frozenset({
    MARKER_NAME, DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal",
    INDEX_NAME, "index.json", "index.side.npz", LOCK_NAME,
})
#: Temporary files of an atomic save (engine.index.VectorIndex.save, write_marker): the final
#: name, a tag, ``.tmp``.
_OWN_TEMP_RE = re.compile(r"^(?:(?:index\.bin|index\.json|index\.side\.npz|lookalike-catalog\.json)"
                          r"\.[0-9A-Za-z_.-]+\.tmp"
                          # the work files of a database recovery (engine.catalog_recovery) cut short
                          r"|catalog\.db\.(?:recovering|reading)-\d{8}T\d{6}Z(?:-wal|-shm|-journal)?)$")
#: The damaged database a recovery set aside (kept: it is the user's data; deleted only with the
#: whole catalog by remove_catalog).
_SET_ASIDE_RE = re.compile(r"^catalog\.db\.damaged-\d{8}T\d{6}Z(?:-wal)?$")
#: What an operating system leaves in any folder: not a sign that the folder is in use.
_OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def not_a_catalog(directory: Path) -> NotACatalogError:
    return NotACatalogError(f"{directory}: not a Lookalike catalog (it holds other files and no "
                            f"{MARKER_NAME}); choose an empty or new folder")


def emptied(directory: Path) -> EmptiedCatalogError:
    return EmptiedCatalogError(
        f"{Path(directory) / DB_NAME}: the catalog's database is empty or missing (every record is "
        "lost); restore it from a backup, or run `lookalike check --repair` to start it again empty")


# ---------------------------------------------------------------------- the marker
@dataclass(frozen=True)
class Marker:
    catalog_id: str
    created_at: str
    app_version: str
    format: int = MARKER_FORMAT

    def to_json(self) -> dict:
        return {"format": self.format, "catalog_id": self.catalog_id, "created_at": self.created_at,
                "app_version": self.app_version}


def new_catalog_id() -> str:
    return uuid.uuid4().hex


def read_marker(directory: Path) -> Marker | None:
    """The folder's marker, None when there is none. Raises CatalogError (one line) for a marker
    that cannot be read or was written by a newer Lookalike."""
    path = Path(directory) / MARKER_NAME
    if not path.exists() and not path.is_symlink():
        return None
    remedy = "restore it from a backup, or delete it (the database keeps the catalog id)"
    if not path.is_file() or path.stat().st_size > 64 * 1024:
        raise CatalogError(f"{path}: not a valid catalog marker (not a small file); {remedy}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: catalog marker unreadable ({exc.strerror or exc}); {remedy}") from exc
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError and JSONDecodeError included
        raise CatalogError(f"{path}: not a valid catalog marker (not JSON); {remedy}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: not a valid catalog marker (not a JSON object); {remedy}")
    fmt = data.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CatalogError(f"{path}: not a valid catalog marker (format {fmt!r}); {remedy}")
    if fmt > MARKER_FORMAT:
        raise CatalogError(f"{path}: made by a newer Lookalike (catalog format {fmt}, this app reads "
                           f"{MARKER_FORMAT}); upgrade the app")
    catalog_id = data.get("catalog_id")
    if not isinstance(catalog_id, str) or not _ID_RE.match(catalog_id):
        raise CatalogError(f"{path}: not a valid catalog marker (catalog_id {str(catalog_id)[:40]!r}); {remedy}")
    return Marker(catalog_id, str(data.get("created_at") or ""), str(data.get("app_version") or ""), fmt)


def write_marker(directory: Path, catalog_id: str, created_at: str) -> Marker:
    """Write the folder's marker atomically (beside, then renamed). Call it holding the write lock."""
    from . import __version__

    marker = Marker(catalog_id, created_at, __version__)
    path = Path(directory) / MARKER_NAME
    tmp = path.with_name(f"{MARKER_NAME}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(marker.to_json(), fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:               # a full disk, a read-only folder: no half file left
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CatalogError(f"{path}: cannot write the catalog marker ({exc.strerror or exc})") from exc
    return marker


# ---------------------------------------------------------------------- own names
def is_own_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file of Lookalike's atomic saves in a catalog folder."""
    return bool(_OWN_TEMP_RE.match(name))


def is_own_name(name: str) -> bool:
    """Whether ``name`` (an entry at the top of a catalog folder) is one Lookalike creates."""
    return name in OWN_FILES or name == THUMBNAIL_DIR or is_own_temp(name) or bool(_SET_ASIDE_RE.match(name))


# ---------------------------------------------------------------------- what a folder is
class FolderState(Enum):
    NEW = "new"              # missing, empty, or a creation that never finished: make a catalog
    CATALOG = "catalog"      # a catalog (marked, or made before the marker): open it
    EMPTIED = "emptied"      # a catalog whose database is gone or holds no tables
    FOREIGN = "foreign"      # other files and no catalog: refused


def folder_state(directory: Path) -> tuple[FolderState, Marker | None]:
    """What ``directory`` is, and its marker (validated: raises CatalogError for a bad one, and
    NotACatalogError for a catalog.db that is another program's database)."""
    directory = Path(directory)
    if not directory.exists():
        return FolderState.NEW, None
    if not directory.is_dir():
        raise CatalogError(f"{directory}: not a folder")
    marker = read_marker(directory)
    db_path = directory / DB_NAME
    has_db = db_path.exists()
    content = database_content(db_path) if has_db else None
    if has_db and content in ("catalog", None):
        return FolderState.CATALOG, marker
    if content == "other":
        if marker is None:
            raise not_a_catalog(directory)
        raise NotACatalogError(f"{db_path}: not a Lookalike catalog database (another program's "
                               "tables); restore the catalog's database from a backup, or move this "
                               "file away and run `lookalike check --repair`")
    if marker is not None:
        return FolderState.EMPTIED, marker
    try:
        names = {p.name for p in directory.iterdir()} - _OS_LITTER
        thumbs = directory / THUMBNAIL_DIR
        if THUMBNAIL_DIR in names and thumbs.is_dir() and not any(thumbs.iterdir()):
            names.discard(THUMBNAIL_DIR)        # an empty folder says nothing
    except OSError as exc:
        raise CatalogError(f"{directory}: cannot read the folder ({exc.strerror or exc})") from exc
    if not all(is_own_name(n) for n in names):
        return FolderState.FOREIGN, None
    if names & {INDEX_NAME, "index.json", "index.side.npz", THUMBNAIL_DIR}:
        # with an empty catalog.db: a catalog's files without its records; without one, nothing
        # says these files are Lookalike's (a folder of the user's own thumbnails)
        return (FolderState.EMPTIED if has_db else FolderState.FOREIGN), None
    return FolderState.NEW, None                # empty, or a creation that never finished


# ---------------------------------------------------------------------- opening a catalog
def check_folder(directory: Path, *, create: bool, recreate: bool) -> None:
    """Before Catalog.open: refuse a folder of other files, an emptied catalog (unless
    ``recreate``) and, unless ``create``, a folder with no catalog; make a new folder."""
    state, _marker = folder_state(directory)
    if state is FolderState.FOREIGN:
        if not create and not (directory / DB_NAME).exists():
            raise CatalogError(f"{directory}: no catalog here (no {DB_NAME})")
        raise not_a_catalog(directory)
    if state is FolderState.EMPTIED and not recreate:
        raise emptied(directory)
    if state is FolderState.NEW:
        if not create:
            raise CatalogError(f"{directory}: no catalog here (no {DB_NAME})")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"{directory}: cannot create the catalog folder ({exc.strerror})") from exc


def prepare(catalog: "Catalog", *, recreate: bool = False) -> None:
    """Make ``catalog``'s folder usable on open (Catalog._init_db). A new or empty folder gets the
    schema and the marker, holding the write lock; an existing catalog is checked (and migrated
    under the write lock when it lacks part of the schema; a read-only opening never writes: it
    refuses a catalog it cannot read as it is). An emptied database is refused, or with
    ``recreate`` (`lookalike check --repair`) started again empty under the catalog's id, its
    stale index deleted (``catalog.recreated`` is then True)."""
    directory = catalog.directory
    state, marker = folder_state(directory)
    if state is FolderState.FOREIGN:
        raise not_a_catalog(directory)
    if state is FolderState.EMPTIED and (catalog.readonly or not recreate):
        raise emptied(directory)
    if state is not FolderState.CATALOG:
        if catalog.readonly:
            raise CatalogError(f"{directory}: no catalog here (no {DB_NAME})")
        with catalog.writer():
            # again under the lock: another process may have made the catalog meanwhile
            state, marker = folder_state(directory)
            if state is FolderState.FOREIGN:
                raise not_a_catalog(directory)
            if state is FolderState.EMPTIED and not recreate:
                raise emptied(directory)
            if state is not FolderState.CATALOG:
                _create(catalog, marker, emptied_before=state is FolderState.EMPTIED)
                return
    _validate(catalog, marker)


def _create(catalog: "Catalog", marker: Marker | None, *, emptied_before: bool) -> None:
    conn = catalog.db.conn
    catalog_id = marker.catalog_id if marker else new_catalog_id()
    with catalog.transaction(bump=False):
        create_or_migrate(conn, catalog.db_path, catalog_id=catalog_id)
    if emptied_before:
        catalog.vectors.delete_files()          # the index of the records that are gone
        catalog.recreated = True
    if marker is None:
        write_marker(catalog.directory, catalog_id, catalog.meta("created_at") or now_iso())


def _validate(catalog: "Catalog", marker: Marker | None) -> None:
    conn = catalog.db.conn
    gaps = schema_gaps(conn, catalog.db_path, columns=not catalog.readonly)
    stored_id = catalog.meta("catalog_id")
    if marker is not None and stored_id is not None and stored_id != marker.catalog_id:
        raise CatalogError(f"{catalog.db_path}: the database of another catalog (id {stored_id}, this "
                           f"folder's {MARKER_NAME} says {marker.catalog_id}); put back this catalog's "
                           f"database, or delete {MARKER_NAME} to adopt this one")
    catalog._identity_pending = marker is None or stored_id is None
    if gaps:
        if catalog.readonly:
            # an older catalog read where it may not be writable: empty temporary tables stand in
            # for the ones it lacks (in this connection and in each one the catalog opens later)
            try:
                catalog.read_stand_ins = read_stand_ins(gaps)
            except ValueError as exc:
                raise CatalogError(f"{catalog.db_path}: not a usable catalog database ({exc})") from None
            for statement in catalog.read_stand_ins:
                conn.execute(statement)
            return
        with catalog.writer(), catalog.transaction(bump=False):
            create_or_migrate(conn, catalog.db_path)


def ensure_identity(catalog: "Catalog") -> None:
    """Give a catalog made before the marker its id (``meta.catalog_id``) and marker; called by
    Catalog.writer() once the write lock is held."""
    catalog._identity_pending = False
    marker = read_marker(catalog.directory)
    catalog_id = catalog.meta("catalog_id")
    if catalog_id is None:
        catalog.set_meta("catalog_id", marker.catalog_id if marker else new_catalog_id())
        catalog_id = catalog.meta("catalog_id")
    if marker is None:
        write_marker(catalog.directory, catalog_id, catalog.meta("created_at") or now_iso())


# ---------------------------------------------------------------------- deleting a catalog
def remove_catalog(directory: Path) -> None:
    """Delete a catalog folder Lookalike made (a benchmark's scratch catalog): only the names
    Lookalike creates, then the folder if that left it empty. A missing folder is fine; a folder
    of other files raises NotACatalogError and is left as it is."""
    directory = Path(directory)
    if not directory.exists():
        return
    state, _marker = folder_state(directory)
    if state is FolderState.FOREIGN:
        raise not_a_catalog(directory)
    for entry in directory.iterdir():
        if entry.name == THUMBNAIL_DIR and entry.is_dir() and not entry.is_symlink():
            for dirpath, _dirs, names in os.walk(entry, topdown=False):
                for name in names:
                    if is_own_thumbnail_file(entry, Path(dirpath) / name):
                        (Path(dirpath) / name).unlink(missing_ok=True)
                try:
                    os.rmdir(dirpath)
                except OSError:                 # not empty: it holds someone else's files
                    pass
        elif entry.name != THUMBNAIL_DIR and is_own_name(entry.name) and not entry.is_dir():
            entry.unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:
        pass


__all__ = ["DB_NAME", "FolderState", "INDEX_NAME", "LOCK_NAME", "MARKER_FORMAT",
           "MARKER_NAME", "Marker", "OWN_FILES", "check_folder", "emptied",
           "ensure_identity", "folder_state", "is_own_name", "is_own_temp", "new_catalog_id",
           "not_a_catalog", "prepare", "read_marker", "remove_catalog", "write_marker"]

