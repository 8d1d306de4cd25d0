"""Desktop app: the results grid (filters, lazy thumbnails, many items), details, export,
keyboard navigation."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.gui_fixtures import *
from tests.gui_fixtures import WAIT_MS, drop_files, research, wait_idle


@pytest.fixture
def searched(qtbot, window, catalog_images):
    """The window after searching with a catalog jacket photo (hoodies/jackets/tees around)."""
    drop_files(window, [catalog_images[10]])
    wait_idle(qtbot, window)
    return window


def test_filters_change_the_grid(qtbot, searched):
    window = searched
    everything = window.results_model.matches()
    assert len(everything) == 40  # k=60 over a 40-image catalog

    # minimum score: only matches at or above it remain, still ranked
    # (calibrated scores: most lookalikes score near 0, so keep the floor above that)
    floor = max(round(everything[8].score - 0.005, 2), 0.01)
    research(qtbot, window, lambda: window.filters.set_min_score(floor))
    kept = window.results_model.matches()
    assert 0 < len(kept) < len(everything)
    assert all(m.score >= floor - 1e-6 for m in kept)
    assert [m.image_id for m in kept] == [m.image_id for m in everything[: len(kept)]]
    research(qtbot, window, lambda: window.filters.set_min_score(0.0))

    # category: every result is in the chosen category (or below it)
    combo = window.filters.category
    categories = [combo.itemData(i) for i in range(1, combo.count())]
    assert categories, "the catalog's categories fill the combo box"
    counts = {
        c: sum(1 for m in everything if (m.product.get("category") or "") == c) for c in categories
    }
    chosen = max(counts, key=counts.get)
    research(qtbot, window, lambda: combo.setCurrentIndex(combo.findData(chosen)))
    in_category = window.results_model.matches()
    assert 0 < len(in_category) < len(everything)
    assert all(m.product["category"].startswith(chosen) for m in in_category)
    assert window.results_header.text().startswith(f"{len(in_category)} result")

    # price range
    research(qtbot, window, lambda: combo.setCurrentIndex(0))
    research(
        qtbot,
        window,
        lambda: (window.filters.price_min.setValue(30), window.filters.price_max.setValue(50)),
    )
    priced = window.results_model.matches()
    assert priced and all(30 <= m.product["price"] <= 50 for m in priced)
    assert len(priced) < len(everything)

    # number of results
    research(qtbot, window, window.filters.reset)
    research(qtbot, window, lambda: window.filters.count.setValue(5))
    assert window.results_model.rowCount() == 5

    # nothing left: an explanation instead of an empty grid
    research(qtbot, window, lambda: window.filters.set_min_score(1.0))
    if window.results_model.rowCount() == 0:
        assert "No match" in window.results_header.text()


def test_visible_thumbnails_load_lazily_off_the_ui_thread(qtbot, searched, monkeypatch):
    window = searched
    qtbot.waitUntil(window.visible_thumbnails_settled, timeout=WAIT_MS)
    visible = window.results_view.visible_rows()
    assert 0 < len(visible) < window.results_model.rowCount()
    for row in visible:
        image = window.results_model.index(row, 0).data(Qt.ItemDataRole.DecorationRole)
        assert isinstance(image, QImage) and not image.isNull()
        assert max(image.width(), image.height()) <= 160
    # rows far below the fold were never decoded
    last = window.results_model.match_at(window.results_model.rowCount() - 1)
    assert not window.thumbnails.is_cached(int(last.image_id))
    # painting never decodes: a repaint of new cards only asks the loader, whose threads decode
    window.thumbnails.set_catalog(window.session.catalog)  # forget the decoded thumbnails
    decoded_on: set[int] = set()
    cache = window.session.catalog.thumbnails
    real = cache.get
    monkeypatch.setattr(
        cache, "get", lambda *a, **k: decoded_on.add(threading.get_ident()) or real(*a, **k)
    )
    window.results_view.viewport().repaint()
    assert not any(window.thumbnails.is_cached(int(m.image_id)) for m in window.results_model.matches())
    qtbot.waitUntil(window.visible_thumbnails_settled, timeout=WAIT_MS)
    assert decoded_on and threading.get_ident() not in decoded_on


class RecordingCatalog:
    """Serves real thumbnails for any id (cycling over a few files) and records the calls and
    the threads they run on, to check laziness and threading at a scale of thousands."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.calls: list[int] = []
        self.threads: set[int] = set()
        self.thumbnails = self      # the catalog's thumbnail cache: get(image_id, size)

    def get(self, image_id: int, size: int = 256) -> Path:
        self.calls.append(image_id)
        self.threads.add(threading.get_ident())
        return self.files[image_id % len(self.files)]


