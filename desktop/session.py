"""The app's state and the worker jobs that act on it (no widgets here).

A :class:`Session` owns the open catalog, the loaded model, the query history and the current
search options. Every engine call runs on a thread pool; results come back as signals on the UI
thread. Searches carry a generation number: a result whose generation is not the latest (the user
picked another query, drew a region, changed a filter meanwhile) is dropped.

Thread pools:

* ``engine_pool`` (1 thread): catalog open/close, searches, statistics, removals -- serialised,
  so a catalog is never closed under a running search;
* ``aux_pool`` (2 threads): model loading (in parallel with the catalog at start-up), decoding
  query images, loading compare images;
* ``import_pool`` (1 thread): imports, which take minutes and must not block searches;
* ``scan_pool`` (1 thread): duplicate scans (minutes on a large catalog), and closing a catalog
  that was replaced, after the scan and the case jobs that used it have stopped;
* ``case_pool`` (2 threads): a case's check of offers and its folder watch (desktop.cases_view).

Duplicate decisions and re-scoring are short catalog writes: they run on ``engine_pool``. Every
job is a :class:`desktop.workers.Task`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal
from PySide6.QtGui import QImage

from . import workers
from .case_session import CaseJobs
from .workers import CatalogInfo, DecodedQuery, Task, TaskRunner

log = logging.getLogger(__name__)

MAX_HISTORY = 50
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".webp",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".jfif",
    ".avif",
    ".heic",
}
FEED_SUFFIXES = {".csv", ".tsv", ".txt"}
IMPORT_BUSY = "the catalog is busy: an import is writing to it; try again once it has finished"


@dataclass(frozen=True)
class SearchOptions:
    k: int = 60
    category: str | None = None
    brand: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    min_score: float = 0.0
    group: str = "product"  # one result per product (its best image), or "image": every image

    def filters(self) -> dict:
        """The fields that are :class:`engine.search.SearchFilters` fields."""
        d = asdict(self)
        d.pop("k")
        d.pop("group")
        return d


@dataclass(eq=False)
class Query:
    """One entry of the query history."""

    name: str
    path: Path | None = None
    image: Any = None  # full-resolution RGB uint8 array once decoded
    display: QImage | None = None
    display_scale: float = 1.0
    icon: QImage | None = None
    roi: tuple[int, int, int, int] | None = None
    result: Any = None  # the latest engine QueryResult shown for it
    result_key: tuple | None = None
    error: str | None = None
    loading: bool = False
    added_at: float = field(default_factory=time.time)

    @property
    def size(self) -> tuple[int, int]:
        if self.image is None:
            return (0, 0)
        return int(self.image.shape[1]), int(self.image.shape[0])

    def region_image(self) -> Any:
        """The searched pixels: the region of interest, or the whole image."""
        if self.image is None or self.roi is None:
            return self.image
        x, y, w, h = self.roi
        return self.image[y : y + h, x : x + w]


def split_dropped_paths(paths: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Dropped/opened paths -> (query images, things to import: folders and feeds)."""
    images, imports = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() or path.suffix.lower() in FEED_SUFFIXES:
            imports.append(path)
        else:
            images.append(path)  # unknown suffixes are tried as images: the decoder decides
    return images, imports


