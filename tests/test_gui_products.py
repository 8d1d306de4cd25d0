"""Desktop app: results per product (the default) with an "N photos" badge, the "Show all images"
switch and its setting, and the product's matched photos in the details panel."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.gui_fixtures import *
from tests.gui_fixtures import drop_files, research, wait_idle

BUNDLE = (10, 20, 30)  # catalog images made three photos of one product


@pytest.fixture
def bundle_catalog(tmp_path, gui_catalog, catalog_images) -> Path:
    """The GUI catalog with three of its images linked to one product."""
    from engine.catalog import Catalog

    dst = tmp_path / "bundle-catalog"
    shutil.copytree(gui_catalog, dst, ignore=shutil.ignore_patterns("write.lock"))
    with Catalog.open(dst, create=False) as cat:
        cat.upsert_products([{"id": "BUNDLE", "title": "Three photos of one jacket"}])
        assert cat.link_images((str(catalog_images[i]), "BUNDLE") for i in BUNDLE) == 3
    return dst


def test_products_by_default_with_a_photos_badge(qtbot, make_window, bundle_catalog, catalog_images):
    from desktop.results_model import ImageCountRole
    from desktop.results_view import ResultDelegate

    window = make_window(bundle_catalog)
    assert not window.filters.all_images.isChecked() and window.session.options.group == "product"
    drop_files(window, [catalog_images[BUNDLE[0]]])
    wait_idle(qtbot, window)

    model = window.results_model
    assert window.shown_result.group == "product"
    assert model.rowCount() == len(catalog_images) - 2  # 40 images, three of them one product
    top = model.index(0, 0)
    match = model.match_at(0)
    assert match.product["product_id"] == "BUNDLE" and match.path == str(catalog_images[BUNDLE[0]])
    assert top.data(ImageCountRole) == 3 and ResultDelegate.photos_badge(top) == "3 photos"
    assert "3 photos" in top.data(Qt.ItemDataRole.ToolTipRole)
    assert all(ResultDelegate.photos_badge(model.index(r, 0)) == "" for r in range(1, model.rowCount()))
    assert not window.results_view.grab().isNull()  # the cards, badge included, paint

    # the details panel lists the product's matched photos, the shown one first
    details = window.details
    assert details.match is match and details.photos.isVisibleTo(window)
    listed = [details.photos.item(i).data(Qt.ItemDataRole.UserRole + 1) for i in range(details.photos.count())]
    assert [m.image_id for m in listed] == [match.image_id, *(m.image_id for m in match.images)]
    assert {m.path for m in listed} == {str(catalog_images[i]) for i in BUNDLE}
    # double-clicking one compares it with the query
    details.photos.itemActivated.emit(details.photos.item(2))
    assert window.stack.currentWidget() is window.compare_view
    assert window.compare_view.match is listed[2]
    window.show_results()

    # a single-photo result shows no photo list
    window.results_view.step(1)
    assert details.match is model.match_at(1) and not details.photos.isVisibleTo(window)


def test_all_images_switch_is_remembered(qtbot, make_window, bundle_catalog, catalog_images, gui_settings):
    from desktop.main_window import MainWindow
    from desktop.results_view import ResultDelegate
    from desktop.settings import Settings

    window = make_window(bundle_catalog)
    drop_files(window, [catalog_images[BUNDLE[1]]])
    wait_idle(qtbot, window)
    per_product = window.results_model.matches()
    assert len(per_product) == len(catalog_images) - 2

    research(qtbot, window, lambda: window.filters.all_images.setChecked(True))
    assert window.session.options.group == "image" and window.shown_result.group == "image"
    every = window.results_model.matches()
    assert len(every) == len(catalog_images)
    assert all(m.image_count == 1 for m in every)
    model = window.results_model
    assert all(ResultDelegate.photos_badge(model.index(r, 0)) == "" for r in range(model.rowCount()))
    # one card per photo: the product's photos are back as results of their own
    assert {m.image_id for m in every} == {m.image_id for p in per_product for m in (p, *p.images)}
    assert Settings().result_group() == "image"

    # back to products: the selected photo's product stays selected
    window.results_view.setCurrentIndex(
        model.index(next(i for i, m in enumerate(every) if m.path == str(catalog_images[BUNDLE[2]])), 0)
    )
    research(qtbot, window, lambda: window.filters.all_images.setChecked(False))
    assert window.results_view.current_match().product["product_id"] == "BUNDLE"
    research(qtbot, window, lambda: window.filters.all_images.setChecked(True))
    window.close()

    again = MainWindow(Settings())
    qtbot.addWidget(again)
    assert again.filters.all_images.isChecked() and again.session.options.group == "image"
    again.close()