def test_grid_of_thousands_stays_lazy_and_responsive(qtbot, catalog_images):
    from desktop.results_model import ResultsModel
    from desktop.results_view import ResultsView
    from desktop.thumbnails import ThumbnailLoader
    from engine.search import Match

    asked: set[int] = set()

    class Counting(ResultsModel):
        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            asked.add(index.row())
            return super().data(index, role)

    source = RecordingCatalog(catalog_images[:6])
    loader = ThumbnailLoader()
    loader.set_catalog(source)
    model = Counting(loader)
    view = ResultsView()
    view.setModel(model)
    view.resize(QSize(900, 700))
    qtbot.addWidget(view)
    view.show()
    matches = [
        Match(rank=i + 1, image_id=i, path=str(catalog_images[i % 6]), score=1 - i / 10000,
              product={"title": f"Product {i}", "price": 10 + i % 50, "currency": "EUR"}, strength="similar")
        for i in range(5000)
    ]  # fmt: skip
    model.set_matches(matches)
    QApplication.processEvents()
    # laying out 5,000 cards reads none of them: only the visible ones are asked for their data
    assert 0 < len(asked) <= 2 * len(view.visible_rows()) + 40, len(asked)
    assert max(asked) < 200

    qtbot.waitUntil(
        lambda: all(
            loader.is_settled(m.image_id) for m in (model.match_at(r) for r in view.visible_rows())
        ),
        timeout=WAIT_MS,
    )
    first_screen = set(source.calls)
    assert 0 < len(first_screen) <= 40, "only the visible cards are decoded"
    assert threading.get_ident() not in source.threads, "decoding never runs on the UI thread"

    # jump far down: that screen gets its thumbnails, the rows in between are never decoded
    view.scrollTo(model.index(4000, 0))
    qtbot.waitUntil(
        lambda: bool(view.visible_rows()) and min(view.visible_rows()) > 3000, timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: all(loader.is_settled(r) for r in view.visible_rows()), timeout=WAIT_MS)
    assert len(set(source.calls)) <= 2 * len(first_screen) + 40
    assert not any(100 < i < 3000 for i in source.calls)
    loader.shutdown()


def test_details_panel_and_its_actions(qtbot, searched, monkeypatch):
    window = searched
    opened: list[QUrl] = []
    monkeypatch.setattr(
        "desktop.details_panel.open_external", lambda url: opened.append(url) or True
    )
    with_product = next(
        i for i, m in enumerate(window.results_model.matches()) if m.product.get("product_id")
    )
    window.results_view.setCurrentIndex(window.results_model.index(with_product, 0))
    match = window.details.match
    product = match.product
    fields = window.details.fields
    assert window.details.title.text() == product["title"]
    assert fields["SKU"] == product["product_id"]
    assert fields["Category"] == product["category"]
    assert fields["Price"].endswith(product["currency"])
    assert fields["File"] == match.path
    assert fields["URL"] == product["url"]

    window.details.reveal_button.click()
    assert opened[-1] == QUrl.fromLocalFile(str(Path(match.path).parent))
    window.details.url_button.click()
    assert opened[-1].toString() == product["url"]
    window.details.copy_sku_button.click()
    assert QApplication.clipboard().text() == product["product_id"]
    window.details.copy_id_button.click()
    assert QApplication.clipboard().text() == str(match.image_id)


def test_only_web_addresses_are_opened(qtbot, window, monkeypatch):
    from desktop.details_panel import web_url

    assert web_url("https://shop.example/p/1").toString() == "https://shop.example/p/1"
    assert web_url("javascript:alert(1)") is None
    assert web_url("file:///etc/passwd") is None
    assert web_url("") is None


def test_keyboard_moves_through_results_and_opens_compare(qtbot, searched):
    window = searched
    view = window.results_view
    view.setFocus()
    assert view.currentIndex().row() == 0
    window.act_next.trigger()
    window.act_next.trigger()
    assert view.currentIndex().row() == 2
    window.act_prev.trigger()
    assert view.currentIndex().row() == 1
    assert window.details.match.rank == 2
    QTest.keyClick(window, Qt.Key.Key_N)
    assert view.currentIndex().row() == 2
    QTest.keyClick(window, Qt.Key.Key_C)
    assert window.stack.currentWidget() is window.compare_view
    QTest.keyClick(window.compare_view, Qt.Key.Key_Escape)
    assert window.stack.currentIndex() == 0

    shortcuts = {a.text().replace("&", ""): a.shortcut().toString() for a in window.actions()}
    assert shortcuts["Open image…"] == "Ctrl+O"
    assert shortcuts["Paste image"] == "Ctrl+V"
    assert shortcuts["Export results…"] == "Ctrl+E"
    assert shortcuts["Compare with query"] == "C"


def test_export_results_to_csv(qtbot, searched, tmp_path):
    window = searched
    out = window.export_results(tmp_path / "matches.csv")
    assert out == tmp_path / "matches.csv"
    with open(out, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    matches = window.results_model.matches()
    assert len(rows) == len(matches)
    assert [int(r["image_id"]) for r in rows] == [m.image_id for m in matches]
    assert rows[0]["rank"] == "1" and rows[0]["strength"] == matches[0].strength
    assert rows[0]["query"] == str(window.shown_query.path)
    assert "Exported 40 results" in window.banner.text()


def test_remove_results_from_the_catalog(
    qtbot, make_window, small_luma_catalog, catalog_copy, catalog_images
):
    from engine.catalog import Catalog

    window = make_window(catalog_copy(small_luma_catalog))
    drop_files(window, [catalog_images[4]])
    wait_idle(qtbot, window)
    before = window.session.catalog_info.images
    gone = [m.image_id for m in window.results_model.matches()[1:3]]
    for row in (1, 2):
        window.results_view.selectionModel().select(
            window.results_model.index(row, 0),
            window.results_view.selectionModel().SelectionFlag.Select,
        )
    window.results_view.selectionModel().select(
        window.results_model.index(0, 0),
        window.results_view.selectionModel().SelectionFlag.Deselect,
    )
    with qtbot.waitSignal(window.session.imagesRemoved, timeout=WAIT_MS):
        window.remove_selected(confirm=False)
    shown = [m.image_id for m in window.results_model.matches()]
    assert not set(gone) & set(shown)
    qtbot.waitUntil(lambda: window.session.catalog_info.images == before - 2, timeout=WAIT_MS)
    assert f"{before - 2} images" in window.catalog_label.text()
    # searching again never brings them back; the catalog on disk agrees
    window.session.search_current(force=True)
    wait_idle(qtbot, window)
    assert not set(gone) & {m.image_id for m in window.results_model.matches()}
    with Catalog.open(window.session.catalog.directory, create=False) as cat:
        assert all(cat.image_record(i) is None for i in gone)
