"""Fixtures for the desktop app tests (pytest-qt, offscreen). Import them in a GUI test module:

    from tests.gui_fixtures import *  # noqa: F401,F403

They build on tests/conftest.py (``model``, ``small_luma_catalog``, ``luma_images``).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

WAIT_MS = 60_000  # generous: a cold model on a 2-core machine; waits return as soon as done


def _binding_defect() -> str | None:
    from desktop.compat import none_refcount_defect

    return none_refcount_defect()


QT_BINDING_DEFECT = _binding_defect()


@pytest.fixture(autouse=True)
def _sound_qt_binding(request):
    """With a defective PySide6 (see desktop.compat) the GUI tests would abort the whole test
    run at a random point: skip them, and let test_qt_binding_is_sound fail with the reason."""
    if QT_BINDING_DEFECT and request.node.name != "test_qt_binding_is_sound":
        pytest.skip(QT_BINDING_DEFECT)


@pytest.fixture(autouse=True)
def gui_settings(tmp_path, monkeypatch):
    """Every GUI test writes its settings (QSettings, INI) and logs under its own tmp folder."""
    folder = tmp_path / "settings"
    folder.mkdir()
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("LOOKALIKE_LOG_DIR", str(tmp_path / "logs"))
    from desktop.settings import Settings

    return Settings()


def luma_products(luma_dir: Path) -> dict[str, dict]:
    """Product rows of the Luma feed keyed by image path (read with the csv module, so these
    tests do not depend on the engine's feed parser)."""
    import csv

    by_image: dict[str, dict] = {}
    with open(luma_dir / "products.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            amount, _, currency = (row.get("price") or "").partition(" ")
            product = {
                "id": row["id"], "title": row["title"], "brand": row["brand"] or None,
                "price": float(amount) if amount else None, "currency": currency or None,
                "category": row["product_type"] or None, "description": row["description"] or None,
                "url": f"https://luma.example/{row['id'].lower()}.html", "group_id": row["item_group_id"],
                "extra": {"color": row["color"]} if row.get("color") else {},
            }  # fmt: skip
            links = [row["image_link"], *(row.get("additional_image_link") or "").split(",")]
            for link in filter(None, (l.strip() for l in links)):
                by_image[str((luma_dir / link).resolve())] = product
    return by_image


@pytest.fixture(scope="session")
def gui_catalog(tmp_path_factory, small_luma_catalog, luma_dir) -> Path:
    """A session-wide copy of the 40-image Luma catalog, with the Luma product data attached,
    for read-only GUI tests (its thumbnail cache fills up across tests; the shared original
    stays untouched)."""
    from engine.catalog import Catalog

    dst = tmp_path_factory.mktemp("gui-catalog") / "catalog"
    shutil.copytree(small_luma_catalog, dst, ignore=shutil.ignore_patterns("write.lock"))
    products = luma_products(luma_dir)
    with Catalog.open(dst, create=False) as cat:
        paths = [r["path"] for r in cat.iter_records()]
        found = {
            p: products[str(Path(p).resolve())] for p in paths if str(Path(p).resolve()) in products
        }
        unique = {prod["id"]: prod for prod in found.values()}
        cat.upsert_products(unique.values())
        cat.link_images((path, prod["id"]) for path, prod in found.items())
        assert len(found) >= 30, "most Luma test images should have product data"
    return dst


@pytest.fixture(scope="session")
def catalog_images(gui_catalog) -> list[Path]:
    """The image files in :func:`gui_catalog`, in image id order."""
    from engine.catalog import Catalog

    with Catalog.open(gui_catalog, create=False) as cat:
        return [Path(r["path"]) for r in cat.iter_records()]


@pytest.fixture
def make_window(qtbot, gui_settings, model):
    """Factory: a shown MainWindow on ``catalog`` with the session's model, ready to search."""
    from desktop.main_window import MainWindow

    windows = []

    def make(catalog: Path, *, wait_ready: bool = True):
        window = MainWindow(gui_settings, model_loader=lambda _catalog: model)
        qtbot.addWidget(window)
        window.show()
        window.start(catalog=catalog)
        if wait_ready:
            qtbot.waitUntil(lambda: window.session.ready, timeout=WAIT_MS)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def window(make_window, gui_catalog):
    return make_window(gui_catalog)


def _no_model(catalog):
    from engine.errors import ModelError

    raise ModelError("no model pack made this catalog's embeddings")


def open_session(qtbot, catalog: Path, *, model_loader=_no_model):
    """A Session (desktop.session) with ``catalog`` open and its model load settled: loaded by
    ``model_loader``, or failed (the default, for catalogs of synthetic embeddings). The caller
    shuts it down."""
    from desktop.session import Session

    session = Session(model_loader=model_loader)
    with qtbot.waitSignal(session.catalogOpened, timeout=WAIT_MS):
        session.open_catalog(catalog, create=False)
    qtbot.waitUntil(
        lambda: not session.model_loading and (session.ready or session.model_error is not None),
        timeout=WAIT_MS,
    )
    return session


def wait_idle(qtbot, window, timeout: int = WAIT_MS) -> None:
    """Wait until the current query's results are in the grid."""
    qtbot.waitUntil(window.is_idle, timeout=timeout)


def research(qtbot, window, change) -> None:
    """Change a filter, wait for the debounced search and its results."""
    with qtbot.waitSignal(window.resultsShown, timeout=WAIT_MS):
        change()
        window.filters.flush()
    wait_idle(qtbot, window)


def drop_files(window, paths: list[Path]) -> None:
    """Simulate dragging files from a file manager onto the window and dropping them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPoint(window.width() // 2, window.height() // 2)
    args = (
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    try:
        enter = QDragEnterEvent(QPointF(pos), *args)  # PySide6 >= 6.12
    except TypeError:
        enter = QDragEnterEvent(pos, *args)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted(), "the window refused the drag"
    drop = QDropEvent(
        QPointF(pos),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, drop)
    assert drop.isAccepted(), "the window refused the drop"
