"""The Duplicates view's "Include declared variants" checkbox (pytest-qt, offscreen)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from desktop.duplicates_model import member_details  # noqa: E402
from desktop.duplicates_view import DuplicatesView  # noqa: E402
from engine import scoring  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from tests.gui_fixtures import open_session  # noqa: E402
from tests.synthetic_vectors import near, unit  # noqa: E402

DIM = 64


@pytest.fixture
def variants_catalog(tmp_path):
    """20 distinct images (real files, synthetic embeddings); image 21 (jacket green) is a
    recoloured copy of image 1 (jacket blue), both declared variants of item group J; image 22 is
    a bare copy of image 2."""
    rng = np.random.default_rng(5)
    base = unit(rng.standard_normal((20, DIM)))

    vecs = list(base) + [near(rng, base[0], 0.97), near(rng, base[1], 0.96)]
    pids = ["J-blue"] + [None] * 19 + ["J-green", None]
    rows = []
    for i, (v, pid) in enumerate(zip(vecs, pids)):
        path = tmp_path / "img" / f"{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), np.full((80, 60, 3), (i * 11 % 255, 120, 40), np.uint8))
        rows.append({"path": str(path), "content_hash": f"{i:032x}", "file_size": 1, "mtime": 0.0,
                     "width": 60, "height": 80, "product_id": pid, "model_id": "synthetic",
                     "embedding": v, "labels": []})
    folder = tmp_path / "catalog"
    with Catalog.open(folder) as cat:
        cat.upsert_products([{"id": "J-blue", "title": "Jacket", "group_id": "J", "extra": {"color": "blue"}},
                             {"id": "J-green", "title": "Jacket", "group_id": "J", "extra": {"color": "green"}}])
        cat.put_images(rows)
    return folder


def _scan(qtbot, view):
    with qtbot.waitSignal(view.scanFinished, timeout=20000) as blocker:
        view.scan_button.click()
    return blocker.args[0]


def test_include_declared_variants_checkbox(qtbot, variants_catalog, monkeypatch):
    session = open_session(qtbot, variants_catalog)
    view = DuplicatesView(session)
    qtbot.addWidget(view)
    view.show()
    monkeypatch.setattr(view, "threshold", lambda: float(scoring.embedding_score(0.9)))
    assert not view.variants_box.isChecked() and view.variants_box.isEnabled()

    result = _scan(qtbot, view)
    assert [set(g.image_ids) for g in result.groups] == [{2, 22}]
    assert view.groups_model.rowCount() == 1
    assert "1 pairs between declared variants not reported" in view.status.text()

    view.variants_box.setChecked(True)
    result = _scan(qtbot, view)
    assert result.include_variants
    assert sorted(sorted(g.image_ids) for g in result.groups) == [[1, 21], [2, 22]]
    assert view.groups_model.rowCount() == 2
    assert "1 between declared variants included" in view.status.text()
    jacket = next(g for g in result.groups if 21 in g.image_ids)
    details = member_details(next(m for m in [jacket.representative, *jacket.members] if m.image_id == 21))
    assert "variant of J · green" in details
    view.shutdown()
    session.shutdown()
