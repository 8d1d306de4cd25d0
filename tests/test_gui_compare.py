"""Desktop app: the compare view (linked zoom/pan, swap, mirror, difference, blink) and the
alignment of an edited copy onto the query."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests.gui_fixtures import *
from tests.gui_fixtures import WAIT_MS, drop_files, wait_idle


def edited_copy(src: Path, out: Path) -> Path:
    """A rotated, cropped copy with a text overlay: what a copycat listing looks like."""
    rgb = np.asarray(Image.open(src).convert("RGB"))
    h, w = rgb.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 8, 1.0)
    rotated = cv2.warpAffine(rgb, M, (w, h), borderValue=(255, 255, 255))
    crop = np.ascontiguousarray(rotated[60 : h - 90, 40 : w - 50])
    cv2.putText(crop, "SALE -50%", (60, 140), cv2.FONT_HERSHEY_SIMPLEX, 3.0, (220, 20, 20), 9)
    Image.fromarray(crop).save(out, quality=88)
    return out


def same_image(a, b) -> bool:
    from PySide6.QtGui import QImage

    fmt = QImage.Format.Format_RGB32
    return a.convertToFormat(fmt) == b.convertToFormat(fmt)


def wait_pair(qtbot, window):
    qtbot.waitUntil(
        lambda: not window.compare_view.loading and window.compare_view.pair is not None,
        timeout=WAIT_MS,
    )
    return window.compare_view.pair


def test_compare_view_opens_for_the_selected_result(qtbot, window, catalog_images, tmp_path):
    original = catalog_images[14]
    query = edited_copy(original, tmp_path / "copycat.jpg")
    drop_files(window, [query])
    wait_idle(qtbot, window)
    top = window.results_model.matches()[0]
    assert Path(top.path) == original  # the edited copy still finds its source

    window.act_compare.trigger()
    assert window.stack.currentWidget() is window.compare_view
    pair = wait_pair(qtbot, window)
    view = window.compare_view
    # the match is put into the query's frame: same size, registered on features
    assert pair.query.size() == pair.match.size() == pair.difference.size()
    assert "aligned on" in pair.description, pair.description
    assert view.left.item.pixmap().size() == pair.query.size()
    assert "Query: copycat.jpg" == view.left_caption.text()
    assert view.right_caption.text().startswith("Match: #1")

    # a registered copy differs little, except where the text was added
    from engine.alignment import align, difference
    from engine.imaging import load_image

    aligned = align(load_image(query), load_image(original))
    diff = difference(aligned)
    assert aligned.method == "features"
    assert diff.changed_fraction < 0.15
    text_box = diff.image[
        aligned.query.shape[0] * 60 // 1000 : aligned.query.shape[0] * 160 // 1000
    ]
    assert text_box.mean() > diff.image.mean()  # the overlay stands out in the difference image

    # linked zoom and pan
    view.zoom(2.0)
    assert view.left.transform().m11() == view.right.transform().m11() == view.zoom_factor()
    view.left.horizontalScrollBar().setValue(view.left.horizontalScrollBar().maximum() // 2)
    view.left.verticalScrollBar().setValue(37)
    assert view.right.horizontalScrollBar().value() == view.left.horizontalScrollBar().value()
    assert view.right.verticalScrollBar().value() == 37
    view.fit()
    assert view.left.transform().m11() == view.right.transform().m11()

    # swap puts the match on the left
    view.swap_button.setChecked(True)
    assert view.left_caption.text().startswith("Match")
    assert same_image(view.left.item.pixmap().toImage(), pair.match)
    assert same_image(view.right.item.pixmap().toImage(), pair.query)
    view.swap_button.setChecked(False)

    # difference mode shows the difference image on the right
    view.set_mode("difference")
    assert view.right_caption.text().startswith("Difference")
    assert view.right.item.pixmap().size() == pair.difference.size()

    # blink alternates match and query in the right view
    view.set_mode("blink")
    first = view.right.item.pixmap().toImage()
    qtbot.waitUntil(lambda: view.right.item.pixmap().toImage() != first, timeout=3000)
    assert view.right_caption.text().startswith("Blink")

    # stepping to the next result while comparing compares that one
    view.set_mode("side")
    window.act_next.trigger()
    qtbot.waitUntil(lambda: view.match is not None and view.match.rank == 2, timeout=WAIT_MS)
    wait_pair(qtbot, window)
    assert view.right_caption.text().startswith("Match: #2")
    window.act_compare.trigger()  # C again: back to the grid
    assert window.stack.currentIndex() == 0


def test_mirror_and_plain_resize(qtbot, window, catalog_images, tmp_path):
    original = catalog_images[22]
    mirrored = tmp_path / "mirrored.png"
    Image.open(original).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    drop_files(window, [mirrored])
    wait_idle(qtbot, window)
    index = next(
        i for i, m in enumerate(window.results_model.matches()) if Path(m.path) == original
    )
    match = window.results_model.matches()[index]
    assert match.evidence.transform == "mirrored"  # search found it through the mirrored query
    window.results_view.setCurrentIndex(window.results_model.index(index, 0))
    assert window.show_compare()
    view = window.compare_view
    assert view.mirror_button.isChecked()  # ... so the compare view starts mirrored
    view.align_box.setChecked(False)
    pair = wait_pair(qtbot, window)
    assert "resized" in pair.description
    flipped = float(pair.description.split("; ")[1].split("%")[0])
    view.mirror_button.setChecked(False)  # unflipped, the two differ
    qtbot.waitUntil(lambda: not view.loading and view.pair is not pair, timeout=WAIT_MS)
    unflipped = float(view.pair.description.split("; ")[1].split("%")[0])
    assert flipped < 1.0 < unflipped
    # another result, matched plainly, starts unmirrored
    other = next(i for i, m in enumerate(window.results_model.matches()) if m.evidence.transform == "")
    window.results_view.setCurrentIndex(window.results_model.index(other, 0))
    assert window.show_compare()
    assert not view.mirror_button.isChecked()


def test_compare_reports_an_unreadable_match(qtbot, window, catalog_images):
    from engine.search import Match

    drop_files(window, [catalog_images[2]])
    wait_idle(qtbot, window)
    ghost = Match(
        rank=1, image_id=999999, path=str(catalog_images[2].parent / "vanished.jpg"), score=0.9
    )
    window.compare_view.show_pair(window.session.current, ghost)
    qtbot.waitUntil(lambda: not window.compare_view.loading, timeout=WAIT_MS)
    assert window.compare_view.info.text().startswith("Cannot compare:")
    assert "vanished.jpg" in window.banner.text()
