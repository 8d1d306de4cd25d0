"""Brand-protection cases: reading offers, checking them into a case, resuming, deciding
(engine.case_check, engine.case_store)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from engine.case_check import check_offers, read_offers
from engine.case_store import INFRINGING, NOT_INFRINGING, parse_decision
from engine.catalog import Catalog
from engine.errors import LookalikeError


def _copy_of(src, dst, *, mirror=True, fmt="JPEG"):
    """An infringing offer: the catalog photo cropped, mirrored and re-encoded."""
    im = Image.open(src).convert("RGB")
    w, h = im.size
    im = im.crop((int(w * 0.08), int(h * 0.05), int(w * 0.95), int(h * 0.9)))
    if mirror:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im.resize((im.width // 2, im.height // 2)).save(dst, fmt, quality=80)
    return dst


@pytest.fixture
def offers_folder(tmp_path, luma_images):
    from skimage import data

    folder = tmp_path / "offers"
    folder.mkdir()
    _copy_of(luma_images[::18][3], folder / "copied.jpg")
    Image.fromarray(data.coffee()).save(folder / "unrelated.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.fixture
def shop(small_luma_catalog, catalog_copy):
    with Catalog.open(catalog_copy(small_luma_catalog), create=False) as cat:
        yield cat


def test_offers_csv_keeps_its_columns_and_finds_images_beside_it(tmp_path):
    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    (tmp_path / "offers.csv").write_text(
        "\ufeffOffer URL;Seller;Image;Price\n"
        "https://m.example/1;Acme;img/a.png;9,99\n"
        "https://m.example/2;Bob;;5\n"
        "https://m.example/1;Carl;img/a.png;7\n"
        "https://m.example/3;Dora;https://cdn.example/a.jpg;8\n", encoding="utf-8")
    offers, problems = read_offers([tmp_path / "offers.csv"])
    assert [o.key for o in offers] == ["https://m.example/1", "https://m.example/1 (line 4)"]
    assert offers[0].image_path == str(tmp_path / "img" / "a.png")
    assert offers[0].fields == {"Offer URL": "https://m.example/1", "Seller": "Acme", "Price": "9,99"}
    assert problems[0] == (f"{tmp_path / 'offers.csv'}:3", "no image path in this row")
    assert problems[1][0].endswith("offers.csv:5") and "web address" in problems[1][1]


def test_an_offers_csv_without_an_image_column_is_refused_in_one_line(tmp_path):
    (tmp_path / "offers.csv").write_text("url,seller\nhttps://m.example/1,Acme\n")
    with pytest.raises(LookalikeError, match=r"offers\.csv: no image column"):
        read_offers([tmp_path / "offers.csv"])


def test_missing_paths_and_other_files_are_problems_not_offers(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    offers, problems = read_offers([tmp_path / "nope", tmp_path / "notes.txt"])
    assert offers == []
    assert [reason for _, reason in problems] == ["no such file or folder",
                                                  "not an image or an offers CSV (.csv, .tsv)"]


def test_a_check_finds_the_copy_and_keeps_every_offer(shop, model, offers_folder, luma_images):
    offers, _ = read_offers([offers_folder])
    seen = []
    report = check_offers(shop, model, "spring sweep", offers, edits=False, on_checked=seen.append)
    assert len(report.checked) == 3 and len(seen) == 3 and not report.cancelled
    by_name = {r.image_path.rsplit("/", 1)[-1]: r for r in shop.case_store.offers("spring sweep")}
    copied = by_name["copied.jpg"]
    assert copied.best["path"] == str(luma_images[::18][3])
    assert copied.strength.endswith("copy") and copied.score >= 0.9
    assert "mirrored" in copied.best["evidence"]["transform"]
    assert len(copied.sha256) == 64 and copied.checked_at
    assert not by_name["unrelated.jpg"].strength.endswith("copy")
    assert by_name["broken.jpg"].error and by_name["broken.jpg"].score is None
    # strongest first, failures last
    assert shop.case_store.offers("spring sweep")[0].offer == copied.offer
    assert shop.case_store.offers("spring sweep")[-1].offer == by_name["broken.jpg"].offer


def test_checking_again_searches_only_new_changed_or_failed_offers(shop, model, offers_folder):
    offers, _ = read_offers([offers_folder])
    check_offers(shop, model, "c", offers, edits=False)
    shop.case_store.decide("c", "copied.jpg", "infringing", note="same shot, flipped")
    again = check_offers(shop, model, "c", offers, edits=False)
    assert again.skipped == 2 and [r.image_path.rsplit("/", 1)[-1] for r in again.checked] == ["broken.jpg"]
    # a changed file is another version of the offer: checked again, the decision kept
    _copy_of(offers_folder / "unrelated.jpg", offers_folder / "copied.jpg", mirror=False)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(offers_folder / "new.png")
    offers, _ = read_offers([offers_folder])
    third = check_offers(shop, model, "c", offers, edits=False)
    assert sorted(r.image_path.rsplit("/", 1)[-1] for r in third.checked) == ["broken.jpg", "copied.jpg", "new.png"]
    copied = shop.case_store.find("c", "copied.jpg")
    assert copied.decision == INFRINGING and copied.note == "same shot, flipped"
    assert copied.decided_on_other_file
    assert shop.case_store.summary("c").offers == 4


def test_a_cancelled_check_keeps_what_it_did_and_resumes(shop, model, offers_folder):
    offers, _ = read_offers([offers_folder])
    cancel = threading.Event()
    first = check_offers(shop, model, "c", offers, edits=False,
                         on_checked=lambda r: cancel.set(), progress=lambda *a: None, cancel=cancel)
    assert first.cancelled and 1 <= len(first.checked) < 3
    rest = check_offers(shop, model, "c", offers, edits=False)
    assert rest.skipped == len([r for r in first.checked if not r.error])
    assert shop.case_store.summary("c").offers == 3


def test_decisions_name_offers_by_number_key_or_file_name(shop, model, offers_folder):
    offers, _ = read_offers([offers_folder])
    check_offers(shop, model, "c", offers, edits=False)
    store = shop.case_store
    first = store.offers("c")[0]
    assert store.decide("c", f"#{first.number}", "not").decision == NOT_INFRINGING
    assert store.decide("c", str(first.number), None).decision is None
    assert store.find("c", first.image_path).offer == first.offer
    with pytest.raises(LookalikeError, match="has no offer"):
        store.find("c", "nothing.jpg")
    with pytest.raises(LookalikeError, match="no case named 'other'"):
        store.offers("other")
    with pytest.raises(ValueError, match="use infringing, not or unsure"):
        parse_decision("perhaps")
    decided = store.decide("c", first.number, "infringing")
    noted = store.set_note("c", first.number, "seller warned before")
    assert (noted.decision, noted.decided_at, noted.note) == (INFRINGING, decided.decided_at, "seller warned before")
    assert store.find("c", first.number).decided_at == decided.decided_at
    assert store.delete("c") == 3 and store.names() == []


def test_a_catalog_without_cases_reads_as_having_none(small_luma_catalog):
    with Catalog.open(small_luma_catalog, readonly=True) as cat:
        assert cat.case_store.names() == []
        assert cat.case_store.checked_files("x") == {}


def test_a_watched_folder_checks_images_as_they_arrive(shop, model, offers_folder, luma_images):
    from engine.case_watch import watch_case

    offers, _ = read_offers([offers_folder])
    check_offers(shop, model, "w", offers, edits=False)
    (offers_folder / "broken.jpg").unlink()
    cancel = threading.Event()
    arrived = []
    watcher = threading.Thread(target=watch_case, args=(shop, model, "w", [offers_folder]),
                               kwargs=dict(cancel=cancel, on_checked=arrived.append, edits=False,
                                           poll_seconds=0.05, settle_seconds=0.2))
    watcher.start()
    try:
        time.sleep(0.3)          # the observer is scheduled
        _copy_of(luma_images[::18][5], offers_folder / "part.jpg.tmp")
        os.replace(offers_folder / "part.jpg.tmp", offers_folder / "dropped.jpg")   # as a download ends
        deadline = time.monotonic() + 30
        while not arrived and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        cancel.set()
        watcher.join(10)
    assert not watcher.is_alive()
    assert [r.image_path for r in arrived] == [str(offers_folder / "dropped.jpg")]
    assert arrived[0].strength.endswith("copy")
    # the images checked before were not searched again
    assert shop.case_store.summary("w").offers == 4


def test_a_watch_first_checks_what_arrived_before_it_began(shop, model, offers_folder):
    from engine.case_watch import watch_case

    cancel = threading.Event()
    arrived = []
    watch_case(shop, model, "w", [offers_folder], cancel=cancel, edits=False,
               on_checked=lambda r: (arrived.append(r), cancel.set()), poll_seconds=0.05)
    assert len(arrived) >= 1 and shop.case_store.summary("w").offers >= 1


def test_only_folders_can_be_watched(shop, model, offers_folder):
    from engine.case_watch import watch_case

    with pytest.raises(LookalikeError, match="only folders can be watched"):
        watch_case(shop, model, "w", [offers_folder / "copied.jpg"], cancel=threading.Event())


def test_a_recoloured_copy_of_our_photo_is_called_one(shop, model, tmp_path, luma_images):
    """The catalog score keeps recoloured photos below "copy" (a catalog's colour variants are
    one photo recoloured); a case calls an offer whose geometry confirms our photo and whose
    colours were changed a recoloured copy, with its score unchanged."""
    import cv2

    from engine.case_check import RECOLOURED_COPY

    folder = tmp_path / "recoloured"
    folder.mkdir()
    for src in luma_images[::18][:40:4]:
        hsv = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(int) + 10) % 180          # a 20 degree hue turn
        cv2.imwrite(str(folder / src.name), cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))
    offers, _ = read_offers([folder])
    checked = check_offers(shop, model, "c", offers).checked
    named = [r for r in checked if r.strength == RECOLOURED_COPY]
    assert named, [(r.strength, r.edits) for r in checked]
    for r in named:
        assert r.best["path"].endswith("/" + r.image_path.rsplit("/", 1)[-1])    # our photo
        assert "recoloured" in r.edits["edits"] and r.score < 0.75
