"""The main window's catalog side: opening and creating catalogs (the recent list too), imports
and their progress (import window, status bar, banner), a confirmed result's query photo added
to its product, the side windows (Duplicates, Cases) and the statistics dialog. A mixin of
:class:`desktop.main_window.MainWindow`, whose widgets and session it uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QFileDialog, QInputDialog, QWidget

from . import side_windows
from .import_dialog import report_summary
from .workers import Task, catalog_info_job

FEED_FILTER = "Product feeds (*.csv *.tsv *.txt);;All files (*)"


class CatalogActions:
    """Slots of the Catalog menu and of the import worker's signals (see the module docstring)."""

    def _fill_recent_menu(self, extra: str | None = None) -> None:
        recent = self.settings.recent_catalogs()
        if extra and extra not in recent:
            recent.insert(0, extra)
        self.recent_menu.fill(recent)

    def _clear_recent(self) -> None:
        self.settings.clear_recent_catalogs()
        self._fill_recent_menu()

    def open_recent(self, directory: str) -> None:
        if not Path(directory).is_dir():
            self.banner.warning(
                f"{directory}: the folder no longer exists; removed from the recent catalogs."
            )
            self.settings.remove_recent_catalog(directory)
            self._fill_recent_menu()
            return
        self.session.open_catalog(directory, create=False)

    def new_catalog(self, directory: str | None = None) -> None:
        self._open_catalog_folder(directory, "Folder for the new catalog", create=True)

    def choose_catalog(self, directory: str | None = None) -> None:
        self._open_catalog_folder(directory, "Open a catalog folder", create=False)

    def _open_catalog_folder(self, directory: str | None, title: str, *, create: bool) -> None:
        """Open (``create``: or create) the catalog in ``directory``, asked for with ``title``
        when not given; its parent is remembered for the next dialog."""
        if directory is None:
            directory = QFileDialog.getExistingDirectory(self, title, self.settings.last_dir("catalog"))
            if not directory:
                return
        self.settings.set_last_dir("catalog", Path(directory).parent)
        self.session.open_catalog(directory, create=create)

    def choose_milvus_catalog(self, uri: str | None = None) -> None:
        """Open ``milvus://HOST:PORT/NAME`` (asked for when not given): its records live in a
        local folder, its vectors on the server (docs/milvus.md); a Milvus Lite catalog is a
        folder, opened with Open catalog."""
        if uri is None:
            uri, ok = QInputDialog.getText(self, "Open a Milvus catalog", "Server catalog (milvus://HOST:PORT/NAME):",
                                           text="milvus://localhost:19530/")
            if not ok or not uri.strip():
                return
        self.session.open_catalog(uri.strip(), create=True)

    def import_folder(self, directory: str | None = None) -> None:
        if directory is None:
            directory = QFileDialog.getExistingDirectory(
                self, "Import a folder of images", self.settings.last_dir("import")
            )
            if not directory:
                return
            self.settings.set_last_dir("import", directory)
        self.start_import([Path(directory)])

    def import_feed(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Import a product feed", self.settings.last_dir("import"), FEED_FILTER
            )
            if not path:
                return
            self.settings.set_last_dir("import", Path(path).parent)
        self.start_import([Path(path)])

    def start_import(self, paths: list[Path]) -> bool:
        return self.session.start_import(paths, read_text=self.act_read_text.isChecked())

    def _on_import_started(self, paths: list[str]) -> None:
        info = self.session.catalog_info
        self.import_dialog.start(paths, info.directory if info else "")
        self.status.import_started()
        self._update_actions()

    def _on_import_progress(self, done: int, total: int, message: str) -> None:
        self.import_dialog.set_progress(done, total, message)
        self.status.import_progress(done, total, features=self.session.import_stage == "features")

    def _on_import_searchable(self, report: Any) -> None:
        self.import_dialog.searchable(report)
        self.status.import_searchable()

    def _on_import_finished(self, report: Any) -> None:
        self.import_dialog.finish(report)
        self.status.import_ended()
        level = "warning" if report.failed or report.cancelled else "info"
        self.banner.show_message(
            level,
            report_summary(report)
            + (" (see the import window for the failures)" if report.failed else ""),
        )
        self.thumbnails.set_catalog(self.session.catalog)  # updated images get new thumbnails
        self._update_actions()

    def _on_import_failed(self, message: str) -> None:
        self.import_dialog.fail(message)
        self.status.import_ended()
        self._update_actions()

    def open_duplicates(self) -> QWidget | None:
        """The Duplicates view (desktop.duplicates_view) on the open catalog, in its own window."""
        from .duplicates_view import DuplicatesView

        return side_windows.show(self, "duplicates_window", DuplicatesView, "Duplicates", QSize(1200, 780))

    def open_cases(self) -> QWidget | None:
        """The Cases window (desktop.cases_view: brand-protection cases) on the open catalog."""
        from .cases_view import CasesView

        return side_windows.show(self, "cases_window", CasesView, "Cases", QSize(1400, 860))

    def _close_side_windows(self) -> None:
        side_windows.close(self, "duplicates_window")
        side_windows.close(self, "cases_window")

    def show_stats(self) -> None:
        info = self.session.catalog_info
        if info is None:
            self.banner.info("No catalog is open.")
            return
        self.stats_dialog.set_info(info)
        self.stats_dialog.show()
        self.stats_dialog.raise_()
        catalog = info.catalog
        self.session.runner.start(
            self.session.aux_pool,
            Task(catalog_info_job, catalog, full_stats=True),
            on_done=lambda full: (
                full.catalog is self.session.catalog and self.stats_dialog.set_info(full)
            ),
            on_error=lambda msg: self.banner.warning(f"Cannot read the catalog statistics: {msg}"),
        )
        self.session.runner.start(
            self.session.aux_pool,
            Task(lambda: list(catalog.errors(limit=200))),
            on_done=self.stats_dialog.set_errors,
            on_error=lambda msg: self.banner.warning(f"Cannot read the import errors: {msg}"),
        )

    def add_query_to_product(self) -> None:
        """Confirm the current result: the query photo becomes one more photo of its product (an
        import of the query file with that product, engine.ingest ``product=``), so the product
        is matched by it too and its photos teach the catalog's learned comparison."""
        index = self.results_view.currentIndex()
        match = self.results_model.match_at(index.row()) if index.isValid() else None
        product = (match.product or {}).get("product_id") if match is not None else None
        if not product:
            self.banner.info("Select a result that belongs to a product.")
            return
        query = self.session.current
        if query is None or query.path is None:
            self.banner.info("Only a query opened from a file can be added to a product (save a pasted image first).")
            return
        self.session.start_import([query.path], read_text=self.act_read_text.isChecked(), product=product)
