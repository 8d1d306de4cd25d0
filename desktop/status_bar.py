"""The main window's status bar: the import's progress, the last search, the catalog and the
model. Passive: the window tells it what to show."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget


def plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.import_bar = QProgressBar()
        self.import_bar.setMaximumWidth(160)
        self.import_bar.setMaximumHeight(14)
        self.import_bar.setTextVisible(False)
        self.import_bar.hide()
        self.search_label = QLabel("")
        self.catalog_label = QLabel("Catalog: opening…")
        self.model_label = QLabel("Model: loading…")
        for widget in (self.import_bar, self.search_label, self.catalog_label, self.model_label):
            self.addPermanentWidget(widget)

    # -- model ---------------------------------------------------------------------------------
    def show_model(self, model: Any) -> None:
        name = getattr(model, "name", "model")
        provider = getattr(model, "provider", "?")
        self.model_label.setText(f"Model: {name} · {provider}")
        self.model_label.setToolTip(f"{getattr(model, 'model_id', name)} on {provider}")

    def model_failed(self, message: str) -> None:
        self.model_label.setText("Model: not available")
        self.model_label.setToolTip(message)

    def model_waiting(self) -> None:
        self.model_label.setText("Model: waiting for a catalog")

    # -- catalog -------------------------------------------------------------------------------
    def show_catalog(self, info: Any) -> None:
        self.catalog_label.setText(
            f"Catalog: {info.directory.name or info.directory} · {plural(info.images, 'image')}, "
            f"{plural(info.products, 'product')}"
        )
        self.catalog_label.setToolTip(str(info.directory))

    def catalog_failed(self, message: str) -> None:
        self.catalog_label.setText("Catalog: none")
        self.catalog_label.setToolTip(message)

    # -- search and import ---------------------------------------------------------------------
    def search_done(self, seconds: float) -> None:
        self.search_label.setText(
            f"Last search {seconds * 1000:.0f} ms at {time.strftime('%H:%M:%S')}"
        )

    def import_started(self) -> None:
        self.import_bar.setRange(0, 0)  # busy until the total is known
        self.import_bar.show()
        self.showMessage("Importing…")

    def import_progress(self, done: int, total: int, *, features: bool = False) -> None:
        """``features``: the import's second pass (its images are searchable already)."""
        if total > 0:
            if self.import_bar.maximum() != total:
                self.import_bar.setRange(0, total)
            self.import_bar.setValue(done)
            if features:
                text = f"Computing match features: {done:,} / {total:,}"
                self.showMessage(text)
            else:
                text = f"Importing: {done} of {total}"
            self.import_bar.setToolTip(text)

    def import_searchable(self) -> None:
        """The imported images are searchable; the local-feature pass starts."""
        self.import_bar.setRange(0, 0)
        self.showMessage("Computing match features…")

    def import_ended(self) -> None:
        self.import_bar.hide()
        self.clearMessage()
