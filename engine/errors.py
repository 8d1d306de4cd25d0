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


class NotACatalogError(CatalogError):
    """The folder holds other files and no catalog: Lookalike makes no catalog there."""


class EmptiedCatalogError(CatalogError):
    """The folder is a catalog whose database is gone or holds no tables (every record lost)."""


class TextReaderError(LookalikeError):
    """The text reader (OCR) cannot be loaded or used."""
