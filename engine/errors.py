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


class ModelError(LookalikeError):
    """The model pack is missing, damaged or inconsistent."""


class CatalogError(LookalikeError):
    """The catalog cannot be opened or is inconsistent."""


class CatalogBusyError(CatalogError):
    """Another process holds the catalog for writing."""


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
