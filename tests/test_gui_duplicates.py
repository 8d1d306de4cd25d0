"""The Duplicates view (pytest-qt, offscreen): scan in the background, review, decide, export."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QModelIndex, Qt  # noqa: E402

from desktop.duplicates_model import GroupsModel, MembersModel  # noqa: E402
from desktop.duplicates_view import DuplicatesView, Job  # noqa: E402
from engine import duplicates, scoring  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.duplicates import DuplicateGroup, Member  # noqa: E402
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
def view(qtbot, dupes_catalog):
    w = DuplicatesView(dupes_catalog, threshold="copy")
    w.threshold_box.setEditable(False)
    qtbot.addWidget(w)
    w.resize(1100, 700)
    w.show()
    yield w
    w.shutdown()


def _use_threshold(view, value: float, monkeypatch):
    monkeypatch.setattr(view, "threshold", lambda: value)


def _scan(qtbot, view):
    with qtbot.waitSignal(view.scanFinished, timeout=20000) as blocker:
        view.scan_button.click()
    return blocker.args[0]


def _fake_groups(n: int) -> list[DuplicateGroup]:
    return [DuplicateGroup(i + 1, Member(2 * i, None, record={"path": f"/x/{i}.jpg", "title": f"t{i}"}),
                           [Member(2 * i + 1, 0.95, record={"path": f"/x/{i}b.jpg"})]) for i in range(n)]


# ---------------------------------------------------------------------- models
def test_groups_model_with_10000_groups_is_constant_time(qtbot):
    groups = _fake_groups(10_000)
    model = GroupsModel()
    t = time.perf_counter()
    model.set_groups(groups)
    assert time.perf_counter() - t < 0.5
    assert model.rowCount() == 10_000 and model.columnCount() == 4
    t = time.perf_counter()
    for row in range(0, 10_000, 7):
        for col in range(4):
            model.data(model.index(row, col))
    assert time.perf_counter() - t < 1.0       # ~5,700 cells
    assert model.data(model.index(9_999, 0)) == "10000"
    assert model.data(model.index(9_999, 2)) == "2"
    assert model.data(model.index(10_000, 0)) is None
    assert model.rowCount(model.index(0, 0)) == 0       # a flat table


def test_view_with_10000_groups_opens_fast_and_paints_only_visible_rows(qtbot, dupes_catalog):
    asked: set[int] = set()

    class Counting(GroupsModel):
        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            asked.add(index.row())
            return super().data(index, role)

    w = DuplicatesView(dupes_catalog)
    qtbot.addWidget(w)
    w.groups_model = Counting(w)
    w.groups_view.setModel(w.groups_model)
    w.resize(1100, 700)
    w.show()
    qtbot.waitExposed(w)
    result = duplicates.ScanResult(groups=_fake_groups(10_000), threshold=0.9, scoring="test")
    t = time.perf_counter()
    w.groups_model.set_groups(result.groups)
    w.groups_view.scrollToBottom()
    qtbot.wait(50)
    w.groups_view.scrollToTop()
    qtbot.wait(50)
    assert time.perf_counter() - t < 2.0
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
    assert view.groups_model.rowCount() == 1                    # a group of one disappears
    _scan(qtbot, view)
    assert view.groups_model.rowCount() == 1
    assert all(copy.image_id not in g.image_ids for g in view.groups_model.groups())
    with Catalog.open(dupes_catalog) as cat:
        stored = duplicates.decisions(cat)
    assert [(d["decision"], {d["a_id"], d["b_id"]}) for d in stored] == [
        ("not_duplicate", {group.representative.image_id, copy.image_id})]


def test_confirm_and_set_reference(qtbot, view, monkeypatch, dupes_catalog):
    _use_threshold(view, float(scoring.embedding_score(0.9)), monkeypatch)
    _scan(qtbot, view)
    group = view.current_group()
    old_rep = group.representative.image_id
    view.members_view.setCurrentIndex(view.members_model.index(2))
    view.confirm_button.click()
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
        assert duplicates.references(cat) == {new_rep}
        assert duplicates.decisions(cat)[0]["decision"] == "confirmed"
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


def test_cancel_keeps_the_ui_usable(qtbot, view):
    started = threading.Event()
    release = threading.Event()

    def slow_scan(progress, cancel):
        started.set()
        release.wait(5)
        if cancel.is_set():
            raise duplicates.ScanCancelled()
        return duplicates.ScanResult(groups=[], threshold=0.9, scoring="test")

    job = Job(slow_scan, with_progress=True)
    job.signals.cancelled.connect(view._on_scan_cancelled)
    view.job = job
    view.cancel_button.setEnabled(True)
    view.pool.start(job)
    assert started.wait(5)
    view.cancel_button.click()
    release.set()
    qtbot.waitUntil(lambda: view.job is None, timeout=5000)
    assert "cancelled" in view.status.text().lower()
    assert view.scan_button.isEnabled() and not view.cancel_button.isEnabled()


def test_standalone_from_a_missing_folder_fails_with_one_line(tmp_path, qtbot):
    from engine.errors import CatalogError

    with pytest.raises(CatalogError, match="no catalog here"):
        DuplicatesView(tmp_path / "nothing")


def test_scan_embeds_isolated_images_turned_with_the_views_model(qtbot, dupes_catalog):
    """The view hands its model to the scan (turned copies, engine.duplicates._turned_pairs),
    which runs it on the worker thread; without one the scan loads the catalog's own, and a
    catalog whose embeddings no model pack made (these synthetic ones) scans without it."""
    calls: list[tuple[int, str]] = []

    class RecordingModel:
        resize_short_side = 64

        def run(self, images):
            calls.append((len(images), threading.current_thread().name))
            return None, np.tile(np.eye(1, DIM, dtype=np.float32), (len(images), 1))

    main_thread = threading.current_thread().name
    w = DuplicatesView(dupes_catalog, model=RecordingModel())
    qtbot.addWidget(w)
    result = _scan(qtbot, w)
    assert result.turned > 0 and calls and all(n % 3 == 0 for n, _ in calls)
    assert all(name != main_thread for _, name in calls)
    w.shutdown()

    plain = DuplicatesView(dupes_catalog)
    qtbot.addWidget(plain)
    assert _scan(qtbot, plain).turned == 0 and plain.model is None
    plain.shutdown()
