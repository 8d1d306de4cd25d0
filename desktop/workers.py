"""Thin worker threads: a QRunnable that runs one engine call and reports through Qt signals.

The job functions below are the only places where the desktop app calls the engine's heavy parts
(model loading, catalog opening, decoding, search, import); they run on QThreadPool threads and
import the engine lazily so that the window can show before numpy/onnxruntime/hnswlib are loaded.
Signals are emitted from the pool thread and delivered to the UI thread (queued connections).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


_thread_state = threading.local()
BACKGROUND_NICE = 10


def lower_thread_priority() -> None:
    """Run the calling worker thread (and the threads it starts: onnxruntime's, the import's
    decoders) below the UI thread, so that the UI is scheduled first on a busy machine.

    Linux: a per-thread nice value (inherited by threads created later); elsewhere Qt's
    LowPriority, which Windows and macOS honour. Done once per thread.
    """
    if getattr(_thread_state, "lowered", False):
        return
    _thread_state.lowered = True
    try:
        if sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, max(current, BACKGROUND_NICE))
        else:
            from PySide6.QtCore import QThread

            QThread.currentThread().setPriority(QThread.Priority.LowPriority)
    except (OSError, AttributeError):  # not allowed or not supported: run at normal priority
        pass


def describe_error(exc: BaseException) -> str:
    """One line for the user: engine errors already are; anything else gets its type name."""
    from engine.errors import LookalikeError

    if isinstance(exc, LookalikeError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"unexpected error ({type(exc).__name__}){': ' + text if text else ''}"


class TaskSignals(QObject):
    finished = Signal(object)  # the job's return value
    failed = Signal(str)  # one-line message
    progress = Signal(int, int, str)  # done, total, message


class Task(QRunnable):
    """Runs ``fn(*args, **kwargs)`` on a pool thread.

    If ``fn`` accepts a ``progress`` keyword (``wants_progress=True``) it receives a callable
    ``progress(done, total, message)`` that emits :attr:`TaskSignals.progress`, at most every
    ``progress_interval`` seconds (the last call, ``done == total``, always goes through).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        wants_progress: bool = False,
        progress_interval: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__()
        self.setAutoDelete(False)  # the Python side keeps it (and its signals) alive
        self.signals = TaskSignals()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.wants_progress = wants_progress
        self.progress_interval = progress_interval
        self._last_progress = 0.0

    def _progress(self, done: int, total: int, message: str = "") -> None:
        now = time.perf_counter()
        if done >= total or now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            self.signals.progress.emit(int(done), int(total), str(message))

    def run(self) -> None:  # pool thread
        lower_thread_priority()
        try:
            if self.wants_progress:
                result = self.fn(*self.args, progress=self._progress, **self.kwargs)
            else:
                result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            from engine.errors import LookalikeError

            if not isinstance(exc, LookalikeError):
                log.exception("worker job %s failed", getattr(self.fn, "__name__", self.fn))
            self.signals.failed.emit(describe_error(exc))
        else:
            self.signals.finished.emit(result)


