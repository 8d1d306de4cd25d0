"""The Duplicates view (pytest-qt, offscreen): scan in the background, review, decide, export.
The view works through a Session: scans, decisions and re-scoring run on its worker threads."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import threading
from typing import ClassVar

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QTimer  # noqa: E402

from desktop import workers  # noqa: E402
from desktop.duplicates_model import GroupsModel, MembersModel  # noqa: E402
from desktop.duplicates_view import DuplicatesView, main  # noqa: E402
from engine import duplicates, scoring  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.decision_store import DecisionStore  # noqa: E402
from engine.duplicates import DuplicateGroup, Member  # noqa: E402
from tests.gui_fixtures import open_session  # noqa: E402
from tests.synthetic_vectors import near, unit  # noqa: E402

DIM = 64


@pytest.fixture
def dupes_catalog(tmp_path):
    """30 distinct images (real files, synthetic embeddings) + copies of images 0 (two) and 1 (one)."""
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((30, DIM)))
    vecs = list(base) + [near(rng, base[0], 0.97), near(rng, base[0], 0.96), near(rng, base[1], 0.95)]
    folder = tmp_path / "catalog"
    rows, products = [], []
    for i, v in enumerate(vecs):
        path = tmp_path / "img" / f"{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        img = np.full((120, 100 + (0 if i < 30 else -40), 3), (i * 7 % 255, 90, 200), np.uint8)
        cv2.imwrite(str(path), img)
        products.append({"id": f"P{i}", "title": f"=title {i}", "price": 10.0 + i, "currency": "EUR"})
        rows.append({"path": str(path), "content_hash": f"{i:032x}", "file_size": 1, "mtime": 0.0,
                     "width": img.shape[1], "height": img.shape[0], "product_id": f"P{i}",
                     "model_id": "synthetic", "embedding": v, "labels": []})
    with Catalog.open(folder) as cat:
        cat.upsert_products(products)
        cat.put_images(rows)
    return folder


@pytest.fixture
def session(qtbot, dupes_catalog):
    s = open_session(qtbot, dupes_catalog)
    yield s
    s.shutdown()


@pytest.fixture
def view(qtbot, session):
    w = DuplicatesView(session, threshold="copy")
    w.threshold_box.setEditable(False)
    qtbot.addWidget(w)
    w.resize(1100, 700)
    w.show()
    yield w
    w.shutdown()


def _use_threshold(view, value: float, monkeypatch):
    monkeypatch.setattr(view, "threshold", lambda: value)


def _written(qtbot, view):
    """Wait until the decision just taken has been written (on a worker thread) and shown."""
    qtbot.waitUntil(lambda: not view.busy, timeout=10000)


def _scan(qtbot, view):
    with qtbot.waitSignal(view.scanFinished, timeout=20000) as blocker:
        view.scan_button.click()
    return blocker.args[0]


def _fake_groups(n: int) -> list[DuplicateGroup]:
    return [DuplicateGroup(i + 1, Member(2 * i, None, record={"path": f"/x/{i}.jpg", "title": f"t{i}"}),
                           [Member(2 * i + 1, 0.95, record={"path": f"/x/{i}b.jpg"})]) for i in range(n)]


# ---------------------------------------------------------------------- models
class _Watched(DuplicateGroup):
    """A group that records which groups were read, to check the model's work per cell."""

    touched: ClassVar[list[int]] = []

    def __getattribute__(self, name):
        if not name.startswith("__"):
            _Watched.touched.append(object.__getattribute__(self, "group_id"))
        return object.__getattribute__(self, name)


def test_groups_model_with_10000_groups_reads_only_the_cells_asked_for(qtbot):
    groups = [_Watched(g.group_id, g.representative, g.members) for g in _fake_groups(10_000)]
    model = GroupsModel()
    _Watched.touched = []
    model.set_groups(groups)
    assert _Watched.touched == []              # loading does no work per group
    assert model.rowCount() == 10_000 and model.columnCount() == 4
    for row in (0, 5_000, 9_999):
        _Watched.touched = []
        for col in range(4):
            model.data(model.index(row, col))
        assert set(_Watched.touched) == {row + 1}, "a cell reads its own group only"
    assert model.data(model.index(9_999, 0)) == "10000"
    assert model.data(model.index(9_999, 2)) == "2"
    assert model.data(model.index(10_000, 0)) is None
    assert model.rowCount(model.index(0, 0)) == 0       # a flat table


