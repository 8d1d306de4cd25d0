"""Catalog statistics window (non-modal): sizes, facets and the recent import errors."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from . import resources
from .workers import CatalogInfo


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


class CatalogStatsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Catalog statistics")
        self.setWindowIcon(resources.icon("stats"))
        self.setModal(False)
        self.resize(620, 480)
        layout = QVBoxLayout(self)
        self.form = QFormLayout()
        layout.addLayout(self.form)
        self.errors_label = QLabel("Import errors")
        layout.addWidget(self.errors_label)
        self.errors = QTableWidget(0, 3)
        self.errors.setHorizontalHeaderLabels(["File", "Reason", "When"])
        self.errors.horizontalHeader().setStretchLastSection(False)
        self.errors.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.errors.verticalHeader().setVisible(False)
        self.errors.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        layout.addWidget(self.errors, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.hide)
        layout.addWidget(buttons)
        self.values: dict[str, str] = {}

    def set_info(self, info: CatalogInfo) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.values = {}
        rows: list[tuple[str, Any]] = [
            ("Folder", str(info.directory)),
            ("Images", info.images),
            ("Products", info.products),
        ]
        facets = info.facets or {}
        rows.append(("Categories", len(facets.get("categories") or [])))
        rows.append(("Brands", len(facets.get("brands") or [])))
        if facets.get("price_min") is not None:
            rows.append(("Prices", f"{facets['price_min']:,.2f} – {facets['price_max']:,.2f}"))
        shown = {"images", "products", "directory", "catalog"}
        for key, value in (info.stats or {}).items():
            if key in shown or value in (None, "", [], {}):
                continue
            if key == "disk_bytes" and isinstance(value, (int, float)):
                rows.append(("Size on disk", f"{value / 2**20:,.1f} MB"))
            elif key == "models" and isinstance(value, dict):
                rows.append(("Models", ", ".join(f"{m} ({n:,} images)" for m, n in value.items())))
            else:
                rows.append((str(key).replace("_", " ").capitalize(), value))
        for name, value in rows:
            label = QLabel(_fmt(value))
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(name, label)
            self.values[name] = label.text()

    def set_errors(self, errors: list[dict]) -> None:
        self.errors_label.setText(
            f"Import errors ({len(errors)} most recent)" if errors else "No import errors"
        )
        self.errors.setRowCount(len(errors))
        for row, err in enumerate(errors):
            when = err.get("at")
            if isinstance(when, (int, float)):
                when = _dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M")
            for col, text in enumerate((err.get("path", ""), err.get("reason", ""), when or "")):
                item = QTableWidgetItem(str(text))
                item.setToolTip(str(text))
                self.errors.setItem(row, col, item)
        self.errors.resizeColumnToContents(0)
        self.errors.setColumnWidth(0, min(self.errors.columnWidth(0), 260))
