"""Lazy thumbnail loading for the results grid.

The results model asks :meth:`ThumbnailLoader.get` from ``data(DecorationRole)``, which the view
only calls for items it paints, so only visible thumbnails are ever requested. A miss schedules
the decode on a small thread pool and returns ``None`` (the delegate paints a placeholder); when
the image is ready :attr:`ThumbnailLoader.ready` carries its image id and the model emits
``dataChanged`` for that row. Requests are served newest first (a stack), so while the user
scrolls, the items now on screen are decoded before the ones that scrolled past; old requests
beyond ``max_pending`` are dropped. Decoded QImages are kept in an LRU cache (UI thread only).

The decode itself is ``catalog.thumbnails.get(image_id, size)`` (the engine's disk thumbnail cache,
created on first use) followed by ``QImage(path)``, both safe off the UI thread.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from PySide6.QtCore import QObject, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage

from .workers import Task, TaskRunner

log = logging.getLogger(__name__)


class _Signals(QObject):
    loaded = Signal(int, int, object)  # generation, image id, QImage or None (failed)


def _decode(catalog: Any, image_id: int, disk_size: int, box: QSize) -> QImage | None:
    """The thumbnail of one catalog image at most ``box`` large, or None when it cannot be read
    (drawn as "broken")."""
    try:
        path = catalog.thumbnails.get(image_id, disk_size)
        image = QImage(str(path))
        if image.isNull():
            raise OSError(f"{path}: not a readable image")
        if image.width() > box.width() or image.height() > box.height():
            image = image.scaled(
                box,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        return image.convertToFormat(QImage.Format.Format_RGB32)
    except Exception as exc:  # noqa: BLE001 - a missing thumbnail is drawn as "broken"
        log.debug("thumbnail %s failed: %s", image_id, exc)
        return None


class ThumbnailLoader(QObject):
    ready = Signal(int)  # image id whose thumbnail (or failure) is now known

    def __init__(
        self,
        *,
        disk_size: int = 256,
        display_size: QSize | None = None,
        cache_items: int = 1500,
        threads: int = 2,
        max_pending: int = 400,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.disk_size = disk_size
        self.display_size = display_size or QSize(160, 160)
        self.cache_items = cache_items
        self.max_pending = max_pending
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._threads = threads
        self._runner = TaskRunner(self)
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self._cache: OrderedDict[int, QImage] = OrderedDict()
        self._failed: set[int] = set()
        self._lock = threading.Lock()
        self._stack: OrderedDict[int, None] = OrderedDict()  # pending ids, newest last
        self._in_flight: set[int] = set()
        self._draining = 0
        self._catalog: Any = None
        self._generation = 0

    # -- UI thread API -------------------------------------------------------------------------
    def set_catalog(self, catalog: Any) -> None:
        """Forget everything (cache, pending requests) and load from ``catalog`` from now on."""
        with self._lock:
            self._generation += 1
            self._catalog = catalog
            self._stack.clear()
            self._in_flight.clear()
        self._cache.clear()
        self._failed.clear()

    def forget(self, image_ids: list[int]) -> None:
        for image_id in image_ids:
            self._cache.pop(image_id, None)
            self._failed.discard(image_id)

    def get(self, image_id: int) -> QImage | None:
        """The cached thumbnail, or ``None`` after scheduling its decode (or if it failed)."""
        image = self._cache.get(image_id)
        if image is not None:
            self._cache.move_to_end(image_id)
            return image
        if image_id not in self._failed:
            self._request(image_id)
        return None

    def is_cached(self, image_id: int) -> bool:
        return image_id in self._cache

    def has_failed(self, image_id: int) -> bool:
        return image_id in self._failed

    def is_settled(self, image_id: int) -> bool:
        """Known (cached or failed): nothing more will happen for this id."""
        return image_id in self._cache or image_id in self._failed

    def pending_count(self) -> int:
        with self._lock:
            return len(self._stack) + len(self._in_flight)

    def wait_idle(self, msecs: int = 5000) -> bool:
        return self._pool.waitForDone(msecs)

    def shutdown(self, msecs: int = 3000) -> None:
        with self._lock:
            self._generation += 1
            self._stack.clear()
        self._pool.waitForDone(msecs)

    # -- internals -------------------------------------------------------------------------------
    def _request(self, image_id: int) -> None:
        with self._lock:
            if self._catalog is None or image_id in self._in_flight:
                return
            if image_id in self._stack:
                self._stack.move_to_end(image_id)
                return
            self._stack[image_id] = None
            while len(self._stack) > self.max_pending:
                self._stack.popitem(last=False)  # the oldest request scrolled away long ago
            start = self._draining < self._threads
            if start:
                self._draining += 1
        if start:
            self._runner.start(self._pool, Task(self._drain))

    def _drain(self) -> None:  # pool thread
        """Decode queued thumbnails, most recent request first, until the stack is empty."""
        while True:
            job = self._next_job()
            if job is None:
                return
            generation, catalog, image_id = job
            image = self._load(catalog, image_id)
            self._signals.loaded.emit(generation, image_id, image)

    def _load(self, catalog: Any, image_id: int) -> QImage | None:  # pool thread
        return _decode(catalog, image_id, self.disk_size, self.display_size)

    def _next_job(self) -> tuple[int, Any, int] | None:  # pool thread
        with self._lock:
            if not self._stack or self._catalog is None:
                self._draining -= 1
                return None
            image_id, _ = self._stack.popitem(last=True)
            self._in_flight.add(image_id)
            return self._generation, self._catalog, image_id

    def _on_loaded(self, generation: int, image_id: int, image: QImage | None) -> None:
        with self._lock:
            if generation != self._generation:
                return  # the catalog changed meanwhile
            self._in_flight.discard(image_id)
        if image is None:
            self._failed.add(image_id)
        else:
            self._cache[image_id] = image
            self._cache.move_to_end(image_id)
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
        self.ready.emit(image_id)


class FileThumbnailLoader(ThumbnailLoader):
    """The same lazy loader for image files outside the catalog (a case's offer images): the
    caller names each file by an int key (:meth:`set_path`) and asks for it by that key."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._paths: dict[int, str] = {}

    def set_path(self, key: int, path: str) -> None:
        """``key`` shows ``path`` from now on (a changed file: its cached image is dropped)."""
        with self._lock:
            changed = self._paths.get(key) not in (None, path)
            self._paths[key] = path
        if changed:
            self.forget([key])

    def _load(self, catalog: Any, key: int) -> QImage | None:  # pool thread
        with self._lock:
            path = self._paths.get(key)
        return None if path is None else decode_file(path, self.display_size)


def decode_file(path: str, box: QSize) -> QImage | None:
    """An image file at most ``box`` large (JPEGs decoded reduced), EXIF rotation applied;
    None when it cannot be read."""
    from PySide6.QtGui import QImageReader

    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > box.width() or size.height() > box.height()):
        reader.setScaledSize(size.scaled(box, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if image.isNull():
        log.debug("thumbnail of %s failed: %s", path, reader.errorString())
        return None
    return image.convertToFormat(QImage.Format.Format_RGB32)