def test_view_with_10000_groups_paints_only_visible_rows(qtbot, session):
    asked: set[int] = set()

    class Counting(GroupsModel):
        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            asked.add(index.row())
            return super().data(index, role)

    w = DuplicatesView(session)
    qtbot.addWidget(w)
    w.groups_model = Counting(w)
    w.groups_view.setModel(w.groups_model)
    w.resize(1100, 700)
    w.show()
    qtbot.waitExposed(w)
    result = duplicates.ScanResult(groups=_fake_groups(10_000), threshold=0.9, scoring="test")
    w.groups_model.set_groups(result.groups)
    w.groups_view.scrollToBottom()
    qtbot.wait(50)
    w.groups_view.scrollToTop()
    qtbot.wait(50)
    assert 9_999 in asked and 0 in asked
    assert len(asked) < 300, f"{len(asked)} rows were asked for; only visible rows should be"
    w.shutdown()


def test_members_model_representative_first_with_placeholder_thumbnails(qtbot):
    g = _fake_groups(1)[0]
    model = MembersModel(thumbnails=None)
    model.set_group(g)
    assert model.rowCount() == 2
    assert model.data(model.index(0)).startswith("Representative")
    assert model.data(model.index(1)).startswith("0.950")
    assert not model.data(model.index(1), Qt.ItemDataRole.DecorationRole).isNull()


# ---------------------------------------------------------------------- the view
def test_scan_in_background_then_review(qtbot, view, monkeypatch):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    result = _scan(qtbot, view)
    assert not view.scanning and view.scan_button.isEnabled() and not view.progress.isVisible()
    assert view.groups_model.rowCount() == 2 == len(result.groups)
    assert view.current_group().size == 3                    # image 0 and its two copies first
    assert view.members_model.rowCount() == 3
    assert view.compare.pair is not None
    rep, copy = view.compare.pair
    assert rep.record["path"].endswith("000.png") and copy.score >= scoring.embedding_score(0.9)
    assert "Lowest" in view.groups_model.headerData(3, Qt.Orientation.Horizontal)
    # thumbnails arrive from the worker threads and replace the placeholders
    qtbot.waitUntil(lambda: view.thumbnails.get(rep.image_id) is not None, timeout=10000)
    qtbot.waitUntil(lambda: view.large_images.get(copy.image_id) is not None, timeout=10000)
    qtbot.waitUntil(lambda: view.compare.right.image.pixmap() is not None
                    and not view.compare.right.image.pixmap().isNull(), timeout=10000)
    # the search window's compare view (difference / blink) shows the same pair, aligned
    view.compare_tabs.setCurrentWidget(view.detail_compare)
    qtbot.waitUntil(lambda: view.detail_compare.pair is not None, timeout=15000)
    assert view.detail_compare.match.path == copy.record["path"]
    assert "differ" in view.detail_compare.info.text()


def test_not_a_duplicate_is_remembered_across_scans_and_sessions(qtbot, view, monkeypatch, dupes_catalog):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    _scan(qtbot, view)
    view.select_group(1)                                        # image 1 and its one copy
    group = view.current_group()
    copy = group.members[0]
    view.members_view.setCurrentIndex(view.members_model.index(1))
    view.not_dup_button.click()
    _written(qtbot, view)
    assert view.groups_model.rowCount() == 1                    # a group of one disappears
    _scan(qtbot, view)
    assert view.groups_model.rowCount() == 1
    assert all(copy.image_id not in g.image_ids for g in view.groups_model.groups())
    with Catalog.open(dupes_catalog) as cat:
        stored = cat.decision_store.decisions()
    assert [(d["decision"], {d["a_id"], d["b_id"]}) for d in stored] == [
        ("not_duplicate", {group.representative.image_id, copy.image_id})]


