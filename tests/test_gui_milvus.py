"""The desktop opens catalogs whose vectors live in Milvus: ``milvus-lite:DIR`` at start-up, a
server catalog from Catalog > Open Milvus catalog (engine.milvus_store)."""

from __future__ import annotations

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("PySide6")

from tests.gui_fixtures import *  # noqa: F401,F403
from tests.gui_fixtures import WAIT_MS


def test_a_milvus_lite_catalog_opens_searches_and_is_remembered(qtbot, make_window, small_luma_catalog,
                                                               catalog_copy, luma_images):
    from cli.main import main

    folder = catalog_copy(small_luma_catalog)
    assert main(["vectors", "--catalog", str(folder), "--to", "milvus-lite"]) == 0
    window = make_window(f"milvus-lite:{folder}")
    catalog = window.session.catalog
    assert catalog.directory == folder and catalog.meta("vector_store") == "milvus-lite"
    window.add_paths([luma_images[::18][2]])
    qtbot.waitUntil(lambda: window.session.current is not None and window.session.current.result is not None,
                    timeout=WAIT_MS)
    assert window.session.current.result.results[0].path == str(luma_images[::18][2])


def test_a_server_catalog_is_opened_from_its_uri(qtbot, make_window, gui_catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    window = make_window(gui_catalog)
    with qtbot.waitSignal(window.session.catalogOpened, timeout=WAIT_MS):
        window.choose_milvus_catalog("milvus://127.0.0.1:9/team")
    catalog = window.session.catalog
    assert catalog.directory.name == "127.0.0.1-9-team" and str(tmp_path) in str(catalog.directory)
    assert catalog.meta("vector_store") == "milvus://127.0.0.1:9/team"
