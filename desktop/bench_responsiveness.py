"""How responsive the desktop app stays while it imports: the event loop's longest stall.

    python -m desktop.bench_responsiveness [--catalog DIR] PATH [PATH ...]

Opens the real main window (offscreen unless a display is set), imports PATH (a folder of
photos or a product feed) into the catalog through the app's own import path, and records the
gaps between 10 ms timer ticks on the UI thread (:mod:`desktop.latency`). With ``--query IMAGE``
it also runs a search every ``--query-every`` seconds during the import, as a user working
meanwhile would. It then measures the start-up time to a usable window in a fresh process.
Without ``--catalog`` the import goes into a temporary catalog that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure_startup(runs: int = 3) -> list[float]:
    """Seconds from launching ``python -m desktop.app`` to its window being shown and its event
    loop running (the process prints READY then), best of ``runs`` fresh processes."""
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    times = []
    with tempfile.TemporaryDirectory() as config:
        env["XDG_CONFIG_HOME"] = config
        env["LOOKALIKE_LOG_DIR"] = config
        for _ in range(runs):
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "desktop.app", "--ready-probe"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.strip() == "READY":
                    times.append(time.perf_counter() - started)
                    break
            proc.wait(timeout=60)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m desktop.bench_responsiveness", description=__doc__.splitlines()[0]
    )
    parser.add_argument("paths", nargs="+", type=Path, help="folder(s) or feed(s) to import")
    parser.add_argument("--catalog", type=Path, help="catalog folder (default: a temporary one)")
    parser.add_argument("--query", type=Path, help="also search with this image during the import")
    parser.add_argument(
        "--query-every", type=float, default=2.0, help="seconds between searches (default 2)"
    )
    parser.add_argument(
        "--diagnose", action="store_true", help="print what every thread ran during stalls"
    )
    parser.add_argument(
        "--startup-runs",
        type=int,
        default=3,
        help="fresh processes for the start-up time (0: skip)",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from .app import tune_interpreter
    from .latency import LatencyProbe, StallWatchdog
    from .main_window import MainWindow
    from .settings import Settings

    temp = tempfile.mkdtemp(prefix="lookalike-bench-")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, temp)
    catalog = args.catalog or Path(temp) / "catalog"
    app = QApplication.instance() or QApplication([sys.argv[0]])
    window = MainWindow(Settings(), persist=False)
    tune_interpreter(window)  # as `lookalike gui` does
    window.show()
    window.start(catalog=catalog)

    deadline = time.monotonic() + 120
    while not window.session.ready:
        if (
            window.session.model_error
            or window.session.catalog_error
            or time.monotonic() > deadline
        ):
            print(
                f"cannot start: {window.session.model_error or window.session.catalog_error or 'timeout'}",
                file=sys.stderr,
            )
            return 1
        app.processEvents()
        time.sleep(0.01)
    existing = window.session.catalog_info.images if window.session.catalog_info else 0
    if existing:
        print(
            f"note: the catalog already holds {existing} images; unchanged files are skipped quickly"
        )

    probe = LatencyProbe()
    dog = StallWatchdog() if args.diagnose else None
    outcome: dict = {}
    searches = 0

    def search_again() -> None:
        nonlocal searches
        if window.session.importing and args.query is not None:
            if window.session.current is None:
                window.open_images([str(args.query)])
            else:
                window.session.search_current(force=True)
            searches += 1

    ticker = QTimer()
    ticker.timeout.connect(search_again)

    def finished(report) -> None:
        outcome["summary"] = probe.stop()
        outcome["report"] = report
        ticker.stop()
        QTimer.singleShot(200, app.quit)

    def failed(message: str) -> None:
        outcome["error"] = message
        probe.stop()
        app.quit()

    window.session.importFinished.connect(finished)
    window.session.importFailed.connect(failed)
    probe.start()
    if dog is not None:
        dog.start()
    if not window.start_import(args.paths):
        print("cannot start the import (see the message above)", file=sys.stderr)
        return 1
    if args.query is not None:
        ticker.start(int(args.query_every * 1000))
    app.exec()
    if dog is not None:
        dog.stop()
    window.close()
    if args.catalog is None:
        shutil.rmtree(temp, ignore_errors=True)
    if "error" in outcome:
        print(f"import failed: {outcome['error']}", file=sys.stderr)
        return 1

    report, summary = outcome["report"], outcome["summary"]
    print(f"import: {report.summary()}")
    if args.query is not None:
        print(f"searches during the import: {searches}")
    print(f"UI event loop during the import: {summary}")
    if dog is not None:
        print("where the threads were during stalls (samples every 10 ms):")
        print(dog.report())
    if args.startup_runs > 0:
        times = measure_startup(args.startup_runs)
        if times:
            print(
                f"start-up to a usable window: best {min(times):.2f} s, worst {max(times):.2f} s over {len(times)} runs"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
