"""The desktop app's one worker model: a :class:`Task` runs one function on a QThreadPool thread
and reports through Qt signals (result, one-line error, cancelled, throttled progress);
a :class:`TaskRunner` keeps tasks alive until their outcome is delivered on the UI thread.

The job functions below are what the session runs on those threads (model loading, catalog
opening, decoding, search, import, duplicate scans and decisions); they import the engine lazily
so that the window can show before numpy/onnxruntime/hnswlib are loaded.
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
    import sqlite3

    from engine.errors import LookalikeError

    if isinstance(exc, LookalikeError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return "the catalog is busy (another process is writing to it); try again later"
    from engine.sqlite_damage import is_damage

    if is_damage(exc):
        return (f"the catalog database is damaged ({exc}); run `lookalike check --repair` to "
                "recover what can be read")
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"unexpected error ({type(exc).__name__}){': ' + text if text else ''}"


class TaskSignals(QObject):
    finished = Signal(object)  # the job's return value
    failed = Signal(str)  # one-line message
    cancelled = Signal()  # the job stopped with an exception after cancel() was called
    progress = Signal(int, int, str)  # done, total, message
    note = Signal(object)  # a job's news while it runs (an import's images are searchable)


class Task(QRunnable):
    """Runs ``fn(*args, **kwargs)`` on a pool thread: the one worker of the desktop app.

    ``wants_progress=True``: ``fn`` also gets ``progress=callable(done, total, message)``, which
    emits :attr:`TaskSignals.progress` at most every ``progress_interval`` seconds (the last call,
    ``done >= total``, always goes through). ``wants_notes=True``: ``fn`` also gets
    ``note=callable(object)``, which emits :attr:`TaskSignals.note` at once (never throttled: a
    stage of the job has ended). ``cancellable=True``: ``fn`` also gets
    ``cancel=threading.Event`` (set by :meth:`cancel`; engine jobs poll ``cancel.is_set()``). A job
    that raises after it was cancelled reports :attr:`TaskSignals.cancelled`, not a failure; one
    that returns anyway (an import's partial report) reports its result.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        wants_progress: bool = False,
        wants_notes: bool = False,
        cancellable: bool = False,
        progress_interval: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__()
        self.setAutoDelete(False)  # the Python side keeps it (and its signals) alive
        self.signals = TaskSignals()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.wants_progress = wants_progress
        self.wants_notes = wants_notes
        self.cancellable = cancellable
        self.progress_interval = progress_interval
        self.cancel_event = threading.Event()
        self._last_progress = 0.0

    def cancel(self) -> None:
        """Ask the job to stop (thread-safe; a job that does not poll runs to its end)."""
        self.cancel_event.set()

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_event.is_set()

    def _progress(self, done: int, total: int, message: str = "") -> None:
        now = time.perf_counter()
        if done >= total or now - self._last_progress >= self.progress_interval:
            self._last_progress = now
            self.signals.progress.emit(int(done), int(total), str(message))

    def run(self) -> None:  # pool thread
        lower_thread_priority()
        kwargs = dict(self.kwargs)
        if self.wants_progress:
            kwargs["progress"] = self._progress
        if self.wants_notes:
            kwargs["note"] = self.signals.note.emit
        if self.cancellable:
            kwargs["cancel"] = self.cancel_event
        try:
            result = self.fn(*self.args, **kwargs)
        except BaseException as exc:
            if self.cancel_event.is_set():
                self.signals.cancelled.emit()
                return
            from engine.errors import LookalikeError

            if not isinstance(exc, LookalikeError):
                log.exception("worker job %s failed", getattr(self.fn, "__name__", self.fn))
            self.signals.failed.emit(describe_error(exc))
        else:
            self.signals.finished.emit(result)


class TaskRunner(QObject):
    """Starts tasks on a pool and keeps them alive until their outcome has been delivered.

    Exactly one of ``on_done``, ``on_error`` and ``on_cancelled`` is called, on the UI thread; a
    cancelled task without ``on_cancelled`` counts as failed ("cancelled").
    """

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
        on_note: Callable[[Any], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> Task:
        self._live.add(task)
        if on_progress is not None:
            task.signals.progress.connect(on_progress)
        if on_note is not None:
            task.signals.note.connect(on_note)

        def done(result: Any) -> None:
            self._live.discard(task)
            if on_done is not None:
                on_done(result)

        def error(message: str) -> None:
            self._live.discard(task)
            if on_error is not None:
                on_error(message)

        def cancelled() -> None:
            if on_cancelled is not None:
                self._live.discard(task)
                on_cancelled()
            else:
                error("cancelled")

        task.signals.finished.connect(done)
        task.signals.failed.connect(error)
        task.signals.cancelled.connect(cancelled)
        pool.start(task)
        return task

    @property
    def pending(self) -> int:
        return len(self._live)


# --------------------------------------------------------------------------------------------
# Jobs (run on pool threads; Qt-free except for building QImages, which is thread-safe)
# --------------------------------------------------------------------------------------------

MAX_DISPLAY_SIDE = 2048
#: how long closing a replaced catalog waits for each cancelled job still using it
CLOSE_WAIT_SECONDS = 60.0


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


def open_catalog_job(directory: str | Path | None, create: bool) -> CatalogInfo:
    from engine.catalog import Catalog
    from engine.errors import CatalogReadOnlyError

    try:
        catalog = Catalog.open(directory, create=create)
    except CatalogReadOnlyError:    # read-only media: searched, never written
        catalog = Catalog.open(directory, create=False, readonly=True)
    try:
        return catalog_info_job(catalog)
    except BaseException:
        catalog.close()
        raise


def close_catalog_job(catalog: Any, wait_for: list[threading.Event] = ()) -> None:
    """Close a replaced catalog once the jobs still using it (``wait_for``: set when each has
    ended, cancelled already) have stopped."""
    for ended in wait_for:
        ended.wait(CLOSE_WAIT_SECONDS)
    try:
        catalog.close()
    except Exception:
        log.warning("closing the previous catalog failed", exc_info=True)


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
    group: str = "product",
) -> Any:
    """Search with a file (decoded by the engine exactly as ``lookalike search`` does, so the
    scores match the command line) or with pixels (clipboard, dropped image data). ``group``:
    ``"product"`` (one result per product) or ``"image"`` (one per image)."""
    from engine.search import SearchFilters

    searcher = searcher_factory()
    started = time.perf_counter()
    if path is not None:
        result = searcher.search_path(
            path, k=k, filters=SearchFilters(**filters), roi=roi, group=group
        )
    else:
        result = searcher.search_image(
            rgb, k=k, filters=SearchFilters(**filters), roi=roi, name=name, group=group
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
    *,
    progress: Callable[[int, int, str], None],
    cancel: threading.Event,
    note: Callable[[Any], None] | None = None,
    read_text: bool = False,
    product: str | None = None,
) -> Any:
    """Both passes of an import (engine.ingest): ``note(report)`` when the images are searchable
    (a copy of the report so far); ``progress`` then counts the local-feature pass.
    ``read_text``: also read the text on each image (``lookalike index --read-text``);
    ``product``: the images become photos of that product (``lookalike index --product``)."""
    import copy

    from engine.ingest import ingest

    def searchable(report: Any) -> None:
        if note is not None:
            note(copy.copy(report))

    # ingest records the model pack once it holds the write lock (a refused import writes nothing)
    return ingest(catalog, model, [str(p) for p in paths], progress=progress, cancel=cancel,
                  on_searchable=searchable, read_text=read_text, product=product)


def remove_images_job(catalog: Any, ids: list[int]) -> tuple[int, CatalogInfo]:
    removed = catalog.remove_images(list(ids))
    return removed, catalog_info_job(catalog)


def scan_duplicates_job(
    catalog: Any,
    model: Any,
    *,
    load_model: bool,
    threshold: float,
    only_new: bool,
    include_variants: bool,
    progress: Callable[[int, int, str], None],
    cancel: threading.Event,
    turned: bool = True,
) -> Any:
    """``engine.duplicates.scan``, embedding turned images with ``model``; ``load_model``: none
    was loaded for the catalog yet, load the one that fits it (none for synthetic catalogs).
    ``turned`` False: no turned pass (``lookalike dupes --no-turned``)."""
    from engine import duplicates

    if not turned:
        model = None
    elif model is None and load_model:
        model = duplicates.scan_model(catalog)
    return duplicates.scan(
        catalog,
        threshold=threshold,
        only_new=only_new,
        include_variants=include_variants,
        progress=progress,
        cancel=cancel,
        turned=turned,
        model=model,
    )


def mark_pairs_job(
    catalog: Any, pairs: list[tuple[int, int]], decision: str, scores: list[float | None]
) -> int:

    return catalog.decision_store.mark_pairs(pairs, decision, scores)


def set_reference_job(catalog: Any, group: Any, old: int, new: int) -> Any:
    """Make ``new`` the group's remembered representative instead of ``old``; the group
    re-centred on it, every other image scored afresh (``engine.duplicates.rescore_group``)."""
    from engine import duplicates

    catalog.decision_store.set_reference(old, False)
    catalog.decision_store.set_reference(new, True)
    return duplicates.rescore_group(catalog, group, new)
