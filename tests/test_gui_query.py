"""Desktop app: querying by drop, paste and region of interest; bad files; the history."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.gui_fixtures import *
from tests.gui_fixtures import WAIT_MS, drop_files, wait_idle


def shown_matches(window):
    return window.results_model.matches()


def test_drop_a_file_shows_ranked_results_and_the_class(qtbot, window, catalog_images):
    query = catalog_images[5]
    drop_files(window, [query])
    wait_idle(qtbot, window)

    matches = shown_matches(window)
    assert len(matches) == min(window.session.options.k, len(catalog_images))
    # the catalog holds this very photo: it is the top match, a likely copy
    assert Path(matches[0].path) == query
    assert matches[0].strength == "likely copy"
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert [m.rank for m in matches] == list(range(1, len(matches) + 1))
    # the predicted class: the model's top-3 with confidences
    result = window.shown_result
    assert len(result.labels) == 3
    assert window.query_panel.labels.texts() == [label.name for label in result.labels]
    assert window.query_panel.title.text() == query.name
    assert window.results_header.text().startswith(f"{len(matches)} results for {query.name}")
    # the best match is selected and described
    assert window.details.match.image_id == matches[0].image_id
    assert window.details.fields["Image id"] == str(matches[0].image_id)
    assert "Last search" in window.search_label.text()


def test_dropping_several_files_fills_the_history(qtbot, window, catalog_images):
    queries = [catalog_images[1], catalog_images[9], catalog_images[20]]
    drop_files(window, queries)
    wait_idle(qtbot, window)
    assert window.query_panel.history.count() == 3
    assert window.session.current.path == queries[0]
    assert Path(shown_matches(window)[0].path) == queries[0]

    # pick another query in the history: its own results replace the grid
    item = next(
        window.query_panel.history.item(i)
        for i in range(3)
        if window.query_panel.history.item(i).data(Qt.ItemDataRole.UserRole).path == queries[2]
    )
    window.query_panel.history.setCurrentItem(item)
    qtbot.waitUntil(
        lambda: window.is_idle() and window.shown_query.path == queries[2], timeout=WAIT_MS
    )
    assert Path(shown_matches(window)[0].path) == queries[2]


def test_paste_an_image_from_the_clipboard(qtbot, window, catalog_images):
    source = catalog_images[12]
    QApplication.clipboard().setImage(QImage(str(source)))
    window.act_paste.trigger()
    wait_idle(qtbot, window)
    assert window.session.current.name.startswith("Clipboard")
    assert window.session.current.path is None
    top = shown_matches(window)[0]
    assert Path(top.path) == source
    assert top.score > 0.95


def test_paste_without_an_image_says_so(qtbot, window):
    QApplication.clipboard().setText("just some words")
    assert window.paste() is False
    assert window.banner.isVisible() and "no image" in window.banner.text()
    assert window.session.current is None


def drag(view, start: QPoint, end: QPoint) -> None:
    """Press, move and release the left button on a QGraphicsView's viewport."""
    viewport = view.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for t in (0.33, 0.66, 1.0):
        p = QPointF(start.x() + (end.x() - start.x()) * t, start.y() + (end.y() - start.y()) * t)
        move = QMouseEvent(
            QMouseEvent.Type.MouseMove,
            p,
            viewport.mapToGlobal(p),
            Qt.MouseButton.NoButton,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QApplication.sendEvent(viewport, move)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)