def test_confirm_and_set_reference(qtbot, view, monkeypatch, dupes_catalog):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    _scan(qtbot, view)
    group = view.current_group()
    old_rep = group.representative.image_id
    view.members_view.setCurrentIndex(view.members_model.index(2))
    view.confirm_button.click()
    _written(qtbot, view)
    assert view.current_group().members[1].confirmed
    assert "confirmed" in view.members_model.data(view.members_model.index(2))
    new_rep = view.current_group().members[0].image_id
    view.members_view.setCurrentIndex(view.members_model.index(1))
    with qtbot.waitSignal(view.message, timeout=10000,
                          check_params_cb=lambda text: "is now the reference" in text):
        view.reference_button.click()
    g = view.current_group()
    assert g.representative.image_id == new_rep
    assert old_rep in {m.image_id for m in g.members}          # 0.97 to the new reference
    assert all(m.score >= scoring.embedding_score(0.9) for m in g.members)
    with Catalog.open(dupes_catalog) as cat:
        assert cat.decision_store.references() == {new_rep}
        assert cat.decision_store.decisions()[0]["decision"] == "confirmed"
    # the next scan keeps the user's reference
    result = _scan(qtbot, view)
    assert any(gr.representative.image_id == new_rep for gr in result.groups)


def test_keyboard_shortcut_marks_not_duplicate(qtbot, view, monkeypatch):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    _scan(qtbot, view)
    view.members_view.setCurrentIndex(view.members_model.index(1))
    view.members_view.setFocus()
    before = view.current_group().size
    qtbot.keyClick(view.members_view, Qt.Key.Key_N)
    _written(qtbot, view)
    assert view.current_group().size == before - 1


def test_export_writes_escaped_csv(qtbot, view, monkeypatch, tmp_path):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    _scan(qtbot, view)
    out = tmp_path / "groups.csv"
    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "CSV files (*.csv)"))
    view.export_button.click()
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert len(rows) == 5                                       # 3 + 2 images
    assert {r["group_id"] for r in rows} == {"1", "2"}
    assert all(r["title"].startswith("'=title") for r in rows)  # formula defused
    assert "Wrote 5 rows" in view.status.text()


def test_cancel_keeps_the_ui_usable(qtbot, view, monkeypatch):
    started = threading.Event()
    release = threading.Event()
    ticks: list[int] = []

    def slow_scan(catalog, model, *, progress, cancel, **options):
        started.set()
        release.wait(10)
        if cancel.is_set():
            raise duplicates.ScanCancelled()
        return duplicates.ScanResult(groups=[], threshold=0.9, scoring="test")

    monkeypatch.setattr(workers, "scan_duplicates_job", slow_scan)
    view.scan_button.click()
    assert started.wait(5)
    assert view.scanning and not view.scan_button.isEnabled() and view.cancel_button.isEnabled()
    # the UI thread keeps running its event loop while the scan runs
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.waitUntil(lambda: len(ticks) >= 3, timeout=5000)
    view.cancel_button.click()
    release.set()
    qtbot.waitUntil(lambda: not view.scanning, timeout=5000)
    assert "cancelled" in view.status.text().lower()
    assert view.scan_button.isEnabled() and not view.cancel_button.isEnabled()


