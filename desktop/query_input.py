"""What the user gives the main window to search with: dropped files or image data, and the
clipboard. Qt events in, plain requests out (paths or a QImage); the window decides what to do."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject, Signal
from PySide6.QtGui import QImage


def local_files(mime: QMimeData | None) -> list[Path]:
    if mime is None or not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


def mime_image(mime: QMimeData | None) -> QImage | None:
    """The image the data holds (a screenshot, a browser's image), or None."""
    if mime is None or not mime.hasImage():
        return None
    image = QImage(mime.imageData())
    return None if image.isNull() else image


def clipboard_query(mime: QMimeData | None) -> QImage | list[Path] | None:
    """What a paste searches with: an image, image files, or one path copied as text; None when
    the clipboard holds none of these."""
    image = mime_image(mime)
    if image is not None:
        return image
    files = local_files(mime)
    if files:
        return files
    if mime is not None and mime.hasText():
        text = mime.text().strip().strip('"')
        if text and "\n" not in text and len(text) < 4096 and Path(text).is_file():
            return [Path(text)]
    return None


class DropTarget(QObject):
    """An event filter that takes drops of local files or image data on a widget."""

    filesDropped = Signal(list)  # Paths
    imageDropped = Signal(QImage)
    notAnImage = Signal()  # image data that cannot be decoded

    def __init__(self, widget, parent: QObject | None = None):
        super().__init__(parent or widget)
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            mime = event.mimeData()
            if local_files(mime) or mime.hasImage():
                event.acceptProposedAction()
            else:
                event.ignore()
            return True
        if kind == QEvent.Type.Drop:
            mime = event.mimeData()
            files = local_files(mime)
            if files:
                self.filesDropped.emit(files)
            elif mime.hasImage():
                image = mime_image(mime)
                if image is None:
                    self.notAnImage.emit()
                else:
                    self.imageDropped.emit(image)
            else:
                event.ignore()
                return True
            event.acceptProposedAction()
            return True
        return False
