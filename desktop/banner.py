"""A non-blocking inline message bar (instead of modal dialogs) for info, warnings and errors."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

from . import resources

STYLES = {
    "info": ("#e3f2fd", "#0d47a1", "#90caf9"),
    "warning": ("#fff8e1", "#6d4c00", "#ffd54f"),
    "error": ("#ffebee", "#8e0000", "#ef9a9a"),
}
AUTO_HIDE_MS = {"info": 8000, "warning": 15000, "error": 0}  # errors stay until dismissed


class MessageBanner(QFrame):
    """Shows the latest message; keeps a short history for the log and for tests."""

    messageShown = Signal(str, str)  # level, text

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("MessageBanner")
        self.setFrameShape(QFrame.Shape.NoFrame)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.setSpacing(8)
        self._icon = QLabel()
        self._icon.setFixedSize(20, 20)
        self._label = QLabel()
        self._label.setWordWrap(True)
        self._label.setTextFormat(Qt.TextFormat.PlainText)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._close = QToolButton()
        self._close.setText("✕")
        self._close.setAutoRaise(True)
        self._close.setToolTip("Dismiss")
        self._close.setAccessibleName("Dismiss message")
        self._close.clicked.connect(self.hide)
        layout.addWidget(self._icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self._label, 1)
        layout.addWidget(self._close, 0, Qt.AlignmentFlag.AlignTop)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.level = ""
        self.history: list[tuple[float, str, str]] = []
        self.hide()

    def text(self) -> str:
        return self._label.text()

    def show_message(self, level: str, text: str) -> None:
        level = level if level in STYLES else "info"
        background, foreground, border = STYLES[level]
        self.setStyleSheet(
            f"#MessageBanner {{ background: {background}; border: 1px solid {border}; border-radius: 4px; }}"
            f"#MessageBanner QLabel {{ color: {foreground}; }}"
        )
        self._icon.setPixmap(resources.pixmap(level, 20))
        self._label.setText(text)
        self.level = level
        self.history.append((time.time(), level, text))
        del self.history[:-200]
        self.show()
        self._timer.stop()
        if AUTO_HIDE_MS[level]:
            self._timer.start(AUTO_HIDE_MS[level])
        self.messageShown.emit(level, text)

    def info(self, text: str) -> None:
        self.show_message("info", text)

    def warning(self, text: str) -> None:
        self.show_message("warning", text)

    def error(self, text: str) -> None:
        self.show_message("error", text)