def test_closing_during_a_scan_cancels_it_and_the_view_opens_again(qtbot, session, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = workers.scan_duplicates_job

    def slow_scan(catalog, model, *, progress, cancel, **options):
        started.set()
        release.wait(10)
        if cancel.is_set():
            raise duplicates.ScanCancelled()
        return real(catalog, model, progress=progress, cancel=cancel, **options)

    monkeypatch.setattr(workers, "scan_duplicates_job", slow_scan)
    first = DuplicatesView(session)
    qtbot.addWidget(first)
    first.show()
    first.scan_button.click()
    assert started.wait(5)
    first.close()                              # the user closes the window: the scan stops
    release.set()
    qtbot.waitUntil(lambda: not session.scanning, timeout=5000)
    assert "cancelled" in first.status.text().lower()
    first.show()                               # ... and opens it again
    release.clear()
    release.set()
    _scan(qtbot, first)
    assert first.result is not None and first.scan_button.isEnabled()

    # a view deleted while its scan runs: the outcome arrives and is dropped
    started.clear()
    release.clear()
    second = DuplicatesView(session)
    second.scan_button.click()
    assert started.wait(5)
    second.deleteLater()
    qtbot.wait(10)
    release.set()
    qtbot.waitUntil(lambda: not session.scanning, timeout=10000)


def test_decisions_are_written_off_the_ui_thread_with_a_busy_state(qtbot, view, monkeypatch):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    _scan(qtbot, view)
    entered, release = threading.Event(), threading.Event()
    threads: list[int] = []
    real = DecisionStore.mark_pairs

    def slow_mark_pairs(*args, **kwargs):  # as if the catalog were slow to write
        threads.append(threading.get_ident())
        entered.set()
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(DecisionStore, "mark_pairs", slow_mark_pairs)
    before = view.current_group().size
    view.members_view.setCurrentIndex(view.members_model.index(1))
    view.not_dup_button.click()
    assert entered.wait(5)
    # while it is written: the actions are disabled, a busy bar shows, the event loop runs
    assert view.busy and view.decision_progress.isVisible()
    assert not view.not_dup_button.isEnabled() and not view.confirm_button.isEnabled()
    qtbot.keyClick(view.members_view, Qt.Key.Key_C)          # ignored while busy
    qtbot.wait(20)
    assert view.current_group().size == before
    release.set()
    qtbot.waitUntil(lambda: not view.busy, timeout=5000)
    assert threads and threads[0] != threading.get_ident()
    assert view.current_group().size == before - 1
    assert not view.decision_progress.isVisible() and view.confirm_button.isEnabled()
    assert "not a duplicate" in view.status.text()


def test_a_decision_during_an_import_fails_with_one_line(qtbot, view, session, monkeypatch):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    _scan(qtbot, view)
    before = view.current_group().size
    view.members_view.setCurrentIndex(view.members_model.index(1))
    monkeypatch.setattr(session, "importing", True)      # an import holds the write lock
    view.confirm_button.click()
    qtbot.waitUntil(lambda: not view.busy, timeout=5000)
    assert view.status.text().startswith("Cannot record the decision: the catalog is busy")
    assert "\n" not in view.status.text()
    assert view.current_group().size == before and not view.current_group().members[0].confirmed
    assert view.confirm_button.isEnabled()
    with Catalog.open(view.catalog.directory) as cat:
        assert cat.decision_store.decisions() == []


def test_standalone_from_a_missing_folder_fails_with_one_line(tmp_path, qtbot, capsys):
    assert main(["--catalog", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lookalike: error:") and "no catalog here" in err and "\n" not in err


def test_scan_embeds_isolated_images_turned_with_the_sessions_model(qtbot, dupes_catalog, monkeypatch):
    """The session hands the model it loaded for the catalog to the scan (turned copies,
    engine.duplicates.turned_pairs, in catalogs larger than the visual words cover), which runs
    it on a worker thread; without one (the catalog's embeddings come from no model pack) the
    scan has no turned pass."""
    from engine import visual_words

    monkeypatch.setattr(visual_words, "MAX_IMAGES", 1)     # as in a catalog past the words' size
    calls: list[tuple[int, str]] = []

    class RecordingModel:
        name = "recording"
        model_id = "synthetic"
        resize_short_side = 64

        def run(self, images):
            calls.append((len(images), threading.current_thread().name))
            return None, np.tile(np.eye(1, DIM, dtype=np.float32), (len(images), 1))

    main_thread = threading.current_thread().name
    session = open_session(qtbot, dupes_catalog, model_loader=lambda _catalog: RecordingModel())
    assert session.ready
    w = DuplicatesView(session)
    qtbot.addWidget(w)
    result = _scan(qtbot, w)
    assert result.turned > 0 and calls and all(n % 3 == 0 for n, _ in calls)
    assert all(name != main_thread for _, name in calls)
    # "Skip turned search": the same session's model, no turned pass
    calls.clear()
    w.fast_box.setChecked(True)
    assert _scan(qtbot, w).turned == 0 and not calls
    w.shutdown()
    session.shutdown()

    session = open_session(qtbot, dupes_catalog)
    plain = DuplicatesView(session)
    qtbot.addWidget(plain)
    assert _scan(qtbot, plain).turned == 0 and session.model is None
    plain.shutdown()
    session.shutdown()