def test_region_of_interest_searches_the_region_only(qtbot, window, catalog_images, tmp_path):
    # a collage of two catalog products: whole-image search cannot be about both,
    # a region drawn around the right-hand product finds it
    left_src, right_src = catalog_images[3], catalog_images[30]
    a = Image.open(left_src).convert("RGB").resize((600, 745))
    b = Image.open(right_src).convert("RGB").resize((600, 745))
    collage = Image.new("RGB", (1200, 745), "white")
    collage.paste(a, (0, 0))
    collage.paste(b, (600, 0))
    path = tmp_path / "collage.png"
    collage.save(path)

    window.open_images([str(path)])
    wait_idle(qtbot, window)
    whole = [Path(m.path) for m in shown_matches(window)]
    query = window.session.current

    view = window.query_panel.view
    top_left = view.mapFromScene(QPointF(610 * query.display_scale, 5 * query.display_scale))
    bottom_right = view.mapFromScene(QPointF(1195 * query.display_scale, 740 * query.display_scale))
    with qtbot.waitSignal(window.session.searchStarted, timeout=WAIT_MS):
        drag(view, top_left, bottom_right)
    roi = query.roi
    assert roi is not None
    x, y, w, h = roi
    assert 590 <= x <= 630 and y <= 30 and 560 <= w <= 610 and h >= 700
    wait_idle(qtbot, window)
    assert Path(shown_matches(window)[0].path) == right_src
    assert window.query_panel.clear_roi_button.isEnabled()
    assert "Region" in window.query_panel.roi_label.text()
    assert "(region)" in window.results_header.text()

    # a click (no drag) keeps the region
    QTest.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, top_left
    )
    assert query.roi == roi

    # Esc clears it: back to the whole image and its results
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_Escape)
    assert query.roi is None
    wait_idle(qtbot, window)
    assert [Path(m.path) for m in shown_matches(window)] == whole


def test_a_bad_file_shows_an_error_and_the_app_keeps_working(
    qtbot, window, catalog_images, tmp_path
):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG at all\n" * 10)
    drop_files(window, [bad])
    qtbot.waitUntil(lambda: window.session.current.error is not None, timeout=WAIT_MS)
    assert window.banner.isVisible() and window.banner.level == "error"
    assert "broken.jpg" in window.banner.text()
    assert "\n" not in window.banner.text()
    assert "Cannot use broken.jpg" in window.results_header.text()
    assert window.results_model.rowCount() == 0
    assert "unreadable" in window.query_panel.history.item(0).text()

    missing = tmp_path / "gone.png"
    window.open_images([str(missing)])
    qtbot.waitUntil(lambda: window.session.current.error is not None, timeout=WAIT_MS)
    assert "gone.png" in window.banner.text()

    # the app still works
    drop_files(window, [catalog_images[7]])
    wait_idle(qtbot, window)
    assert Path(shown_matches(window)[0].path) == catalog_images[7]


def test_a_tiny_image_is_searched(qtbot, window, tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(np.full((3, 2, 3), 200, np.uint8)).save(path)
    window.open_images([str(path)])
    wait_idle(qtbot, window)
    assert window.shown_result is not None
    assert len(window.shown_result.labels) == 3


def test_uncaught_exceptions_are_logged_and_shown_not_fatal(qtbot, window, tmp_path, caplog):
    from desktop.app import install_excepthook

    saved = sys.excepthook, __import__("threading").excepthook
    try:
        install_excepthook(window.banner.error, tmp_path / "gui.log")
        try:
            raise RuntimeError("boom in a slot")
        except RuntimeError:
            sys.excepthook(*sys.exc_info())
        qtbot.waitUntil(lambda: "boom in a slot" in window.banner.text(), timeout=5000)
        assert window.banner.text().startswith("Unexpected error: RuntimeError: boom in a slot")
        assert str(tmp_path / "gui.log") in window.banner.text()
        assert "boom in a slot" in caplog.text
    finally:
        sys.excepthook, __import__("threading").excepthook = saved


def test_results_of_a_superseded_query_are_dropped(qtbot, window, catalog_images):
    shown = []
    window.session.resultsReady.connect(lambda query, result: shown.append(query.path))
    first, second = catalog_images[16], catalog_images[26]
    window.open_images([str(first)])
    window.open_images([str(second)])  # before the first one's search has finished
    qtbot.waitUntil(lambda: window.is_idle() and window.shown_query.path == second, timeout=WAIT_MS)
    window.session.set_options(min_score=0.1)
    window.session.set_options(min_score=0.2)
    window.session.set_options(min_score=0.0)
    wait_idle(qtbot, window)
    qtbot.wait(300)  # anything still in flight would arrive now
    assert first not in shown
    assert Path(shown_matches(window)[0].path) == second
    assert all(m.score >= 0.0 for m in shown_matches(window))
    assert window.session.options.min_score == 0.0
