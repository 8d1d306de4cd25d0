"""The catalog's thumbnail cache: JPEG thumbnails in ``thumbnails/`` of the catalog folder, made
on first use. A thumbnail is named after its image's content hash and size
(``thumbnails/ab/<32 hex digits>-<size>.jpg``), so it survives moves and re-imports and is shared
by identical files; ``lookalike check`` finds orphans by that name (:func:`digest_of`). Only the
files named so (:func:`own_kind`) are Lookalike's: anything else in ``thumbnails/`` is left alone.

A read-only catalog (read-only media) is never written: the thumbnails it lacks are made in the
user's cache folder instead. A full disk or an unwritable folder is one line
(engine.catalog_storage), with no temporary file left behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import platformdirs

from .catalog_storage import storage_error
from .errors import CatalogError, ImageError
from .paths import APP_NAME

if TYPE_CHECKING:
    from .catalog import Catalog

THUMBNAIL_DIR = "thumbnails"
DEFAULT_SIZE = 256
JPEG_QUALITY = 88
_NAME_RE = re.compile(r"^([0-9a-f]{32})-\d+\.jpg$")
#: A thumbnail being written (ThumbnailCache.get): the thumbnail's name, ``.jpg`` replaced by
#: ``.<pid>.<thread>.tmp``.
_TEMP_RE = re.compile(r"^([0-9a-f]{32})-\d+\.\d+\.\d+\.tmp$")


def digest_of(path: Path) -> str | None:
    """The content hash a thumbnail file is named after (its first 32 hex digits), or None for
    a file not named like a thumbnail (a leftover temporary file, a stranger)."""
    m = _NAME_RE.match(path.name)
    return m.group(1) if m else None


def own_kind(cache_dir: Path, path: Path) -> str | None:
    """"thumbnail" or "temp" for a file the cache writes (``<cache_dir>/<2 hex>/<name>``, its
    name as :meth:`ThumbnailCache.path_for` or a temporary of it gives it), None for any other."""
    path = Path(path)
    if path.parent.parent != Path(cache_dir):
        return None
    for kind, pattern in (("thumbnail", _NAME_RE), ("temp", _TEMP_RE)):
        m = pattern.match(path.name)
        if m and path.parent.name == m.group(1)[:2]:
            return kind
    return None


def is_own_thumbnail_file(cache_dir: Path, path: Path) -> bool:
    return own_kind(cache_dir, path) is not None


class ThumbnailCache:
    """``catalog.thumbnails``: the cached thumbnails of one catalog's images."""

    def __init__(self, catalog: "Catalog"):
        self.catalog = catalog
        self.directory = catalog.directory / THUMBNAIL_DIR

    def path_for(self, content_hash: str, size: int = DEFAULT_SIZE) -> Path:
        """Where the thumbnail of the image with this content hash is cached."""
        return self.directory / content_hash[:2] / f"{content_hash[:32]}-{size}.jpg"

    def get(self, image_id: int, size: int = DEFAULT_SIZE) -> Path:
        """A cached JPEG thumbnail (longest side ``size``), created on first use. Qt-free; call
        it off any UI thread. Raises ImageError if the image cannot be read."""
        import cv2

        from .imaging import load_image

        found = self.catalog.path_and_hash(image_id)
        if found is None:
            raise CatalogError(f"{self.catalog.directory}: no image with id {image_id}")
        path, digest = found
        out, root = self.path_for(digest, size), self.catalog.directory
        if out.exists():
            return out
        if self.catalog.readonly:
            root = self._spare_directory()
            out = root / out.relative_to(self.directory)
            if out.exists():
                return out
        rgb = load_image(path, min_short_side=size)
        h, w = rgb.shape[:2]
        scale = size / max(h, w)
        if scale < 1:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ImageError(path, "cannot encode a thumbnail")
        # write beside, then rename: a reader never sees half a file, two writers never mix theirs
        tmp = out.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, out)
        except OSError as exc:               # a full disk, a read-only folder: no half file left
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise storage_error(exc, root) or CatalogError(
                f"{out.parent}: cannot write a thumbnail ({exc.strerror or exc})") from exc
        return out

    def own_kind(self, path: Path) -> str | None:
        """"thumbnail", "temp" or None (not a file of this cache): :func:`own_kind`."""
        return own_kind(self.directory, path)

    def _spare_directory(self) -> Path:
        """Where a read-only catalog's missing thumbnails are made: the user's cache folder, one
        sub-folder per catalog folder."""
        key = hashlib.blake2b(str(self.catalog.directory.resolve()).encode(), digest_size=8).hexdigest()
        return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / THUMBNAIL_DIR / key

    def files(self) -> Iterator[Path]:
        """Every file under ``thumbnails/`` (thumbnails, and whatever else is there: check
        :meth:`own_kind` before touching one)."""
        if self.directory.is_dir():
            for dirpath, _dirs, names in os.walk(self.directory):
                for name in names:
                    yield Path(dirpath) / name
