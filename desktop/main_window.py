"""The main window: query panel and filters (left), results grid / compare view (centre),
details (right), a message banner and a status bar. It wires widgets to the :class:`Session`.

Its actions, menus and toolbar are built by :mod:`desktop.menus`; the catalog menu's slots and
the import's progress are :mod:`desktop.catalog_actions`; the status bar is
:mod:`desktop.status_bar`; drops and pastes are read by :mod:`desktop.query_input`."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QImage
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from . import menus, resources
from .banner import MessageBanner
from .catalog_actions import CatalogActions
from .catalog_dialog import CatalogStatsDialog
from .compare_view import CompareView
from .details_panel import DetailsPanel
from .export import export_results_csv
from .filters_panel import FiltersPanel, engine_thresholds
from .import_dialog import ImportDialog
from .query_input import DropTarget, clipboard_query
from .query_panel import QueryPanel
from .results_model import ResultsModel, results_header
from .results_view import ResultDelegate, ResultsView
from .session import Query, SearchOptions, Session, split_dropped_paths
from .settings import Settings
from .status_bar import StatusBar, plural
from .thumbnails import ThumbnailLoader
from .workers import CatalogInfo, Task

log = logging.getLogger(__name__)


def _shows(match: Any, previous: Any) -> bool:
    """``match`` is the result ``previous`` was, or holds its image or product (after switching
    between results per product and per image)."""
    ids = {int(match.image_id), *(int(m.image_id) for m in getattr(match, "images", None) or [])}
    if int(previous.image_id) in ids:
        return True
    product = (previous.product or {}).get("product_id")
    return bool(product) and (match.product or {}).get("product_id") == product

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.bmp *.gif *.tif *.tiff);;All files (*)"
MIN_SIZE = QSize(1280, 860)


class MainWindow(CatalogActions, QMainWindow):
    resultsShown = Signal(object)  # the QueryResult now in the grid

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        model_loader=None,
        persist: bool = True,
        parent=None,
    ):
        super().__init__(parent)
        self.settings = settings or Settings()
        self.persist = persist  # screenshots and benchmarks leave the user's settings alone
        self.setWindowTitle("Lookalike")
        self.setWindowIcon(resources.app_icon())
        self.session = Session(model_loader=model_loader, parent=self)
        ratio = (
            QGuiApplication.primaryScreen().devicePixelRatio()
            if QGuiApplication.primaryScreen()
            else 1.0
        )
        side = round(ResultDelegate.THUMB * max(1.0, ratio))  # crisp on high-DPI screens
        self.thumbnails = ThumbnailLoader(
            display_size=QSize(side, side), disk_size=max(256, side), parent=self
        )
        self.results_model = ResultsModel(self.thumbnails, self)
        self.shown_result: Any = None
        self.shown_query: Query | None = None
        self._build_widgets()
        menus.build_actions(self)
        menus.build_menus(self)
        self.act_read_text.setChecked(self.settings.read_text_on_import())
        self.act_read_text.toggled.connect(self.settings.set_read_text_on_import)
        menus.build_toolbar(self)
        self._fill_recent_menu()
        self._build_status_bar()
        self._connect()
        self._set_tab_order()
        self.filters.set_values(
            k=self.settings.result_count(),
            min_score=self.settings.min_score(),
            group=self.settings.result_group(),
        )
        self.session.options = SearchOptions(**self.filters.options())
        self._update_actions()
        self.resize(MIN_SIZE)

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.query_panel = QueryPanel()
        self.filters = FiltersPanel()
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.query_panel)
        left.addWidget(self.filters)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 0)
        left.setChildrenCollapsible(False)
        self.left_splitter = left

        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(4, 4, 4, 4)
        centre_layout.setSpacing(4)
        self.banner = MessageBanner()
        centre_layout.addWidget(self.banner)
        self.stack = QStackedWidget()
        results_page = QWidget()
        results_layout = QVBoxLayout(results_page)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.setSpacing(4)
        header = QHBoxLayout()
        self.results_header = QLabel("Drop, paste or open a product photo to find its matches.")
        self.results_header.setTextFormat(Qt.TextFormat.PlainText)
        self.results_header.setWordWrap(True)
        header.addWidget(self.results_header, 1)
        self.legend = QLabel(
            "<span style='color:#c62828'>■</span> likely copy &nbsp; "
            "<span style='color:#e65100'>■</span> same product &nbsp; "
            "<span style='color:#1565c0'>■</span> similar"
        )
        header.addWidget(self.legend)
        results_layout.addLayout(header)
        self.results_view = ResultsView()
        self.results_view.setModel(self.results_model)
        results_layout.addWidget(self.results_view, 1)
        self.stack.addWidget(results_page)
        self.compare_view = CompareView(self.session.aux_pool, self.session.runner)
        self.stack.addWidget(self.compare_view)
        centre_layout.addWidget(self.stack, 1)

        self.details = DetailsPanel()

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(centre)
        main.addWidget(self.details)
        main.setStretchFactor(0, 0)
        main.setStretchFactor(1, 1)
        main.setStretchFactor(2, 0)
        main.setSizes([330, 640, 310])
        main.setChildrenCollapsible(False)
        self.main_splitter = main
        self.setCentralWidget(main)

        self.import_dialog = ImportDialog(self)
        self.stats_dialog = CatalogStatsDialog(self)
        self.shortcuts_dialog: QDialog | None = None
        self.duplicates_window: QWidget | None = None
        self.cases_window: QWidget | None = None

    def _build_status_bar(self) -> None:
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        # the labels, for the screenshot command and tests
        self.import_bar = self.status.import_bar
        self.search_label = self.status.search_label
        self.catalog_label = self.status.catalog_label
        self.model_label = self.status.model_label

    def _connect(self) -> None:
        s = self.session
        s.message.connect(self.banner.show_message)
        s.modelLoaded.connect(self._on_model_loaded)
        s.modelFailed.connect(self.status.model_failed)
        s.catalogFailed.connect(lambda msg: s.model is None and self.status.model_waiting())
        s.catalogOpened.connect(self._on_catalog_opened)
        s.catalogFailed.connect(self._on_catalog_failed)
        s.catalogChanged.connect(self._on_catalog_changed)
        s.historyChanged.connect(lambda: self.query_panel.set_history(s.queries, s.current))
        s.queryUpdated.connect(self._on_query_updated)
        s.currentQueryChanged.connect(self._on_current_query)
        s.searchStarted.connect(self._on_search_started)
        s.resultsReady.connect(self._on_results)
        s.searchFailed.connect(self._on_search_failed)
        s.importStarted.connect(self._on_import_started)
        s.importProgress.connect(self._on_import_progress)
        s.importSearchable.connect(self._on_import_searchable)
        s.importFinished.connect(self._on_import_finished)
        s.importFailed.connect(self._on_import_failed)
        s.imagesRemoved.connect(self._on_images_removed)

        self.query_panel.roiChanged.connect(self._on_roi)
        self.query_panel.querySelected.connect(s.set_current)
        self.query_panel.removeQueryRequested.connect(s.remove_query)
        self.query_panel.clearHistoryRequested.connect(s.clear_history)
        self.filters.changed.connect(self._on_filters)
        self.results_view.selectionModel().currentChanged.connect(self._on_current_result)
        self.results_view.selectionModel().selectionChanged.connect(
            lambda *_: self._update_actions()
        )
        self.results_view.activatedMatch.connect(lambda _m: self.show_compare())
        self.thumbnails.ready.connect(self._on_thumbnail)
        self.details.compareRequested.connect(lambda _m: self.show_compare())
        self.details.photoActivated.connect(self.show_compare)
        self.details.message.connect(self.banner.show_message)
        self.compare_view.closeRequested.connect(self.show_results)
        self.compare_view.message.connect(self.banner.show_message)
        self.import_dialog.cancelRequested.connect(s.cancel_import)
        self.recent_menu.catalogChosen.connect(self.open_recent)
        self.recent_menu.clearRequested.connect(self._clear_recent)
        self.drop_target = DropTarget(self)
        self.drop_target.filesDropped.connect(lambda files: self._dropped(self.add_paths, files))
        self.drop_target.imageDropped.connect(
            lambda image: self._dropped(
                self.session.add_query_qimage, image, time.strftime("Dropped image %H:%M:%S")
            )
        )
        self.drop_target.notAnImage.connect(
            lambda: self._dropped(self.banner.warning, "The dropped data is not an image.")
        )

    def _set_tab_order(self) -> None:
        chain = [
            self.query_panel.view,
            self.query_panel.clear_roi_button,
            self.query_panel.history,
            self.filters.category,
            self.filters.brand,
            self.filters.price_min,
            self.filters.price_max,
            self.filters.min_score,
            self.filters.count,
            self.filters.all_images,
            self.filters.reset_button,
            self.results_view,
            self.details.compare_button,
            self.details.reveal_button,
            self.details.url_button,
            self.details.copy_sku_button,
            self.details.copy_id_button,
            self.details.copy_path_button,
        ]
        for a, b in itertools.pairwise(chain):
            QWidget.setTabOrder(a, b)

    # ------------------------------------------------------------------------------------------
    # start-up and persistence
    # ------------------------------------------------------------------------------------------
    def start(
        self, catalog: str | Path | None = None, queries: list[str | Path] | None = None
    ) -> None:
        """Open the catalog, then load the model that fits it (off the UI thread); run ``queries``."""
        directory = catalog if catalog is not None else self.settings.last_catalog()
        # a catalog named on the command line (or the default one) is created if missing;
        # the remembered last one is not re-created if it was deleted meanwhile
        self.session.open_catalog(directory, create=catalog is not None or directory is None)
        if queries:
            self.add_paths([Path(q) for q in queries])

    def restore_state(self) -> None:
        geometry = self.settings.window_blob("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        for name, splitter in (
            ("main_splitter", self.main_splitter),
            ("left_splitter", self.left_splitter),
        ):
            blob = self.settings.window_blob(name)
            if blob is not None:
                splitter.restoreState(blob)
        state = self.settings.window_blob("state")
        if state is not None:
            self.restoreState(state)

    def save_state(self) -> None:
        if not self.persist:
            return
        self.settings.set_window_blob("geometry", self.saveGeometry())
        self.settings.set_window_blob("state", self.saveState())
        self.settings.set_window_blob("main_splitter", self.main_splitter.saveState())
        self.settings.set_window_blob("left_splitter", self.left_splitter.saveState())
        self.settings.set_result_count(self.session.options.k)
        self.settings.set_min_score(self.session.options.min_score)
        self.settings.set_result_group(self.session.options.group)
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_state()
        self._close_side_windows()
        self.compare_view.stop()
        self.import_dialog.hide()
        self.thumbnails.shutdown()
        self.session.shutdown()
        super().closeEvent(event)

    # ------------------------------------------------------------------------------------------
    # queries: drop, paste, open
    # ------------------------------------------------------------------------------------------
    def add_paths(self, paths: list[Path]) -> None:
        """Image files become queries; folders and feeds are imported into the catalog."""
        images, imports = split_dropped_paths(paths)
        if images:
            self.session.add_query_files(images)
        if imports:
            self.start_import(imports)

    def open_images(self, paths: list[str] | None = None) -> None:
        if paths is None:
            paths, _ = QFileDialog.getOpenFileNames(
                self, "Open query images", self.settings.last_dir("query"), IMAGE_FILTER
            )
            if not paths:
                return
            self.settings.set_last_dir("query", Path(paths[0]).parent)
        self.session.add_query_files([Path(p) for p in paths])

    def paste(self) -> bool:
        """Search with the clipboard: an image (screenshot), image files, or a path as text."""
        found = clipboard_query(QGuiApplication.clipboard().mimeData())
        if isinstance(found, QImage):
            self.session.add_query_qimage(found)
        elif found:
            self.add_paths(found)
        else:
            self.banner.warning(
                "The clipboard holds no image: copy an image or take a screenshot, then paste."
            )
        return found is not None

    def _dropped(self, handle, *args: Any) -> None:
        handle(*args)
        self.activateWindow()

    # ------------------------------------------------------------------------------------------
    # session -> widgets
    # ------------------------------------------------------------------------------------------
    def _on_model_loaded(self, model: Any) -> None:
        self.status.show_model(model)
        thresholds = engine_thresholds()
        if thresholds:
            self.filters.set_thresholds(thresholds)
        self._update_actions()

    def _on_catalog_opened(self, info: CatalogInfo) -> None:
        self._close_side_windows()  # they showed the previous catalog
        self.thumbnails.set_catalog(info.catalog)
        self.results_model.clear()
        self.shown_result = None
        self.details.show_match(None)
        self.show_results()
        self.filters.set_facets(info.facets)
        self.status.show_catalog(info)
        recent = str(info.directory)
        if self.persist:
            self.settings.add_recent_catalog(recent)
        self._fill_recent_menu(extra=recent)
        self.setWindowTitle(f"Lookalike — {info.directory.name or info.directory}")
        self._update_actions()

    def _on_catalog_failed(self, message: str) -> None:
        self.status.catalog_failed(message)
        self._update_actions()

    def _on_catalog_changed(self, info: CatalogInfo) -> None:
        self.filters.set_facets(info.facets)
        self.status.show_catalog(info)
        if self.stats_dialog.isVisible():
            self.show_stats()

    def _on_current_query(self, query: Query | None) -> None:
        self.query_panel.show_query(query)
        self.query_panel.select_in_history(query)
        if query is None:
            self._show_result(None, None)
        elif query.error:
            self._show_query_error(query)
        elif query.image is None:
            self.results_header.setText(f"Loading {query.name}…")
        self._update_actions()

    def _on_query_updated(self, query: Query) -> None:
        self.query_panel.update_query(query)
        if query is self.session.current:
            if query.display is not None and not self.query_panel.view.has_image():
                self.query_panel.show_query(query)
            elif query.error:
                self.query_panel.show_query(query)
                self._show_query_error(query)
            elif query.result is not None:
                self.query_panel.labels.set_labels(
                    getattr(query.result, "labels", []) or [], "no class"
                )
                self.query_panel.show_read(query.result)

    def _show_query_error(self, query: Query) -> None:
        self._show_result(query, None)
        reason = query.error or ""
        if query.path is not None and reason.startswith(f"{query.path}: "):
            reason = reason[len(f"{query.path}: ") :]
        self.results_header.setText(f"Cannot use {query.name}: {reason}")

    def _on_search_started(self, query: Query) -> None:
        self.results_header.setText(f"Searching {query.name}{' (region)' if query.roi else ''}…")

    def _on_search_failed(self, query: Query, message: str) -> None:
        if query is self.session.current:
            if query.error:
                self._show_query_error(query)
            else:
                self.results_header.setText(f"No results: {message}")
            self.query_panel.labels.set_labels([], "—")
            self.query_panel.show_read(None)
            if not self.session.ready:
                self.banner.error(f"Cannot search {query.name}: {message}")

    def _on_results(self, query: Query, result: Any) -> None:
        if query is not self.session.current:
            return
        self._show_result(query, result)
        self.query_panel.labels.set_labels(getattr(result, "labels", []) or [], "no class")
        self.query_panel.show_read(result)
        self.query_panel.show_roi(query)
        seconds = self.session.last_search_seconds
        if seconds is not None:
            self.status.search_done(seconds)

    def _show_result(self, query: Query | None, result: Any) -> None:
        previous = self.results_view.current_match()
        matches = list(getattr(result, "results", None) or []) if result is not None else []
        self.shown_query, self.shown_result = query, result
        read = list(getattr(result, "read", None) or []) if result is not None else []
        self.details.set_read(read)  # before the selection below fills the details
        self.results_model.set_matches(matches, read=read)
        if matches:
            # keep the same product selected across re-searches, else select the best match
            row = 0
            if previous is not None:
                row = next(
                    (i for i, m in enumerate(matches) if m.image_id == previous.image_id),
                    next((i for i, m in enumerate(matches) if _shows(m, previous)), 0),
                )
            index = self.results_model.index(row, 0)
            self.results_view.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
            self.results_view.scrollTo(index)
        else:
            self.details.show_match(None)
            if self.stack.currentWidget() is self.compare_view:
                self.show_results()
        self.results_header.setText(results_header(query, result, matches, self.session.catalog_info,
                                                   self.session.options))
        self._update_actions()
        self.resultsShown.emit(result)

    def _on_current_result(self, current: QModelIndex, _previous: QModelIndex) -> None:
        match = self.results_model.match_at(current.row()) if current.isValid() else None
        thumb = self.thumbnails.get(int(match.image_id)) if match is not None else None
        self.details.show_match(match, thumb)
        for photo in self.details.photo_matches():  # a product's other photos: small icons
            image = self.thumbnails.get(int(photo.image_id))  # None: loading, ready comes later
            if image is not None:
                self.details.set_thumbnail(int(photo.image_id), image)
        if match is not None and self.session.catalog is not None:
            catalog = self.session.catalog
            self.session.runner.start(
                self.session.aux_pool,
                Task(catalog.image_record, int(match.image_id)),
                on_done=lambda record, m=match: self.details.set_record(m, record),
            )
        if match is not None and self.stack.currentWidget() is self.compare_view:
            self.compare_view.show_pair(self.shown_query, match)
        self._update_actions()

    def _on_thumbnail(self, image_id: int) -> None:
        if image_id in self.details.image_ids():
            self.details.set_thumbnail(image_id, self.thumbnails.get(image_id))

    def _on_roi(self, roi: Any) -> None:
        self.session.set_roi(roi)
        self.query_panel.show_roi(self.session.current)

    def _on_filters(self, options: dict) -> None:
        self.session.set_options(**options)
        if self.persist:
            self.settings.set_result_count(options["k"])
            self.settings.set_min_score(options["min_score"])
            self.settings.set_result_group(options["group"])

    # ------------------------------------------------------------------------------------------
    # results actions
    # ------------------------------------------------------------------------------------------
    def step_result(self, delta: int) -> None:
        self.results_view.step(delta)

    def show_compare(self, match: Any = None) -> bool:
        """Compare ``match`` (default: the selected result) with the query."""
        match = match if match is not None else self.results_view.current_match()
        if match is None or self.shown_query is None or self.shown_query.image is None:
            self.banner.info("Select a result to compare it with the query.")
            return False
        self.stack.setCurrentWidget(self.compare_view)
        self.compare_view.show_pair(self.shown_query, match)
        self.compare_view.setFocus()
        return True

    def show_results(self) -> None:
        self.compare_view.stop()
        self.stack.setCurrentIndex(0)
        self.results_view.setFocus()

    def toggle_compare(self) -> None:
        if self.stack.currentWidget() is self.compare_view:
            self.show_results()
        else:
            self.show_compare()

    def export_results(self, path: str | Path | None = None) -> Path | None:
        matches = self.results_model.matches()
        if not matches:
            self.banner.info("There are no results to export.")
            return None
        query_name = self.shown_query.name if self.shown_query else ""
        if path is None:
            suggested = (
                Path(self.settings.last_dir("export"))
                / f"{Path(query_name).stem or 'results'}-matches.csv"
            )
            chosen, _ = QFileDialog.getSaveFileName(
                self, "Export results", str(suggested), "CSV files (*.csv)"
            )
            if not chosen:
                return None
            path = chosen
            self.settings.set_last_dir("export", Path(chosen).parent)
        from engine.errors import LookalikeError

        path = Path(path)
        info = self.session.catalog_info
        try:
            count = export_results_csv(
                path, str(self.shown_query.path or query_name) if self.shown_query else "", matches,
                catalog_dir=info.directory if info is not None else None,
            )
        except LookalikeError as exc:        # a folder, a missing folder, a catalog file, disk full
            self.banner.error(str(exc))
            return None
        self.banner.info(f"Exported {plural(count, 'result')} to {path}")
        return path

    def remove_selected(self, *, confirm: bool = True) -> None:
        matches = self.results_view.selected_matches()
        if not matches:
            self.banner.info("Select the results to remove from the catalog.")
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Remove from catalog",
                f"Remove {plural(len(matches), 'image')} from the catalog {self.session.catalog_info.directory}?\n"
                "The image files themselves are not deleted.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.session.remove_images([int(m.image_id) for m in matches])

    def _on_images_removed(self, ids: list[int]) -> None:
        self.thumbnails.forget(ids)
        self.results_model.remove_image_ids(set(ids))
        if self.results_model.rowCount() == 0:
            self.details.show_match(None)

    # ------------------------------------------------------------------------------------------
    def _update_actions(self) -> None:
        has_results = self.results_model.rowCount() > 0
        has_current = self.results_view.currentIndex().isValid()
        has_catalog = self.session.catalog is not None
        self.act_export.setEnabled(has_results)
        self.act_compare.setEnabled(has_current)
        self.act_next.setEnabled(has_results)
        self.act_prev.setEnabled(has_results)
        self.act_remove.setEnabled(
            has_catalog and bool(self.results_view.selectionModel().hasSelection())
        )
        self.act_import_folder.setEnabled(has_catalog and not self.session.importing)
        self.act_import_feed.setEnabled(has_catalog and not self.session.importing)
        self.act_stats.setEnabled(has_catalog)
        self.act_duplicates.setEnabled(has_catalog)
        self.act_cases.setEnabled(has_catalog)
        self.act_reveal.setEnabled(has_current)
        self.act_open_url.setEnabled(has_current)
        self.act_add_to_product.setEnabled(has_current and has_catalog and not self.session.importing)

    def show_shortcuts(self) -> None:
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = menus.shortcuts_dialog(self)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()

    def show_about(self) -> None:
        from engine import __version__

        model = self.session.model
        self.banner.info(
            f"Lookalike {__version__}: visual product matching. "
            + (f"Model {model.name} on {model.provider}." if model is not None else "")
        )

    # ------------------------------------------------------------------------------------------
    # for the screenshot command and tests
    # ------------------------------------------------------------------------------------------
    def request_visible_thumbnails(self) -> list[int]:
        """Ask for the thumbnails of the visible results; returns their image ids."""
        ids = []
        for row in self.results_view.visible_rows():
            match = self.results_model.match_at(row)
            if match is not None:
                ids.append(int(match.image_id))
                self.thumbnails.get(int(match.image_id))
        return ids

    def visible_thumbnails_settled(self) -> bool:
        return all(self.thumbnails.is_settled(i) for i in self.request_visible_thumbnails())

    def is_idle(self) -> bool:
        """No search running and the shown result belongs to the current query."""
        s = self.session
        query = s.current
        if query is None or s.searching or query.loading:
            return False
        if query.error:
            return True
        return self.shown_query is query and self.shown_result is not None
