"""Desktop app: importing folders with progress, cancel and an error summary; catalogs."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
from pathlib import Path

from tests.gui_fixtures import *
from tests.gui_fixtures import WAIT_MS, drop_files, wait_idle


def test_import_a_folder_with_progress_and_an_error_summary(
    qtbot, make_window, tmp_path, luma_images
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in luma_images[5:17]:
        shutil.copy(src, folder / src.name)
    (folder / "notes.jpg").write_text("not a photo")
    window = make_window(tmp_path / "new-catalog")
    assert "0 images" in window.catalog_label.text()
    assert "empty" in window.banner.text()

    progress: list[tuple[int, int]] = []
    window.session.importProgress.connect(lambda done, total, _msg: progress.append((done, total)))
    with qtbot.waitSignal(window.session.importFinished, timeout=WAIT_MS * 2) as finished:
        assert window.start_import([folder])
        assert window.import_dialog.isVisible() and window.import_dialog.running
        assert not window.act_import_folder.isEnabled()  # one import at a time
    report = finished.args[0]
    assert report.added == 12 and len(report.failed) == 1 and not report.cancelled

    # two passes: the 13 files, then the local features of the 12 images (counted from 0)
    assert progress and progress[-1] == (12, 12) and (13, 13) in progress
    files = progress[: progress.index((13, 13)) + 1]
    assert [d for d, _ in files] == sorted(d for d, _ in files)
    dialog = window.import_dialog
    assert (
        not dialog.running
        and dialog.close_button.isVisible()
        and not dialog.cancel_button.isVisible()
    )
    assert dialog.summary.text().startswith("12 added")
    assert "1 failed" in dialog.summary.text()
    assert dialog.failures.rowCount() == 1
    assert dialog.failures.item(0, 0).text().endswith("notes.jpg")
    assert dialog.failures.item(0, 1).text()  # the reason, in words
    assert window.banner.level == "warning" and "1 failed" in window.banner.text()
    qtbot.waitUntil(lambda: "12 images" in window.catalog_label.text(), timeout=WAIT_MS)

    # the new images are searchable right away
    drop_files(window, [folder / luma_images[9].name])
    wait_idle(qtbot, window)
    assert Path(window.results_model.matches()[0].path).name == luma_images[9].name

    # statistics list the import error
    window.show_stats()
    qtbot.waitUntil(lambda: window.stats_dialog.errors.rowCount() == 1, timeout=WAIT_MS)
    assert window.stats_dialog.values["Images"] == "12"


def test_images_are_searchable_while_their_match_features_are_computed(
    qtbot, make_window, tmp_path, luma_images, monkeypatch
):
    """The import's second pass (local features) runs on the import worker after the images are
    searchable: the status line counts it, and a search meanwhile finds the new images (their
    features computed on demand)."""
    import threading

    from engine import feature_store

    folder = tmp_path / "photos"
    folder.mkdir()
    for src in luma_images[20:30]:
        shutil.copy(src, folder / src.name)
    release = threading.Event()
    compute = feature_store._features_of

    def held(item):  # the feature pass waits until the test has searched
        assert release.wait(WAIT_MS / 1000)
        return compute(item)

    monkeypatch.setattr(feature_store, "_features_of", held)
    window = make_window(tmp_path / "catalog")
    messages: list[str] = []
    window.status.messageChanged.connect(messages.append)
    with qtbot.waitSignal(window.session.importSearchable, timeout=WAIT_MS * 2) as searchable:
        assert window.start_import([folder])
    assert searchable.args[0].added == 10
    assert window.session.importing and window.session.import_stage == "features"
    assert window.status.currentMessage().startswith("Computing match features")
    assert "searchable" in window.import_dialog.heading.text()
    qtbot.waitUntil(lambda: "10 images" in window.catalog_label.text(), timeout=WAIT_MS)

    drop_files(window, [folder / luma_images[24].name])
    wait_idle(qtbot, window)
    best = window.results_model.matches()[0]
    assert Path(best.path).name == luma_images[24].name and best.strength == "likely copy"
    assert window.session.importing  # the feature pass is still held

    with qtbot.waitSignal(window.session.importFinished, timeout=WAIT_MS * 2) as finished:
        release.set()
    report = finished.args[0]
    assert not report.cancelled and report.features.stored == 10
    assert "Computing match features: 10 / 10" in messages
    assert window.session.import_stage == "" and not window.status.currentMessage()
    assert feature_store.missing_count(window.session.catalog) == 0


def test_cancelled_import_leaves_a_consistent_catalog(qtbot, make_window, tmp_path, luma_dir):
    from engine.catalog import Catalog

    catalog_dir = tmp_path / "cancelled"
    window = make_window(catalog_dir)
    cancel_after = 5

    def cancel_early(done: int, total: int, _msg: str) -> None:
        if done >= cancel_after and window.import_dialog.cancel_button.isEnabled():
            window.import_dialog.cancel_button.click()

    window.session.importProgress.connect(cancel_early)
    with qtbot.waitSignal(window.session.importFinished, timeout=WAIT_MS * 2) as finished:
        window.start_import([luma_dir / "images"])  # 717 photos: cancelled long before the end
    report = finished.args[0]
    assert report.cancelled
    assert 0 < report.added < 717
    assert window.import_dialog.heading.text() == "Import cancelled"
    assert window.import_dialog.summary.text().startswith("Cancelled:")
    qtbot.waitUntil(lambda: window.session.catalog_info.images == report.added, timeout=WAIT_MS)

    # what was imported is searchable, and the database and the index agree
    some = Path(next(iter(window.session.catalog.iter_records()))["path"])
    drop_files(window, [some])
    wait_idle(qtbot, window)
    assert Path(window.results_model.matches()[0].path) == some
    window.close()
    with Catalog.open(catalog_dir, create=False) as cat:
        index = cat.vectors.index()
        assert cat.count_images() == report.added == len(index)
        ids = [r["image_id"] for r in cat.iter_records()]
        found, _ = index.query(cat.embeddings(ids[:3]), 1)
        assert found[:, 0].tolist() == ids[:3]


def test_dropping_a_folder_imports_it(qtbot, make_window, tmp_path, luma_images):
    folder = tmp_path / "drop-me"
    folder.mkdir()
    for src in luma_images[40:43]:
        shutil.copy(src, folder / src.name)
    window = make_window(tmp_path / "catalog")
    with qtbot.waitSignal(window.session.importFinished, timeout=WAIT_MS * 2) as finished:
        drop_files(window, [folder])
    assert finished.args[0].added == 3
    assert window.session.current is None  # a folder is not a query


def test_open_catalogs_and_the_recent_menu(
    qtbot, make_window, tmp_path, gui_catalog, gui_settings, luma_images
):
    window = make_window(gui_catalog)
    assert str(gui_catalog) in gui_settings.recent_catalogs()
    recent = [a.text() for a in window.recent_menu.actions()]
    assert str(gui_catalog) in recent

    # a folder that is not a catalog: a clear message, the open catalog stays
    not_a_catalog = tmp_path / "just-a-folder"
    not_a_catalog.mkdir()
    with qtbot.waitSignal(window.session.catalogFailed, timeout=WAIT_MS):
        window.choose_catalog(str(not_a_catalog))
    assert window.banner.level == "error" and "no catalog here" in window.banner.text()
    assert window.session.catalog is not None and window.session.catalog.directory == gui_catalog

    # create a new one: it becomes the open catalog and heads the recent list
    fresh = tmp_path / "fresh"
    with qtbot.waitSignal(window.session.catalogOpened, timeout=WAIT_MS):
        window.new_catalog(str(fresh))
    assert window.session.catalog.directory == fresh
    qtbot.waitUntil(lambda: window.session.ready, timeout=WAIT_MS)
    assert gui_settings.recent_catalogs()[:2] == [str(fresh), str(gui_catalog)]
    assert "fresh · 0 images" in window.catalog_label.text()

    # a recent catalog that has vanished is dropped from the list with a message
    shutil.rmtree(fresh)
    window.open_recent(str(fresh))
    assert "no longer exists" in window.banner.text()
    assert str(fresh) not in gui_settings.recent_catalogs()

    # searching an empty catalog says so (and still shows the predicted class)
    empty = tmp_path / "empty"
    with qtbot.waitSignal(window.session.catalogOpened, timeout=WAIT_MS):
        window.new_catalog(str(empty))
    qtbot.waitUntil(lambda: window.session.ready, timeout=WAIT_MS)
    drop_files(window, [luma_images[0]])
    wait_idle(qtbot, window)
    assert window.results_model.rowCount() == 0
    assert "catalog is empty" in window.results_header.text()
    assert len(window.query_panel.labels.texts()) == 3


def test_closing_the_window_during_an_import_cancels_it_cleanly(
    qtbot, make_window, tmp_path, luma_dir
):
    from engine.catalog import Catalog

    catalog_dir = tmp_path / "closing"
    window = make_window(catalog_dir)
    with qtbot.waitSignal(window.session.importProgress, timeout=WAIT_MS):
        window.start_import([luma_dir / "images"])
    assert window.import_dialog.isVisible()
    window.close()  # cancels the import and waits for the workers
    assert window.session.import_cancelling  # cancelled, not run to its end
    assert window.session.import_pool.activeThreadCount() == 0
    with Catalog.open(catalog_dir, create=False) as cat:
        assert cat.count_images() == len(cat.vectors.index() or [])
        assert cat.count_images() < 717


def test_duplicates_view_opens_on_the_open_catalog(qtbot, make_window, gui_catalog, tmp_path):
    window = make_window(gui_catalog)
    view = window.open_duplicates()
    assert view is not None and view.isVisible()
    assert view.catalog is window.session.catalog
    assert window.open_duplicates() is view  # one window per catalog
    with qtbot.waitSignal(view.scanFinished, timeout=WAIT_MS):
        view.start_scan()
    # switching catalogs closes it (it belonged to the previous one)
    with qtbot.waitSignal(window.session.catalogOpened, timeout=WAIT_MS):
        window.new_catalog(str(tmp_path / "other"))
    assert window.duplicates_window is None


def test_imports_read_the_text_on_images_when_asked(qtbot, make_window, tmp_path, gui_settings):
    """Catalog > Read text on imported images: the next import reads and stores each image's
    words (as `lookalike index --read-text`), and the choice is remembered."""
    from engine.catalog import Catalog
    from tests.test_image_text import _label

    folder = tmp_path / "labels"
    _label(folder / "milk.png", "MELLANMJOLK 1.5%")
    window = make_window(tmp_path / "catalog")
    assert not window.act_read_text.isChecked()
    window.act_read_text.trigger()
    assert gui_settings.read_text_on_import()
    with qtbot.waitSignal(window.session.importFinished, timeout=WAIT_MS * 2) as finished:
        window.import_folder(str(folder))
    assert finished.args[0].added == 1 and finished.args[0].texts == 1
    window.close()
    with Catalog.open(tmp_path / "catalog", create=False, readonly=True) as cat:
        [(_, _, words)] = list(cat.image_texts.iter_words())
    assert "mellanmjolk" in words


def test_a_confirmed_result_takes_the_query_photo_into_its_product(
    qtbot, make_window, tmp_path, gui_catalog, luma_images
):
    """Search > Add query photo to product: the query file becomes one more photo of the
    selected result's product (a confirmed match teaches the catalog)."""
    from engine.catalog import Catalog

    catalog = tmp_path / "catalog"
    shutil.copytree(gui_catalog, catalog, ignore=shutil.ignore_patterns("write.lock"))
    query = tmp_path / "shot.jpg"
    shutil.copy(luma_images[1], query)              # not in the catalog (every 18th image is)
    window = make_window(catalog)
    assert not window.act_add_to_product.isEnabled()        # nothing selected
    window.add_query_to_product()                           # (called anyway: a hint, no import)
    assert "Select a result" in window.banner.text() and not window.session.importing
    drop_files(window, [query])
    wait_idle(qtbot, window)
    rows = [r for r in range(window.results_model.rowCount())
            if (window.results_model.match_at(r).product or {}).get("product_id")]
    window.results_view.setCurrentIndex(window.results_model.index(rows[0], 0))
    product = window.results_model.match_at(rows[0]).product["product_id"]
    with qtbot.waitSignal(window.session.importFinished, timeout=WAIT_MS * 2) as finished:
        window.act_add_to_product.trigger()
    assert finished.args[0].added == 1
    window.close()
    with Catalog.open(catalog, create=False, readonly=True) as cat:
        record = cat.image_by_path(str(query))
        assert record is not None and record["product_id"] == product
