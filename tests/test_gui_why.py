"""Desktop app: "why it matched" — the details panel says what made a match from its evidence
(visual similarity, verified geometry, colours, the words read on the query with the matched ones
marked), the query panel shows the text read on the query, and the result cards' tooltips name
the matched words. Results and evidence are built by hand: no model, no OCR, no catalog."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import re
from dataclasses import dataclass

import pytest
from PySide6.QtCore import Qt

from tests.gui_fixtures import *

READ = ["ARLA", "Mellanmjölk 1,5 %", "färsk MJOIK", "Bäst före 2024-05-01"]
PRODUCT = {"product_id": "ARLA-MM-1L", "title": "Mellanmjölk 1,5% Färsk Mjölk 1 l", "brand": "Arla"}


def make_match(rank=1, *, data=PRODUCT, strength="same product", **evidence):
    from engine.scoring import Evidence
    from engine.search import Match

    ev = Evidence(**{"cosine": 0.71, **evidence})
    return Match(rank=rank, image_id=100 + rank, path=f"/photos/{rank}.jpg", score=0.42,
                 product=dict(data), strength=strength, evidence=ev)  # fmt: skip


def text_match(**extra):
    """A phone photo of the milk: looks alike, and four words read on it are in the product's
    text (one misread by the OCR: MJOIK for "mjölk")."""
    return make_match(
        learned=0.78, product=0.83, text=0.66, backdrop=0.01,
        words=[["mellanmjolk", "mellanmjolk"], ["1.5%", "1.5%"], ["mjoik", "mjolk"], ["arla", "arla"]],
        **extra,
    )  # fmt: skip


def marked(html: str) -> list[str]:
    """The words the panel shows in bold (the matched ones)."""
    return [re.sub(r"<[^>]+>", "", m) for m in re.findall(r"<b style='color:[^']+'>(.*?)</b>", html)]


@pytest.fixture
def panel(qtbot):
    from desktop.details_panel import DetailsPanel

    widget = DetailsPanel()
    qtbot.addWidget(widget)
    widget.resize(320, 700)
    widget.show()
    return widget


def test_details_mark_the_words_that_matched(panel):
    panel.set_read(READ)
    panel.show_match(text_match())
    html = panel.why.text()
    assert panel.why.isVisible()
    assert "Looks alike" in html and "0.71" in html and "0.83 to the product's photos" in html
    assert "4</b> read on the photo match the product (text match 0.66)" in html
    # the read lines, in order, the matched words in bold; the misread one with the product word
    assert marked(html) == ["ARLA", "Mellanmjölk", "1,5 %", "MJOIK → Mjölk"]
    assert "färsk" in html and "Bäst före 2024-05-01" in html
    assert html.index("ARLA") < html.index("Mellanmjölk") < html.index("MJOIK")
    # a phone photo, no verified geometry: neither a "same photo" nor a colour line
    assert "Lines up" not in html and "matching points" not in html and "Colours" not in html


def test_details_follow_the_selected_match_and_the_query(panel):
    panel.set_read(READ)
    other = make_match(2, data={"title": "Oatly Havredryck", "brand": "Oatly"}, text=0.0, words=[])
    panel.show_match(other)
    html = panel.why.text()
    assert marked(html) == [] and "none read on the photo is in the product's text" in html
    assert "Mellanmjölk 1,5 %" in html  # the read text is still shown, unmarked
    panel.show_match(text_match())
    assert marked(panel.why.text())[0] == "ARLA"
    panel.set_read([])  # a query on which nothing was read
    assert "Read" in panel.why.text() and marked(panel.why.text())  # the matched words alone
    panel.show_match(None)
    assert not panel.why.isVisible()


def test_geometry_line_only_when_verified(panel):
    copy = make_match(
        strength="likely copy", inliers=142, verified=True, aligned=0.96, unchanged=0.97,
        transform="mirrored", colour=0.9, backdrop=0.4,
    )  # fmt: skip
    panel.show_match(copy)
    html = panel.why.text()
    assert "Lines up" in html and "142</b> matching points, mirrored" in html
    assert "pixels agree (0.96)" in html
    assert "Colours" not in html  # said by the geometry line for a verified match

    # a phone photo of a printed pack: its print lines up, its pixels do not (another photo)
    phone = make_match(inliers=16, verified=True, aligned=0.5, unchanged=0.25, transform="turned")
    panel.show_match(phone)
    html = panel.why.text()
    assert "16</b> matching points, turned" in html and "pixels partly agree (0.50)" in html
    assert "pixels agree" not in html

    # compared, but too few points agree: another photo, no geometry line
    for ev in ({"inliers": 6, "verified": True}, {"inliers": 0, "verified": False},
               {"inliers": 200, "verified": False}):  # fmt: skip
        panel.show_match(make_match(**ev))
        assert "matching points" not in panel.why.text(), ev


def test_similarities_said_once(panel):
    """Without a learned metric the learned similarity is the cosine, and a product with one
    photo gives the same number again: each number is said once."""
    panel.show_match(make_match(cosine=0.712, learned=0.712, product=0.709))
    html = panel.why.text()
    assert "<b>0.71</b>" in html and "tuned" not in html and "product's photos" not in html
    panel.show_match(make_match(cosine=0.712, learned=0.712, product=0.8))
    assert "tuned" not in panel.why.text() and "0.80 to the product's photos" in panel.why.text()
    # a phone photo's centre view, when it says something new
    panel.show_match(make_match(cosine=0.712, centre=0.781))
    assert "0.78 by the photo's centre" in panel.why.text()
    panel.show_match(make_match(cosine=0.712, centre=0.709))
    assert "photo's centre" not in panel.why.text()


def test_colours_for_a_studio_photo(panel):
    panel.show_match(make_match(colour=0.85, backdrop=0.5))
    assert "Colours" in panel.why.text() and "agree (0.85)" in panel.why.text()
    panel.show_match(make_match(colour=0.2, backdrop=0.5))
    assert "differ (0.20)" in panel.why.text()
    panel.show_match(make_match(colour=0.85, backdrop=0.0))  # a phone photo: the scene's colours
    assert "Colours" not in panel.why.text()


def test_older_evidence_and_no_evidence(panel):
    """Results from before the text match (no learned/product/text/words) or without evidence
    show what they have."""
    from engine.search import Match

    @dataclass
    class OldEvidence:
        cosine: float
        inliers: int = 0
        colour: float = 0.0
        aligned: float = 0.0
        verified: bool = False

    panel.set_read(READ)
    old = Match(rank=1, image_id=1, path="/p/1.jpg", score=0.9, product=dict(PRODUCT),
                strength="likely copy", evidence=OldEvidence(0.93, 88, 0.8, 0.95, True))  # fmt: skip
    panel.show_match(old)
    html = panel.why.text()
    assert "0.93" in html and "88</b> matching points" in html and "pixels agree" in html
    assert "tuned" not in html and "product's photos" not in html
    assert "none read" not in html and marked(html) == []  # no text match was made
    bare = Match(rank=1, image_id=2, path="/p/2.jpg", score=0.5, product={}, evidence=None)
    panel.show_match(bare)
    assert not panel.why.isVisible() and panel.title.text() == "2.jpg"


def test_tooltip_names_the_matched_words(qtbot):
    from desktop.results_model import ResultsModel
    from desktop.thumbnails import ThumbnailLoader

    loader = ThumbnailLoader()
    model = ResultsModel(loader)
    plain = make_match(2, text=0.0, words=[])
    model.set_matches([text_match(), plain], read=READ)
    tip = model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)
    assert "Words on the photo that match: <b>Mellanmjölk, 1,5 %, MJOIK → Mjölk, ARLA</b>" in tip
    assert "Words" not in model.index(1, 0).data(Qt.ItemDataRole.ToolTipRole)
    model.remove_image_ids({plain.image_id})  # keeps the read text
    assert "MJOIK → Mjölk" in model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)
    model.set_matches([text_match()])  # no read text: the matched words as normalised
    assert "mellanmjolk, 1.5%, mjoik → Mjölk, arla" in model.index(0, 0).data(
        Qt.ItemDataRole.ToolTipRole
    )


def test_query_panel_shows_the_read_text(qtbot):
    from desktop.query_panel import QueryPanel
    from engine.search import QueryResult

    panel = QueryPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.read_label.isVisible()
    panel.show_read(QueryResult(query="milk.jpg", read=READ))
    assert panel.read_label.isVisible()
    assert panel.read_text() == "ARLA · Mellanmjölk 1,5 % · färsk MJOIK · Bäst före 2024-05-01"
    panel.show_read(QueryResult(query="box.jpg", read=["x" * 400]))
    assert len(panel.read_text()) == 300 and panel.read_text().endswith("…")
    panel.show_read(QueryResult(query="plain.jpg"))
    assert not panel.read_label.isVisible() and panel.read_text() == ""


def test_window_shows_why_for_a_result(qtbot, gui_settings):
    """Through the main window: a result arrives, the best match is selected, the details panel
    marks its words, the query panel shows the read text."""
    from types import SimpleNamespace

    from desktop.main_window import MainWindow
    from engine.search import QueryResult

    window = MainWindow(gui_settings, model_loader=lambda _catalog: None)
    qtbot.addWidget(window)
    window.show()
    result = QueryResult(query="milk.jpg", results=[text_match(), make_match(2, words=[])], read=READ)
    query = SimpleNamespace(name="milk.jpg", roi=None, path=None)
    window._show_result(query, result)
    window.query_panel.show_read(result)
    assert window.details.match is result.results[0]
    assert marked(window.details.why.text()) == ["ARLA", "Mellanmjölk", "1,5 %", "MJOIK → Mjölk"]
    assert "Mellanmjölk" in window.query_panel.read_text()
    window.results_view.step(1)
    assert window.details.match is result.results[1] and marked(window.details.why.text()) == []
    assert not window.grab().isNull()
    window._show_result(query, QueryResult(query="plain.jpg", results=[make_match(3)]))
    assert window.details.read == [] and "Read" not in window.details.why.text()
