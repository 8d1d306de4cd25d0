"""Exception types that carry a one-line, user-facing reason."""


class LookalikeError(Exception):
    """Base class: ``str(err)`` is a one-line message fit to show a user."""


class ImageError(LookalikeError):
    """An image file cannot be used (unreadable, corrupt, unsupported, too large)."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class FeedError(LookalikeError):
    """A product feed cannot be read at all."""


class OutputError(LookalikeError):
    """An output file cannot be written where it was asked: a folder, a missing folder, a file
    of the catalog itself, or a write that failed (the previous file is then left as it was)."""


class ModelError(LookalikeError):
    """The model pack is missing, damaged or inconsistent."""


class CatalogError(LookalikeError):
    """The catalog cannot be opened or is inconsistent."""


class CatalogBusyError(CatalogError):
    """Another process holds the catalog for writing."""


class CatalogReadOnlyError(CatalogError):
    """The catalog's folder (or its database file) cannot be written: read-only media, another
    user's folder."""

    def __init__(self, folder, reason: str = "permission denied"):
        self.folder = str(folder)
        super().__init__(f"{self.folder} is read-only ({reason}); copy the catalog to a writable folder")


class DiskFullError(CatalogError):
    """The disk (or the user's quota) holding the catalog is full."""

    def __init__(self, folder, reason: str = "no space left on device"):
        self.folder = str(folder)
        super().__init__(f"disk full: {reason}; free space on {self.folder} and run the command again "
                         "(the import resumes where it stopped)")


class NotACatalogError(CatalogError):
    """The folder holds other files and no catalog: Lookalike makes no catalog there."""


class EmptiedCatalogError(CatalogError):
    """The folder is a catalog whose database is gone or holds no tables (every record lost)."""


class TextReaderError(LookalikeError):
    """The text reader (OCR) cannot be loaded or used."""


class CatalogDamagedError(CatalogError):
    """The catalog's SQLite file is damaged: SQLite calls it malformed, not a database, or cannot
    read it. ``lookalike check --repair`` recovers the readable rows (engine.catalog_recovery)."""

    def __init__(self, db_path, reason: str):
        self.path = str(db_path)
        self.reason = reason
        super().__init__(f"{self.path}: not a usable catalog database: damaged ({reason}); "
                         "run `lookalike check --repair` to recover what can be read")
