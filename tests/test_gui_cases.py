"""The Cases window (pytest-qt, offscreen): check a folder of offers into a case, review them
strongest first, decide with the keyboard and the buttons, cancel, watch a folder."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


import pytest
from PIL import Image

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt

from desktop.cases_model import OffersModel, edits_text, offer_source
from desktop.cases_view import CasesView
from engine.case_store import INFRINGING, NOT_INFRINGING, OfferRecord
from engine.catalog import Catalog
from tests.gui_fixtures import *
from tests.gui_fixtures import WAIT_MS, drop_files, open_session
from tests.test_cases import _copy_of, offers_folder  # noqa: F401 (a fixture)


@pytest.fixture
def offers(offers_folder):
    """A cropped and mirrored copy of a catalog photo, an unrelated photo and a broken file."""
    return offers_folder


@pytest.fixture
def shop(small_luma_catalog, catalog_copy):
    return catalog_copy(small_luma_catalog)


@pytest.fixture
def session(qtbot, shop, model):
    s = open_session(qtbot, shop, model_loader=lambda _catalog: model)
    assert s.ready
    yield s
    s.shutdown()


@pytest.fixture
def make_view(qtbot, session):
    views = []

    def make() -> CasesView:
        view = CasesView(session)
        qtbot.addWidget(view)
        view.resize(1300, 800)
        view.show()
        views.append(view)
        return view

    yield make
    for view in views:
        view.shutdown()


def _name(record) -> str:
    return os.path.basename(record.image_path)


def _checked(qtbot, view, paths) -> object:
    """Check ``paths`` into the case shown; returns the CheckReport once the case is read again."""
    with qtbot.waitSignal(view.caseLoaded, timeout=WAIT_MS):
        with qtbot.waitSignal(view.checkFinished, timeout=WAIT_MS) as finished:
            view.check_paths(paths)
    qtbot.waitUntil(lambda: not view.running, timeout=WAIT_MS)
    return finished.args[0]


def test_export_is_offered_once_a_case_is_open(qtbot, make_view, offers):
    view = make_view()
    _open_case(qtbot, view, "c")
    assert view.export_button.isEnabled()


def _open_case(qtbot, view, name: str) -> None:
    with qtbot.waitSignal(view.caseLoaded, timeout=WAIT_MS):
        view.new_case(name)
    assert view.case == name


def test_a_checked_folder_lists_the_copy_first_with_its_catalog_photo(qtbot, make_view, offers, luma_images):
    view = make_view()
    _open_case(qtbot, view, "spring sweep")
    report = _checked(qtbot, view, [offers])
    assert len(report.checked) == 3 and not report.cancelled
    qtbot.waitUntil(lambda: view.model.rowCount() == 3, timeout=WAIT_MS)
    first, last = view.model.record(0), view.model.record(2)
    assert _name(first) == "copied.jpg"
    assert first.best["path"] == str(luma_images[::18][3])
    assert first.strength.endswith("copy")
    assert _name(last) == "broken.jpg" and last.error
    assert view.model.index(2, OffersModel.SCORE).data().startswith("failed")
    # the first offer is selected and shown beside its match; its thumbnails load lazily
    assert view.current_record().offer == first.offer
    assert "copy" in view.detail.match_pane.caption.text()
    view.model.index(0, OffersModel.OFFER).data(Qt.ItemDataRole.DecorationRole)
    view.model.index(0, OffersModel.MATCH).data(Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: view.offer_thumbs.is_cached(first.number)
                    and view.match_thumbs.is_cached(int(first.best["image_id"])), timeout=WAIT_MS)
    assert view.offer_thumbs.get(first.number).width() <= 64


def test_decisions_by_key_and_button_survive_a_new_window(qtbot, make_view, offers, shop):
    view = make_view()
    _open_case(qtbot, view, "c")
    _checked(qtbot, view, [offers])
    view.select_row(0)
    copy_offer = view.current_record().offer
    view.table.setFocus()
    qtbot.keyClick(view.table, Qt.Key.Key_I)          # infringement, then the next offer
    qtbot.waitUntil(lambda: view.model.record(0).decision == INFRINGING, timeout=WAIT_MS)
    assert view.table.currentIndex().row() == 1
    assert view.model.index(0, OffersModel.DECISION).data() == "infringement"
    view.detail.note.setText("a coffee cup, not ours")
    qtbot.mouseClick(view.detail.buttons[NOT_INFRINGING], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.model.record(1).decision == NOT_INFRINGING, timeout=WAIT_MS)
    unrelated = view.model.record(1)
    assert unrelated.note == "a coffee cup, not ours"
    view.close()

    again = make_view()
    qtbot.waitUntil(lambda: again.case == "c" and again.model.rowCount() == 3, timeout=WAIT_MS)
    assert again.model.record(0).offer == copy_offer and again.model.record(0).decision == INFRINGING
    assert again.model.record(1).note == "a coffee cup, not ours"
    with Catalog.open(shop, create=False) as cat:   # in the catalog itself
        stored = cat.case_store.find("c", copy_offer)
        assert stored.decision == INFRINGING


def test_checking_again_checks_only_the_new_offers(qtbot, make_view, offers):
    view = make_view()
    _open_case(qtbot, view, "c")
    _checked(qtbot, view, [offers])
    Image.new("RGB", (80, 60), (200, 30, 30)).save(offers / "new.png")
    report = _checked(qtbot, view, [offers])
    assert sorted(_name(r) for r in report.checked) == ["broken.jpg", "new.png"]   # a failure is retried
    assert report.skipped == 2
    qtbot.waitUntil(lambda: view.model.rowCount() == 4, timeout=WAIT_MS)


def test_cancel_stops_the_check_and_keeps_what_it_did(qtbot, make_view, tmp_path, luma_images):
    folder = tmp_path / "many"
    folder.mkdir()
    for i, src in enumerate(luma_images[1:200:20]):
        _copy_of(src, folder / f"offer{i:02d}.jpg")
    view = make_view()
    _open_case(qtbot, view, "c")
    view.model.rowsInserted.connect(lambda *_: view.cancel_check())
    report = _checked(qtbot, view, [folder])
    assert report.cancelled and 1 <= len(report.checked) < 10
    assert "cancelled" in view.status.text()
    qtbot.waitUntil(lambda: view.check_folder_button.isEnabled(), timeout=WAIT_MS)
    assert not view.cancel_button.isEnabled()


def test_dropped_offers_are_checked_into_a_new_case(qtbot, make_view, offers):
    view = make_view()
    qtbot.waitUntil(lambda: view.check_files_button.isEnabled(), timeout=WAIT_MS)
    with qtbot.waitSignal(view.checkFinished, timeout=WAIT_MS):
        drop_files(view, [offers / "copied.jpg"])
    assert view.case == "copied"
    qtbot.waitUntil(lambda: view.model.rowCount() == 1, timeout=WAIT_MS)


def test_watch_mode_shows_offers_as_they_arrive_and_stops(qtbot, make_view, offers, luma_images):
    view = make_view()
    _open_case(qtbot, view, "c")
    _checked(qtbot, view, [offers])
    view.watch_poll_seconds, view.watch_settle_seconds = 0.05, 0.1
    assert view.watch_folders() == [str(offers)]
    qtbot.waitUntil(view.watch_button.isEnabled, timeout=WAIT_MS)
    view.watch_button.click()
    assert view.watching and not view.check_folder_button.isEnabled()
    _copy_of(luma_images[::18][7], offers / "arrived.jpg")
    qtbot.waitUntil(lambda: any(_name(r) == "arrived.jpg" for r in view.model.records()), timeout=WAIT_MS)
    arrived = next(r for r in view.model.records() if _name(r) == "arrived.jpg")
    assert arrived.best["path"] == str(luma_images[::18][7])
    view.watch_button.click()                      # off
    qtbot.waitUntil(lambda: not view.watching, timeout=WAIT_MS)
    assert view.check_folder_button.isEnabled() and not view.watch_button.isChecked()


def test_the_model_keeps_the_strongest_first_as_records_arrive(qtbot):
    model = OffersModel()
    rec = lambda n, score, **kw: OfferRecord(offer=f"o{n}", image_path=f"/x/{n}.jpg", number=n, score=score, **kw)
    model.set_records([rec(1, 0.5), rec(2, None, error="broken")])
    model.upsert(rec(3, 0.9))
    model.upsert(rec(4, 0.7, fields={"Seller": "Acme", "Offer URL": "https://m.example/4"},
                     edits={"edits": ["cropped", "mirrored"]}))
    assert [r.number for r in model.records()] == [3, 4, 1, 2]
    model.upsert(rec(1, 0.95))                      # re-checked: moves up
    assert [r.number for r in model.records()] == [1, 3, 4, 2]
    model.upsert(rec(1, 0.1))                       # and down
    assert [r.number for r in model.records()] == [3, 4, 1, 2]
    four = model.record(1)
    assert edits_text(four) == "cropped, mirrored"
    assert offer_source(four) == "Acme · https://m.example/4"
    assert model.index(1, OffersModel.EDITS).data() == "cropped, mirrored"


def test_the_main_window_opens_the_cases_window_and_closes_it_with_the_catalog(qtbot, make_window, shop):
    window = make_window(shop)
    assert window.act_cases.isEnabled()
    view = window.open_cases()
    assert isinstance(view, CasesView) and view.catalog is window.session.catalog
    assert window.open_cases() is view
    with qtbot.waitSignal(window.session.catalogOpened, timeout=WAIT_MS):
        window.session.open_catalog(shop, create=False)
    assert window.cases_window is None


def test_the_report_covers_the_offers_decided_infringing(qtbot, make_view, offers, tmp_path):
    view = make_view()
    _open_case(qtbot, view, "c")
    _checked(qtbot, view, [offers])
    with qtbot.waitSignal(view.reportWritten, timeout=WAIT_MS) as empty:
        view.export_report(str(tmp_path / "none.html"))
    assert empty.args[0] == 0 and not (tmp_path / "none.html").exists()
    view.select_row(0)
    view.decide(INFRINGING)
    qtbot.waitUntil(lambda: view.model.record(0).decision == INFRINGING, timeout=WAIT_MS)
    with qtbot.waitSignal(view.reportWritten, timeout=WAIT_MS) as written:
        view.export_report(str(tmp_path / "report.html"))
    assert written.args[0].offers == 1
    assert "copied.jpg" in (tmp_path / "report.html").read_text(encoding="utf-8")
    with qtbot.waitSignal(view.reportWritten, timeout=WAIT_MS) as spreadsheet:
        view.export_report(str(tmp_path / "offers.csv"))
    assert spreadsheet.args[0].offers == 3            # every offer, decided or not
    text = (tmp_path / "offers.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("number,offer,image,sha256") and "infringing" in text