class Session(CaseJobs, QObject):
    message = Signal(str, str)  # level ("info" | "warning" | "error"), one-line text
    modelLoaded = Signal(object)
    modelFailed = Signal(str)
    catalogOpened = Signal(object)  # CatalogInfo
    catalogFailed = Signal(str)
    catalogChanged = Signal(object)  # CatalogInfo after an import or a removal
    historyChanged = Signal()
    queryUpdated = Signal(object)  # Query: decoded, failed, labels...
    currentQueryChanged = Signal(object)  # Query or None
    searchStarted = Signal(object)  # Query
    resultsReady = Signal(object, object)  # Query, QueryResult
    searchFailed = Signal(object, str)  # Query, message
    importStarted = Signal(list)
    importProgress = Signal(int, int, str)
    importSearchable = Signal(object)  # IngestReport so far: the local-feature pass follows
    importFinished = Signal(object)  # IngestReport
    importFailed = Signal(str)
    imagesRemoved = Signal(list)

    def __init__(self, model_loader=None, parent: QObject | None = None):
        super().__init__(parent)
        self._model_loader = model_loader
        self.runner = TaskRunner(self)
        self.engine_pool = QThreadPool(self)
        self.engine_pool.setMaxThreadCount(1)
        self.aux_pool = QThreadPool(self)
        self.aux_pool.setMaxThreadCount(2)
        self.import_pool = QThreadPool(self)
        self.import_pool.setMaxThreadCount(1)
        self.scan_pool = QThreadPool(self)
        self.scan_pool.setMaxThreadCount(1)
        self.case_pool = QThreadPool(self)
        self.case_pool.setMaxThreadCount(2)

        self.model: Any = None
        self.model_error: str | None = None
        self.model_loading = False
        self._model_catalog: Any = None  # the catalog self.model was chosen for
        self.catalog: Any = None
        self.catalog_info: CatalogInfo | None = None
        self.catalog_error: str | None = None
        self.catalog_loading = False
        self._catalog_version = 0

        self.options = SearchOptions()
        self.queries: list[Query] = []
        self.current: Query | None = None
        self._generation = 0
        self._search_pending = False
        self._searching_generation = -1
        self.last_search_seconds: float | None = None

        self._import_task: Task | None = None
        self.importing = False
        #: "indexing", then "features" once the import's images are searchable ("" when none runs)
        self.import_stage = ""
        self._scan_task: Task | None = None
        self._case_tasks: dict[Task, tuple[Any, Any]] = {}  # -> (catalog, Event set when ended)
        self._closing = False

        # engine-thread-only cache of the Searcher
        self._searcher: Any = None
        self._searcher_key: tuple | None = None

    # ------------------------------------------------------------------------------------------
    # start-up: model and catalog, both off the UI thread and in parallel
    # ------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """A catalog is open and the model that fits it is loaded."""
        return (
            self.model is not None
            and self.catalog is not None
            and self._model_catalog is self.catalog
        )

    def load_model(self) -> None:
        """Load the model that fits the open catalog (after the catalog is open)."""
        catalog = self.catalog
        if catalog is None or self.model_loading:
            return
        self.model_loading = True
        self.model_error = None
        self.runner.start(
            self.aux_pool,
            Task(workers.model_for_catalog_job, catalog, self.model, self._model_loader),
            on_done=lambda model, c=catalog: self._on_model_loaded(c, model),
            on_error=lambda msg, c=catalog: self._on_model_failed(c, msg),
        )

    def _on_model_loaded(self, catalog: Any, model: Any) -> None:
        self.model_loading = False
        if catalog is not self.catalog:  # the catalog changed meanwhile: choose again
            self.load_model()
            return
        changed = model is not self.model
        self.model = model
        self._model_catalog = catalog
        if changed:
            self._catalog_version += 1
            self.modelLoaded.emit(model)
        self._run_pending()

    def _on_model_failed(self, catalog: Any, message: str) -> None:
        self.model_loading = False
        if catalog is not self.catalog:
            self.load_model()
            return
        self.model_error = message
        self.model = None
        self._model_catalog = None
        self.modelFailed.emit(message)
        self.message.emit("error", f"Model not available: {message}")
        if self._search_pending and self.current is not None:
            self._search_pending = False
            self.searchFailed.emit(self.current, f"cannot search without a model ({message})")

    def open_catalog(self, directory: str | Path | None, *, create: bool = True) -> bool:
        """Open (or create) a catalog; the previous one is closed once the new one is open."""
        if self.importing:
            self.message.emit(
                "warning", "An import is running: cancel it before switching catalogs."
            )
            return False
        if self.catalog_loading:
            self.message.emit("warning", "A catalog is already being opened.")
            return False
        self.catalog_loading = True
        self.catalog_error = None
        self.runner.start(
            self.engine_pool,
            Task(workers.open_catalog_job, directory, create),
            on_done=self._on_catalog_opened,
            on_error=lambda msg, d=directory: self._on_catalog_failed(d, msg),
        )
        return True

    def _on_catalog_opened(self, info: CatalogInfo) -> None:
        self.catalog_loading = False
        previous = self.catalog
        self.catalog = info.catalog
        if previous is not None and previous is not info.catalog:
            # on the scan pool: after a scan of it has stopped (cancelled here)
            self.cancel_scan()
            ended = self.cancel_case_jobs(previous)
            self.runner.start(self.scan_pool, Task(workers.close_catalog_job, previous, ended))
        self.catalog_info = info
        self._catalog_version += 1
        for query in self.queries:  # results belong to the previous catalog
            query.result_key = None
        self.catalogOpened.emit(info)
        self.load_model()
        if info.images == 0:
            self.message.emit(
                "info",
                f"The catalog {info.directory} is empty: import a folder or a product feed (Ctrl+I).",
            )
        if self.current is not None and self.current.image is not None:
            self.search_current()  # also runs a search that waited for the catalog

    def _on_catalog_failed(self, directory: Any, message: str) -> None:
        self.catalog_loading = False
        self.catalog_error = message
        self.catalogFailed.emit(message)
        self.message.emit("error", f"Cannot open the catalog: {message}")

    def refresh_catalog_info(self) -> None:
        if self.catalog is None:
            return
        self.runner.start(
            self.engine_pool,
            Task(workers.catalog_info_job, self.catalog),
            on_done=self._on_catalog_changed,
            on_error=lambda msg: self.message.emit(
                "warning", f"Cannot read the catalog statistics: {msg}"
            ),
        )

    def _on_catalog_changed(self, info: CatalogInfo) -> None:
        if info.catalog is not self.catalog:
            return
        self.catalog_info = info
        self.catalogChanged.emit(info)

    # ------------------------------------------------------------------------------------------
    # queries
    # ------------------------------------------------------------------------------------------
    def add_query_files(self, paths: list[str | Path]) -> list[Query]:
        """Each file becomes a query in the history; the first one becomes the current query."""
        added = []
        for raw in paths:
            path = Path(raw)
            query = Query(name=path.name or str(path), path=path, loading=True)
            self._append(query)
            added.append(query)
            self.runner.start(
                self.aux_pool,
                Task(workers.decode_query_file_job, path),
                on_done=lambda decoded, q=query: self._on_query_decoded(q, decoded),
                on_error=lambda msg, q=query: self._on_query_failed(q, msg),
            )
        if added:
            self.historyChanged.emit()
            self.set_current(added[0])
        return added

    def add_query_qimage(self, image: QImage, name: str | None = None) -> Query:
        """A pasted image (clipboard) becomes the current query."""
        query = Query(name=name or time.strftime("Clipboard %H:%M:%S"), loading=True)
        self._append(query)
        self.historyChanged.emit()
        self.runner.start(
            self.aux_pool,
            Task(workers.decode_query_qimage_job, QImage(image)),
            on_done=lambda decoded, q=query: self._on_query_decoded(q, decoded),
            on_error=lambda msg, q=query: self._on_query_failed(q, msg),
        )
        self.set_current(query)
        return query

    def _append(self, query: Query) -> None:
        self.queries.append(query)
        while len(self.queries) > MAX_HISTORY:
            victim = next((q for q in self.queries if q is not self.current), None)
            if victim is None:
                break
            self.queries.remove(victim)

    def remove_query(self, query: Query) -> None:
        if query in self.queries:
            self.queries.remove(query)
            self.historyChanged.emit()
            if query is self.current:
                self.set_current(self.queries[-1] if self.queries else None)

    def clear_history(self) -> None:
        self.queries = [self.current] if self.current is not None else []
        self.historyChanged.emit()

    def _on_query_decoded(self, query: Query, decoded: DecodedQuery) -> None:
        query.loading = False
        query.error = None
        query.image = decoded.image
        query.display = decoded.display
        query.display_scale = decoded.display_scale
        query.icon = decoded.icon
        self.queryUpdated.emit(query)
        if query is self.current:
            self.search_current()

    def _on_query_failed(self, query: Query, message: str) -> None:
        query.loading = False
        query.error = message
        self.queryUpdated.emit(query)
        self.message.emit("error", message)
        if query is self.current:
            self.searchFailed.emit(query, message)

    def set_current(self, query: Query | None) -> None:
        if query is self.current:
            return
        self.current = query
        self._generation += 1  # whatever was running for the previous query is now stale
        self.currentQueryChanged.emit(query)
        if query is not None and query.image is not None:
            self.search_current()

    def step_query(self, delta: int) -> None:
        if not self.queries:
            return
        index = self.queries.index(self.current) if self.current in self.queries else -1
        self.set_current(self.queries[max(0, min(len(self.queries) - 1, index + delta))])

    def set_roi(self, roi: tuple[int, int, int, int] | None) -> None:
        if self.current is None or self.current.roi == roi:
            return
        self.current.roi = tuple(roi) if roi else None  # type: ignore[assignment]
        self.search_current()

    def set_options(self, **changes: Any) -> None:
        options = replace(self.options, **changes)
        if options != self.options:
            self.options = options
            self.search_current()

    # ------------------------------------------------------------------------------------------
    # search
    # ------------------------------------------------------------------------------------------
    @property
    def searching(self) -> bool:
        """A search for the current query, with the current options, is running."""
        return self._searching_generation == self._generation

    def _result_key(self, query: Query) -> tuple:
        return (self.options, query.roi, self._catalog_version)

    def search_current(self, *, force: bool = False) -> None:
        query = self.current
        if query is None or query.image is None:
            return
        if not self.ready:
            self._search_pending = True
            if self.model_error:
                self._search_pending = False
                self.searchFailed.emit(query, f"cannot search without a model ({self.model_error})")
            elif self.catalog_error and not self.catalog_loading:
                self._search_pending = False
                self.searchFailed.emit(query, f"no catalog is open ({self.catalog_error})")
            return
        self._search_pending = False
        key = self._result_key(query)
        self._generation += 1
        if not force and query.result is not None and query.result_key == key:
            self.resultsReady.emit(query, query.result)  # nothing changed since it was searched
            return
        generation = self._generation
        catalog, model, version = self.catalog, self.model, self._catalog_version
        self._searching_generation = generation
        self.searchStarted.emit(query)
        self.runner.start(
            self.engine_pool,
            Task(
                self._search_if_current,
                generation,
                lambda: self._get_searcher(catalog, model, version),
                query.image,
                str(query.path) if query.path else None,
                query.name,
                self.options.k,
                self.options.filters(),
                query.roi,
                self.options.group,
            ),
            on_done=lambda result, g=generation, q=query, k=key: self._on_search_done(
                g, q, k, result
            ),
            on_error=lambda msg, g=generation, q=query: self._on_search_failed(g, q, msg),
        )

    def _search_if_current(self, generation: int, *args: Any) -> Any:  # engine thread
        if generation != self._generation:
            return None  # superseded before it started: skip the work
        return workers.search_job(*args)

    def _get_searcher(self, catalog: Any, model: Any, version: int) -> Any:  # engine thread
        key = (id(catalog), id(model), version)
        if self._searcher is None or self._searcher_key != key:
            from engine.search import Searcher

            self._searcher = Searcher(catalog, model)
            self._searcher_key = key
        return self._searcher

    def _on_search_done(self, generation: int, query: Query, key: tuple, result: Any) -> None:
        if result is None or generation != self._generation:
            return  # superseded
        self._searching_generation = -1
        query.result = result
        query.result_key = key
        timings = getattr(result, "timings", None) or {}
        ms = timings.get("wall", timings.get("total"))  # milliseconds
        self.last_search_seconds = float(ms) / 1000 if ms is not None else None
        error = getattr(result, "error", None)
        self.queryUpdated.emit(query)
        self.resultsReady.emit(query, result)
        if error:
            self.message.emit("warning", str(error))

    def _on_search_failed(self, generation: int, query: Query, message: str) -> None:
        if generation != self._generation:
            return
        self._searching_generation = -1
        self.searchFailed.emit(query, message)
        self.message.emit("error", f"Search failed: {message}")

    def _run_pending(self) -> None:
        if self._search_pending and self.ready:
            self.search_current()

    # ------------------------------------------------------------------------------------------
    # import, removal
    # ------------------------------------------------------------------------------------------
    def start_import(self, paths: list[str | Path], *, read_text: bool = False,
                     product: str | None = None) -> bool:
        """Import ``paths`` on the import thread (``read_text``: also read the text on each
        image, as ``lookalike index --read-text`` does; ``product``: they become photos of that
        catalog product, as ``lookalike index --product`` makes them)."""
        if self.importing:
            self.message.emit("warning", "An import is already running.")
            return False
        if self.catalog is None:
            self.message.emit("error", "Open or create a catalog before importing.")
            return False
        if not self.ready:
            why = f" ({self.model_error})" if self.model_error else " yet"
            self.message.emit("error", f"Cannot import: the model is not loaded{why}.")
            return False
        paths = [str(p) for p in paths]
        self.importing = True
        self.import_stage = "indexing"
        self.importStarted.emit(paths)
        self._import_task = self.runner.start(
            self.import_pool,
            Task(
                workers.import_job,
                self.catalog,
                self.model,
                paths,
                wants_progress=True,
                wants_notes=True,
                cancellable=True,
                read_text=read_text,
                product=product,
            ),
            on_done=self._on_import_done,
            on_error=self._on_import_failed,
            on_progress=self.importProgress.emit,
            on_note=self._on_import_searchable,
        )
        return True

    def cancel_import(self) -> None:
        if self._import_task is not None:
            self._import_task.cancel()

    @property
    def import_cancelling(self) -> bool:
        return self._import_task is not None and self._import_task.cancel_requested

    def _after_catalog_write(self) -> None:
        self._catalog_version += 1
        for query in self.queries:
            query.result_key = None
        self.refresh_catalog_info()

    def _on_import_searchable(self, report: Any) -> None:
        """The import's images are in the index: searches see them (a search verifies a candidate
        whose local features the second pass has not stored yet from features computed for it)."""
        if not self.importing:
            return
        self.import_stage = "features"
        self._after_catalog_write()
        self.importSearchable.emit(report)
        if self.current is not None and not self._closing:
            self.search_current()

    def _on_import_done(self, report: Any) -> None:
        self.importing = False
        self.import_stage = ""
        self._import_task = None
        self._after_catalog_write()
        self.importFinished.emit(report)
        if self.current is not None and not self._closing:
            self.search_current()

    def _on_import_failed(self, message: str) -> None:
        self.importing = False
        self.import_stage = ""
        self._import_task = None
        self._after_catalog_write()
        self.importFailed.emit(message)
        self.message.emit("error", f"Import failed: {message}")

    def remove_images(self, image_ids: list[int]) -> None:
        if self.catalog is None or not image_ids:
            return
        if self.importing:  # the import holds the catalog's write lock until it ends
            self.message.emit("warning", "An import is running: remove items once it has finished.")
            return
        ids = [int(i) for i in image_ids]
        self.runner.start(
            self.engine_pool,
            Task(workers.remove_images_job, self.catalog, ids),
            on_done=lambda result, ids=ids: self._on_removed(ids, result),
            on_error=lambda msg: self.message.emit("error", f"Cannot remove: {msg}"),
        )

    def _on_removed(self, ids: list[int], result: tuple[int, CatalogInfo]) -> None:
        removed, info = result
        gone = set(ids)
        self._catalog_version += 1
        for query in self.queries:
            query.result_key = None  # searched again when shown again
        self.imagesRemoved.emit(sorted(gone))
        self._on_catalog_changed(info)
        self.message.emit(
            "info", f"Removed {removed} image{'s' if removed != 1 else ''} from the catalog."
        )

    # ------------------------------------------------------------------------------------------
    # duplicates (desktop.duplicates_view): the outcome goes to the caller's callbacks
    # ------------------------------------------------------------------------------------------
    @property
    def scanning(self) -> bool:
        return self._scan_task is not None

    def scan_duplicates(
        self,
        *,
        threshold: float,
        only_new: bool = False,
        include_variants: bool = False,
        turned: bool = True,
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None],
        on_cancelled: Callable[[], None],
        on_progress: Callable[[int, int, str], None] | None = None,
    ) -> bool:
        """Scan the open catalog for groups of copies (``engine.duplicates.scan``) on the scan
        pool, with the model loaded for it (turned copies; ``turned`` False: no turned pass);
        False when a scan is running or no catalog is open."""
        if self.catalog is None or self._scan_task is not None:
            return False
        task = Task(
            workers.scan_duplicates_job,
            self.catalog,
            self.model if self.ready else None,
            # a model that failed to load for this catalog would fail in the scan too
            load_model=not self.ready and self.model_error is None,
            threshold=threshold,
            only_new=only_new,
            include_variants=include_variants,
            turned=turned,
            wants_progress=True,
            cancellable=True,
        )
        self._scan_task = task

        def ended(callback: Callable[..., None]) -> Callable[..., None]:
            def call(*args: Any) -> None:
                if self._scan_task is task:
                    self._scan_task = None
                callback(*args)

            return call

        self.runner.start(
            self.scan_pool,
            task,
            on_done=ended(on_done),
            on_error=ended(on_error),
            on_cancelled=ended(on_cancelled),
            on_progress=on_progress,
        )
        return True

    def cancel_scan(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()

    def mark_duplicate_pairs(
        self,
        pairs: list[tuple[int, int]],
        decision: str,
        scores: list[float | None],
        *,
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None],
    ) -> None:
        """Remember a decision ("not_duplicate", "confirmed") for image pairs, off the UI thread."""
        self._write_catalog(
            workers.mark_pairs_job, [tuple(p) for p in pairs], decision, list(scores),
            on_done=on_done, on_error=on_error,
        )  # fmt: skip

    def set_duplicate_reference(
        self,
        group: Any,
        new: int,
        *,
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None],
    ) -> None:
        """Make image ``new`` the group's remembered representative; ``on_done`` gets the group
        re-centred on it and scored afresh."""
        self._write_catalog(
            workers.set_reference_job, group, group.representative.image_id, int(new),
            on_done=on_done, on_error=on_error,
        )  # fmt: skip

    def _write_catalog(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None],
    ) -> None:
        """A short catalog write on the engine thread. An import holds the catalog's write lock
        until it ends, and the write would wait for it (with the searches queued behind): it
        fails at once instead, here or, when the import started meanwhile, in the job."""
        if self.catalog is None:
            on_error("no catalog is open")
            return
        if self.importing:
            on_error(IMPORT_BUSY)
            return
        self.runner.start(
            self.engine_pool,
            Task(self._write_unless_importing, fn, self.catalog, *args),
            on_done=on_done,
            on_error=on_error,
        )

    def _write_unless_importing(self, fn: Callable[..., Any], *args: Any) -> Any:  # engine thread
        if self.importing:
            from engine.errors import CatalogBusyError

            raise CatalogBusyError(IMPORT_BUSY)
        return fn(*args)

    # ------------------------------------------------------------------------------------------
    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel the import and the scan, wait for the workers and close the catalog."""
        self._closing = True
        self._generation += 1
        self.cancel_import()
        self.cancel_scan()
        self.cancel_case_jobs()
        deadline = time.monotonic() + timeout_ms / 1000
        for pool in (self.import_pool, self.case_pool, self.scan_pool, self.engine_pool, self.aux_pool):
            pool.waitForDone(max(0, int((deadline - time.monotonic()) * 1000)))
        if self.catalog is not None:
            try:
                self.catalog.close()
            except Exception:
                log.warning("closing the catalog failed", exc_info=True)
            self.catalog = None
