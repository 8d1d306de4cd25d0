"""Non-modal import window: progress, rate and time left, cancel, and an error summary at the end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from . import resources


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report_summary(report: Any) -> str:
    """One line describing an ``IngestReport``."""
    parts = [f"{report.added} added"]
    if report.updated:
        parts.append(f"{report.updated} updated")
    if report.unchanged:
        parts.append(f"{report.unchanged} unchanged")
    failed = len(report.failed or [])
    parts.append(f"{failed} failed")
    problems = len(getattr(report, "problems", None) or [])
    if problems:
        parts.append(f"{problems} feed rows skipped")
    if getattr(report, "remote", 0):
        parts.append(f"{report.remote} remote (not downloaded)")
    text = ", ".join(parts)
    products = getattr(report, "products", 0)
    if products:
        text += f"; {_plural(products, 'product')} from feeds"
    seconds = getattr(report, "seconds", None)
    if seconds is not None:
        text += f" in {seconds:.1f} s"
    if getattr(report, "cancelled", False):
        text = "Cancelled: " + text
    return text


class ImportDialog(QDialog):
    """Closing it only hides it: the import goes on (the status bar shows its progress) and the
    window comes back with the summary when the import ends."""

    cancelRequested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Import")
        self.setModal(False)
        self.setWindowIcon(resources.icon("import"))
        self.resize(640, 200)
        layout = QVBoxLayout(self)
        self.heading = QLabel()
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.heading.setWordWrap(True)
        font = self.heading.font()
        font.setBold(True)
        self.heading.setFont(font)
        layout.addWidget(self.heading)
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Import progress")
        layout.addWidget(self.bar)
        self.current = QLabel()
        self.current.setTextFormat(Qt.TextFormat.PlainText)
        self.current.setMinimumWidth(200)
        layout.addWidget(self.current)
        self.rate = QLabel()
        layout.addWidget(self.rate)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        self.failures = QTableWidget(0, 2)
        self.failures.setHorizontalHeaderLabels(["File", "Why it failed"])
        self.failures.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.failures.horizontalHeader().setStretchLastSection(True)
        self.failures.verticalHeader().setVisible(False)
        self.failures.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.failures.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.failures.setAccessibleName("Files that failed")
        layout.addWidget(self.failures, 1)
        self.buttons = QDialogButtonBox()
        self.cancel_button = self.buttons.addButton(
            "Cancel import", QDialogButtonBox.ButtonRole.RejectRole
        )
        self.copy_button = QPushButton(resources.icon("copy"), "Copy error list")
        self.buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        layout.addWidget(self.buttons)
        self.cancel_button.clicked.connect(self._cancel)
        self.close_button.clicked.connect(self.hide)
        self.copy_button.clicked.connect(self.copy_errors)
        self.running = False
        self.report: Any = None
        self._started = 0.0

    def start(self, paths: list[str], catalog_dir: str | Path) -> None:
        self.running = True
        self.report = None
        self._started = time.monotonic()
        what = Path(paths[0]).name if len(paths) == 1 else _plural(len(paths), "item")
        self.heading.setText(f"Importing {what} into {catalog_dir}")
        self.bar.setRange(0, 0)  # busy until the total is known
        self.current.setText("Scanning…")
        self.rate.setText("")
        self.summary.setText("")
        self.summary.hide()
        self.failures.setRowCount(0)
        self.failures.hide()
        self.copy_button.hide()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.close_button.hide()
        self.resize(self.width(), 200)
        self.show()
        self.raise_()

    def set_progress(self, done: int, total: int, message: str) -> None:
        if not self.running:
            return
        if total > 0:
            if self.bar.maximum() != total:
                self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        metrics = self.current.fontMetrics()
        self.current.setText(
            metrics.elidedText(
                message, Qt.TextElideMode.ElideMiddle, max(200, self.current.width())
            )
        )
        elapsed = time.monotonic() - self._started
        if done > 0 and elapsed > 0.5:
            rate = done / elapsed
            text = f"{done} of {total} · {rate:.1f} per second"
            if total > done and rate > 0:
                text += f" · about {_duration((total - done) / rate)} left"
            self.rate.setText(text)

    def searchable(self, report: Any) -> None:
        """The import's first pass has ended: its images can be searched while the second
        computes their match features (the rate restarts with it)."""
        if not self.running:
            return
        done = report.added + report.updated
        self.heading.setText(
            f"{_plural(done, 'image')} searchable · computing match features (verification, "
            "duplicates)"
        )
        self._started = time.monotonic()
        self.bar.setRange(0, 0)
        self.rate.setText("")

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.current.setText("Cancelling after the current batch…")
        self.cancelRequested.emit()

    def finish(self, report: Any) -> None:
        self.running = False
        self.report = report
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
        self.heading.setText("Import cancelled" if report.cancelled else "Import finished")
        self.current.setText("")
        self.summary.setText(report_summary(report))
        self.summary.show()
        # files that could not be imported, then feed rows that were skipped ("row 12: no id")
        failed = list(report.failed or []) + list(getattr(report, "problems", None) or [])
        self.failures.setRowCount(len(failed))
        for row, (path, reason) in enumerate(failed):
            for col, text in enumerate((str(path), str(reason))):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.failures.setItem(row, col, item)
        self.failures.setVisible(bool(failed))
        self.copy_button.setVisible(bool(failed))
        if failed:
            self.failures.resizeColumnToContents(0)
            self.failures.setColumnWidth(0, min(self.failures.columnWidth(0), 380))
            self.resize(max(self.width(), 720), 420)
        self.cancel_button.hide()
        self.close_button.show()
        self.show()
        self.raise_()

    def fail(self, message: str) -> None:
        self.running = False
        self.heading.setText("Import failed")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.current.setText("")
        self.summary.setText(message)
        self.summary.show()
        self.cancel_button.hide()
        self.close_button.show()

    def copy_errors(self) -> None:
        if self.report is None:
            return
        rows = list(self.report.failed or []) + list(getattr(self.report, "problems", None) or [])
        lines = [f"{path}\t{reason}" for path, reason in rows]
        QGuiApplication.clipboard().setText("\n".join(lines))


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
