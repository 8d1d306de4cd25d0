"""Left panel: the query image (with its region of interest), its predicted class, the history."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import resources
from .query_view import QueryView
from .results_model import format_score

TOP_LABELS = 3
READ_LIMIT = 300  # characters of read text shown under the query (the rest: "…")


class LabelsWidget(QGroupBox):
    """The model's top-3 classes for the query, with confidence bars."""

    def __init__(self, parent=None):
        super().__init__("Predicted class", parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        grid.setVerticalSpacing(3)
        self._names: list[QLabel] = []
        self._bars: list[QProgressBar] = []
        for row in range(TOP_LABELS):
            name = QLabel()
            name.setTextFormat(Qt.TextFormat.PlainText)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            bar.setFixedHeight(16)
            bar.setMaximumWidth(110)
            grid.addWidget(name, row, 0)
            grid.addWidget(bar, row, 1)
            self._names.append(name)
            self._bars.append(bar)
        if self._names:
            font = self._names[0].font()
            font.setBold(True)
            self._names[0].setFont(font)
        grid.setColumnStretch(0, 1)
        self._empty = QLabel("—")
        grid.addWidget(self._empty, TOP_LABELS, 0, 1, 2)
        self.set_labels([])

    def set_labels(self, labels: list[Any], note: str = "") -> None:
        labels = list(labels or [])[:TOP_LABELS]
        for row in range(TOP_LABELS):
            visible = row < len(labels)
            self._names[row].setVisible(visible)
            self._bars[row].setVisible(visible)
            if visible:
                label = labels[row]
                score = max(0.0, min(1.0, float(label.score)))
                self._names[row].setText(str(label.name))
                self._bars[row].setValue(round(score * 1000))
                self._bars[row].setFormat(f"{score * 100:.0f}%")
        self._empty.setText(note or "—")
        self._empty.setVisible(not labels)

    def texts(self) -> list[str]:
        return [n.text() for n in self._names if n.isVisible()]


class QueryPanel(QWidget):
    querySelected = Signal(object)  # a Query from the history
    roiChanged = Signal(object)
    removeQueryRequested = Signal(object)
    clearHistoryRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(6)

        header = QHBoxLayout()
        self.title = QLabel("No query")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.title.setMinimumWidth(60)
        header.addWidget(self.title, 1)
        self.clear_roi_button = QToolButton()
        self.clear_roi_button.setIcon(resources.icon("clear-region"))
        self.clear_roi_button.setText("Whole image")
        self.clear_roi_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.clear_roi_button.setToolTip("Clear the region and search with the whole image (Esc)")
        self.clear_roi_button.setEnabled(False)
        header.addWidget(self.clear_roi_button)
        layout.addLayout(header)

        self.view = QueryView()
        layout.addWidget(self.view, 3)
        self.roi_label = QLabel()
        self.roi_label.setWordWrap(True)
        self.roi_label.setStyleSheet("color: palette(mid);")
        layout.addWidget(self.roi_label)

        self.labels = LabelsWidget()
        layout.addWidget(self.labels)

        # the text read on the query (OCR), when any: what its words are matched with
        self.read_label = QLabel()
        self.read_label.setTextFormat(Qt.TextFormat.RichText)
        self.read_label.setWordWrap(True)
        self.read_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.read_label.setAccessibleName("Text read on the query photo")
        self.read_label.setToolTip(
            "The text read on the photo (or its region). Its words are matched with the products'"
            " text;\nthe details panel marks those that matched the selected result."
        )
        layout.addWidget(self.read_label)
        self._read = ""
        self.show_read(None)

        history_box = QGroupBox("Query history")
        history_layout = QVBoxLayout(history_box)
        history_layout.setContentsMargins(4, 4, 4, 4)
        self.history = QListWidget()
        self.history.setIconSize(QSize(48, 48))
        self.history.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.history.setAccessibleName("Query history")
        self.history.setUniformItemSizes(True)
        self.history.currentItemChanged.connect(self._on_history_current)
        self.history.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.history.customContextMenuRequested.connect(self._history_menu)
        history_layout.addWidget(self.history)
        layout.addWidget(history_box, 2)

        self.view.roiChanged.connect(self._on_roi)
        self.clear_roi_button.clicked.connect(self.view.clear_roi)
        self._updating = False
        self.show_roi(None)

    # -- history -----------------------------------------------------------------------------------
    def set_history(self, queries: list[Any], current: Any) -> None:
        self._updating = True
        try:
            self.history.clear()
            for query in reversed(queries):  # newest first
                item = QListWidgetItem(self._history_icon(query), self._history_text(query))
                item.setData(Qt.ItemDataRole.UserRole, query)
                item.setToolTip(str(query.path) if query.path else query.name)
                self.history.addItem(item)
                if query is current:
                    self.history.setCurrentItem(item)
        finally:
            self._updating = False

    def update_query(self, query: Any) -> None:
        for row in range(self.history.count()):
            item = self.history.item(row)
            if item.data(Qt.ItemDataRole.UserRole) is query:
                item.setIcon(self._history_icon(query))
                item.setText(self._history_text(query))

    def select_in_history(self, query: Any) -> None:
        self._updating = True
        try:
            for row in range(self.history.count()):
                item = self.history.item(row)
                if item.data(Qt.ItemDataRole.UserRole) is query:
                    self.history.setCurrentItem(item)
                    return
            self.history.clearSelection()
        finally:
            self._updating = False

    def _history_icon(self, query: Any) -> QIcon:
        if query.icon is not None:
            return QIcon(QPixmap.fromImage(query.icon))
        return resources.icon("broken") if query.error else resources.icon("placeholder")

    def _history_text(self, query: Any) -> str:
        if query.error:
            return f"{query.name}\n(unreadable)"
        result = query.result
        if result is not None and getattr(result, "results", None):
            best = result.results[0]
            title = (best.product or {}).get("title") or ""
            return f"{query.name}\nbest {format_score(best.score)} {title}"
        if result is not None and getattr(result, "labels", None):
            return f"{query.name}\n{result.labels[0].name}"
        return query.name

    def _history_menu(self, pos) -> None:
        from PySide6.QtWidgets import QMenu

        item = self.history.itemAt(pos)
        menu = QMenu(self)
        if item is not None:
            query = item.data(Qt.ItemDataRole.UserRole)
            menu.addAction("Remove from the history", lambda: self.removeQueryRequested.emit(query))
        menu.addAction("Clear the history", self.clearHistoryRequested.emit)
        menu.popup(self.history.viewport().mapToGlobal(pos))

    def _on_history_current(self, current: QListWidgetItem | None, _previous: Any) -> None:
        if self._updating or current is None:
            return
        self.querySelected.emit(current.data(Qt.ItemDataRole.UserRole))

    # -- current query -------------------------------------------------------------------------------
    def show_query(self, query: Any) -> None:
        if query is None:
            self.title.setText("No query")
            self.view.set_image(None)
            self.view.set_message(
                "Drop a product photo here\npaste one (Ctrl+V) or open one (Ctrl+O)"
            )
            self.labels.set_labels([])
            self.show_read(None)
            self.show_roi(None)
            return
        self.title.setText(query.name)
        self.title.setToolTip(str(query.path) if query.path else query.name)
        if query.display is not None:
            self.view.set_image(query.display, query.size, query.display_scale)
            self.view.set_roi(query.roi)
        else:
            self.view.set_image(None)
            self.view.set_message(
                f"Cannot use this image:\n{query.error}" if query.error else "Loading…"
            )
        result = query.result
        self.show_read(None if query.error else result)
        if query.error:
            self.labels.set_labels([], "—")
        elif result is not None:
            self.labels.set_labels(getattr(result, "labels", []) or [], "no class")
        else:
            self.labels.set_labels([], "searching…" if query.image is not None else "—")
        self.show_roi(query)

    def show_read(self, result: Any) -> None:
        """The text lines read on the query (``QueryResult.read``); hidden when none."""
        lines = [str(line) for line in (getattr(result, "read", None) or ()) if str(line).strip()]
        text = " · ".join(lines)
        if len(text) > READ_LIMIT:
            text = text[: READ_LIMIT - 1].rstrip() + "…"
        self._read = text
        self.read_label.setText(f"<b>Text on the photo:</b> {escape(text)}" if text else "")
        self.read_label.setVisible(bool(text))

    def read_text(self) -> str:
        """The read text shown ("" when hidden)."""
        return self._read

    def show_roi(self, query: Any) -> None:
        roi = query.roi if query is not None else None
        self.clear_roi_button.setEnabled(roi is not None)
        if query is None or query.image is None:
            self.roi_label.setText("")
        elif roi is None:
            w, h = query.size
            self.roi_label.setText(f"Whole image ({w}×{h}). Drag on it to search a region only.")
        else:
            x, y, w, h = roi
            self.roi_label.setText(f"Region {w}×{h} at ({x}, {y}). Esc or “Whole image” to clear.")

    def _on_roi(self, roi: Any) -> None:
        self.clear_roi_button.setEnabled(roi is not None)
        self.roiChanged.emit(roi)
