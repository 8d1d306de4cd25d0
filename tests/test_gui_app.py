"""Desktop app: the `lookalike gui` entry point (screenshot mode), settings that persist, the
event-loop latency probe."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QTimer

from tests.gui_fixtures import *
from tests.gui_fixtures import WAIT_MS, drop_files, wait_idle

ROOT = Path(__file__).resolve().parent.parent


def run_gui(args: list[str], tmp_path: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               LOOKALIKE_LOG_DIR=str(tmp_path / "logs"), PYTHONPATH=str(ROOT))  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "cli", "gui", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_qt_binding_is_sound():
    from desktop.compat import none_refcount_defect

    assert none_refcount_defect() is None


def test_screenshot_command_saves_the_window_with_results(tmp_path, gui_catalog, catalog_images):
    out = tmp_path / "shot.png"
    proc = run_gui(
        [
            "--catalog",
            str(gui_catalog),
            "--query",
            str(catalog_images[3]),
            "--screenshot",
            str(out),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    image = np.asarray(Image.open(out).convert("RGB"))
    h, w = image.shape[:2]
    assert w >= 1280 and h >= 860
    assert image.std() > 30  # not blank: photos, text, frames
    # the results grid (centre of the window) holds photos: many distinct colours
    centre = image[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3].reshape(-1, 3)
    assert len(np.unique(centre // 8, axis=0)) > 500


def test_screenshot_command_fails_cleanly(tmp_path, gui_catalog):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 100)
    proc = run_gui(
        [
            "--catalog",
            str(gui_catalog),
            "--query",
            str(bad),
            "--screenshot",
            str(tmp_path / "x.png"),
            "--timeout",
            "60",
        ],
        tmp_path,
    )
    assert proc.returncode == 1
    lines = [l for l in proc.stderr.splitlines() if l.startswith("lookalike gui:")]
    assert len(lines) == 1 and "bad.jpg" in lines[0], proc.stderr
    assert not (tmp_path / "x.png").exists()

    proc = run_gui(
        ["--screenshot", str(tmp_path / "y.png"), "--query", str(tmp_path / "missing.jpg")],
        tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2 and "missing.jpg: no such file" in proc.stderr


def test_settings_and_window_state_persist(qtbot, make_window, gui_catalog, gui_settings):
    window = make_window(gui_catalog)
    window.resize(1400, 900)
    window.filters.count.setValue(25)
    window.filters.set_min_score(0.42)
    window.filters.flush()
    window.main_splitter.setSizes([300, 800, 300])
    splitter_state = window.main_splitter.saveState()
    geometry = window.saveGeometry()
    window.close()

    from desktop.main_window import MainWindow
    from desktop.settings import Settings

    stored = Settings()
    assert stored.window_blob("geometry") == geometry
    assert stored.window_blob("main_splitter") == splitter_state
    again = MainWindow(stored)
    qtbot.addWidget(again)
    again.restore_state()  # (the offscreen screen is 800x800, so Qt clamps the restored size)
    again.show()
    assert again.filters.count.value() == 25
    assert again.filters.options()["min_score"] == pytest.approx(0.42)
    assert again.session.options.k == 25 and again.session.options.min_score == pytest.approx(0.42)
    assert stored.last_catalog() == str(gui_catalog)
    assert str(gui_catalog) in [a.text() for a in again.recent_menu.actions()]
    again.close()


def test_latency_probe_measures_stalls(qtbot):
    """The benchmarks' probe turns late timer ticks into stalls (a fake clock: no timing here)."""
    from desktop.latency import LatencyProbe

    now = [0.0]
    probe = LatencyProbe(interval_ms=10, clock=lambda: now[0])
    probe.start()
    for step in [0.010] * 5 + [0.130] + [0.012] * 4:  # one tick 120 ms late, one 2 ms late
        now[0] += step
        probe._tick()
    summary = probe.stop()
    assert summary.ticks == 11
    assert summary.max_stall_ms == pytest.approx(120.0)
    assert summary.stalls_over_50ms == 1
    assert summary.seconds == pytest.approx(0.228)
    assert "max stall 120.0 ms" in str(summary)


def test_searching_keeps_the_ui_responsive(qtbot, window, catalog_images, monkeypatch):
    """Decoding and searching run on worker threads, and the UI thread keeps running its event
    loop (a timer fires) while a search is under way. How long the UI thread stalls is measured
    by ``python -m desktop.bench_responsiveness``, not here."""
    from desktop import workers

    ui = threading.get_ident()
    searching, ticked_while_searching = threading.Event(), threading.Event()
    threads: dict[str, int] = {}
    real_search, real_decode = workers.search_job, workers.decode_query_file_job

    def search_job(*args, **kwargs):
        threads.setdefault("search", threading.get_ident())
        searching.set()
        try:
            ticked_while_searching.wait(10)  # a blocked UI thread could never set it
            return real_search(*args, **kwargs)
        finally:
            searching.clear()

    def decode_job(*args, **kwargs):
        threads.setdefault("decode", threading.get_ident())
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(workers, "search_job", search_job)
    monkeypatch.setattr(workers, "decode_query_file_job", decode_job)
    timer = QTimer()
    timer.timeout.connect(lambda: searching.is_set() and ticked_while_searching.set())
    timer.start(5)
    drop_files(window, catalog_images[:3])
    wait_idle(qtbot, window)
    qtbot.waitUntil(window.visible_thumbnails_settled, timeout=WAIT_MS)
    timer.stop()
    assert ticked_while_searching.is_set()
    assert threads["search"] != ui and threads["decode"] != ui
    assert window.results_model.rowCount() > 0


def test_tab_order_follows_the_layout(qtbot, window):
    order = []
    widget = window.query_panel.view
    for _ in range(2000):
        order.append(widget)
        widget = widget.nextInFocusChain()
        if widget is window.query_panel.view:
            break
    position = {w: i for i, w in enumerate(order)}
    chain = [
        window.query_panel.view,
        window.query_panel.history,
        window.filters.category,
        window.filters.min_score,
        window.filters.count,
        window.results_view,
        window.details.compare_button,
    ]
    assert all(w in position for w in chain)
    assert [position[w] for w in chain] == sorted(position[w] for w in chain)
