"""Desktop app: what drops and pastes hand to the main window (desktop.query_input), and the
keyboard shortcuts dialog (desktop.menus). Qt only: no catalog, no model."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage  # noqa: E402
from PySide6.QtWidgets import QApplication, QTextBrowser, QWidget  # noqa: E402

from desktop.menus import make_action, shortcuts_dialog  # noqa: E402
from desktop.query_input import DropTarget, clipboard_query  # noqa: E402


def _image(w: int = 20, h: int = 10) -> QImage:
    image = QImage(w, h, QImage.Format.Format_RGB32)
    image.fill(QColor("teal"))
    return image


def _drop(widget: QWidget, mime: QMimeData) -> tuple[bool, bool]:
    """Drag ``mime`` over ``widget`` and drop it: (drag accepted, drop accepted)."""
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    try:
        enter = QDragEnterEvent(QPointF(5, 5), *args)  # PySide6 >= 6.12
    except TypeError:
        enter = QDragEnterEvent(QPoint(5, 5), *args)
    enter.setAccepted(False)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(QPointF(5, 5), *args)
    drop.setAccepted(False)
    QApplication.sendEvent(widget, drop)
    return enter.isAccepted(), drop.isAccepted()


def test_drops_of_files_and_image_data(qtbot, tmp_path):
    widget = QWidget()
    qtbot.addWidget(widget)
    target = DropTarget(widget)
    got: list = []
    target.filesDropped.connect(lambda files: got.append(("files", files)))
    target.imageDropped.connect(lambda image: got.append(("image", image.size().width())))
    target.notAnImage.connect(lambda: got.append(("not an image",)))
    assert widget.acceptDrops()

    files = QMimeData()
    files.setUrls([QUrl.fromLocalFile(str(tmp_path / "a.jpg")), QUrl("https://x.example/b.jpg")])
    assert _drop(widget, files) == (True, True)
    assert got.pop() == ("files", [tmp_path / "a.jpg"])  # local files only

    data = QMimeData()
    data.setImageData(_image(20))
    assert _drop(widget, data) == (True, True)
    assert got.pop() == ("image", 20)

    text = QMimeData()
    text.setText("words")
    assert _drop(widget, text) == (False, False)
    assert got == []


def test_what_a_paste_searches_with(qtbot, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"x")
    data = QMimeData()
    data.setImageData(_image())
    assert isinstance(clipboard_query(data), QImage)
    files = QMimeData()
    files.setUrls([QUrl.fromLocalFile(str(photo))])
    assert clipboard_query(files) == [photo]
    path_text = QMimeData()
    path_text.setText(f'"{photo}"\n')
    assert clipboard_query(path_text) == [Path(photo)]
    for words in ("just words", f"{photo}\n{photo}", str(tmp_path / "missing.jpg")):
        mime = QMimeData()
        mime.setText(words)
        assert clipboard_query(mime) is None
    assert clipboard_query(None) is None


def test_shortcuts_dialog_lists_the_actions(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    make_action(widget, "&Open image…", lambda: None, "Ctrl+O", None, "Open query images")
    make_action(widget, "&Next result", lambda: None, ["N", "Ctrl+Right"])
    make_action(widget, "No key", lambda: None)
    dialog = shortcuts_dialog(widget)
    qtbot.addWidget(dialog)
    text = dialog.findChild(QTextBrowser).toPlainText()
    assert "Ctrl+O" in text and "Open image…" in text
    assert "N, Ctrl+Right" in text and "Next result" in text
    assert "No key" not in text and "Del" in text