class TaskRunner(QObject):
    """Starts tasks on a pool and keeps them alive until their result has been delivered."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._live: set[Task] = set()

    def start(
        self,
        pool: QThreadPool,
        task: Task,
        *,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_progress: Callable[[int, int, str], None] | None = None,
    ) -> Task:
        self._live.add(task)
        if on_progress is not None:
            task.signals.progress.connect(on_progress)

        def done(result: Any) -> None:
            self._live.discard(task)
            if on_done is not None:
                on_done(result)

        def error(message: str) -> None:
            self._live.discard(task)
            if on_error is not None:
                on_error(message)

        task.signals.finished.connect(done)
        task.signals.failed.connect(error)
        pool.start(task)
        return task

    @property
    def pending(self) -> int:
        return len(self._live)


# --------------------------------------------------------------------------------------------
# Jobs (run on pool threads; Qt-free except for building QImages, which is thread-safe)
# --------------------------------------------------------------------------------------------

MAX_DISPLAY_SIDE = 2048


@dataclass
class CatalogInfo:
    directory: Path
    images: int
    products: int
    stats: dict
    facets: dict
    catalog: Any = field(repr=False, default=None)


def model_for_catalog_job(
    catalog: Any, current: Any = None, loader: Callable[[Any], Any] | None = None
) -> Any:
    """The model to search and extend ``catalog`` with: ``current`` when it is the catalog's own
    (or the catalog has none yet), else the pack the catalog was built with
    (``engine.session.load_model_for``, which refuses a catalog of mixed models)."""
    stored = catalog.meta("model_pack")
    if (
        current is not None
        and stored in (None, current.name)
        and all(model_id == current.model_id for model_id in catalog.model_ids())
    ):
        return current
    if loader is not None:
        return loader(catalog)
    from engine.session import load_model_for

    return load_model_for(catalog)


def catalog_info_job(catalog: Any, *, full_stats: bool = False) -> CatalogInfo:
    """Sizes and facets (cheap); ``full_stats`` adds ``catalog.stats()``, which also brings the
    index up to date and measures the folder (for the statistics window)."""
    return CatalogInfo(
        directory=Path(catalog.directory),
        images=catalog.count_images(),
        products=catalog.count_products(),
        stats=dict(catalog.stats()) if full_stats else {},
        facets=dict(catalog.facets()),
        catalog=catalog,
    )


def open_catalog_job(
    directory: str | Path | None, create: bool, previous: Any = None
) -> CatalogInfo:
    from engine.catalog import Catalog

    catalog = Catalog.open(directory, create=create)
    try:
        info = catalog_info_job(catalog)
    except BaseException:
        catalog.close()
        raise
    if previous is not None and previous is not catalog:
        try:
            previous.close()
        except Exception:
            log.warning("closing the previous catalog failed", exc_info=True)
    return info


@dataclass
class DecodedQuery:
    image: Any  # RGB uint8 array, full resolution
    display: Any  # QImage, at most MAX_DISPLAY_SIDE on its longest side
    display_scale: float  # display pixels per image pixel
    icon: Any  # QImage for the history list


def prepare_query_image(rgb: Any) -> DecodedQuery:
    """Build the display and icon images for a decoded query (runs off the UI thread)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage

    from .qt_images import qimage_from_rgb

    full = qimage_from_rgb(rgb)
    h, w = rgb.shape[:2]
    scale = min(1.0, MAX_DISPLAY_SIDE / max(h, w))
    display = full
    if scale < 1.0:
        display = full.scaled(
            round(w * scale),
            round(h * scale),
            Qt.AspectRatioMode.IgnoreAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    icon: QImage = display.scaled(
        96, 96, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    return DecodedQuery(rgb, display, display.width() / w, icon)


def decode_query_file_job(path: str | Path) -> DecodedQuery:
    from engine.imaging import load_image

    return prepare_query_image(load_image(path))


def decode_query_qimage_job(image: Any) -> DecodedQuery:
    from .qt_images import rgb_from_qimage

    return prepare_query_image(rgb_from_qimage(image))


def search_job(
    searcher_factory: Callable[[], Any],
    rgb: Any,
    path: str | None,
    name: str,
    k: int,
    filters: dict,
    roi: tuple[int, int, int, int] | None,
) -> Any:
    """Search with a file (decoded by the engine exactly as ``lookalike search`` does, so the
    scores match the command line) or with pixels (clipboard, dropped image data)."""
    from engine.search import SearchFilters

    searcher = searcher_factory()
    started = time.perf_counter()
    if path is not None:
        result = searcher.search_path(path, k=k, filters=SearchFilters(**filters), roi=roi)
    else:
        result = searcher.search_image(
            rgb, k=k, filters=SearchFilters(**filters), roi=roi, name=name
        )
    wall_ms = (time.perf_counter() - started) * 1000
    timings = getattr(result, "timings", None)
    if isinstance(timings, dict):  # engine timings are milliseconds per stage
        timings["wall"] = wall_ms
    return result


def import_job(
    catalog: Any,
    model: Any,
    paths: list[str],
    cancel: threading.Event,
    progress: Callable[[int, int, str], None],
) -> Any:
    from engine.ingest import ingest

    if catalog.meta("model_pack") is None:  # remember which pack the catalog is built with
        catalog.set_meta("model_pack", model.name)
    return ingest(catalog, model, [str(p) for p in paths], progress=progress, cancel=cancel)


def remove_images_job(catalog: Any, ids: list[int]) -> tuple[int, CatalogInfo]:
    removed = catalog.remove_images(list(ids))
    return removed, catalog_info_job(catalog)
