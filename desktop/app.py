"""Application bootstrap: ``lookalike gui [--catalog DIR] [--query IMAGE] [--screenshot OUT.png] [IMAGE]``.

``main(argv)`` builds the QApplication and the main window, shows the window at once and loads
the model and the catalog in the background. With ``--screenshot`` it runs the query, waits until
the results and the visible thumbnails are on screen, saves the window to a PNG and exits
(0 on success; 1 with a one-line message on stderr if it cannot complete in ``--timeout``).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

_T0 = time.perf_counter()

log = logging.getLogger("desktop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike gui",
        description="Open the Lookalike desktop app: drop, paste or open a product photo to find its matches.",
    )
    parser.add_argument("image", nargs="*", type=Path, help="query image(s) to search at start-up")
    parser.add_argument("--catalog", help="catalog folder, milvus-lite:DIR or milvus://HOST:PORT/NAME "
                                          "(default: the last one used)")
    parser.add_argument(
        "--query", type=Path, action="append", default=[], help="query image to search at start-up"
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="OUT.png",
        help="save a screenshot once the results are shown, then exit",
    )
    parser.add_argument(
        "--size",
        default="1280x860",
        help="window size for --screenshot, WIDTHxHEIGHT (default 1280x860)",
    )
    parser.add_argument("--roi", help="region of interest for the query, X,Y,W,H in image pixels")
    parser.add_argument(
        "--select",
        type=int,
        default=1,
        metavar="N",
        help="with --screenshot: select result N (default 1)",
    )
    parser.add_argument(
        "--compare",
        choices=["side", "difference", "blink"],
        help="with --screenshot: show the compare view in this mode",
    )
    parser.add_argument("--min-score", type=float, help="minimum score filter (0-1)")
    parser.add_argument("--results", type=int, metavar="K", help="number of results")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for --screenshot (default 120)",
    )
    parser.add_argument(
        "--ready-probe", action="store_true", help=argparse.SUPPRESS
    )  # start-up benchmark
    return parser


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"lookalike gui: --size must look like 1280x860, not {text!r}") from None
    return max(w, 1280), max(h, 860)


def _parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    if not text:
        return None
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"lookalike gui: --roi must be X,Y,W,H, not {text!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise SystemExit("lookalike gui: --roi needs a positive width and height")
    return x, y, w, h


# --------------------------------------------------------------------------------------------
# interpreter settings for a responsive UI thread
SWITCH_INTERVAL_S = 0.001


def tune_interpreter(window: Any = None) -> None:
    """Settings that keep the UI thread responsive while worker threads run Python code.

    * A 1 ms GIL switch interval (default 5 ms): the UI thread releases the GIL around most Qt
      calls and, under contention, waits up to one interval to get it back; painting makes
      hundreds of such calls.
    * ``gc.freeze()`` once the model and the catalog are loaded: the long-lived objects of the
      engine and Qt leave the collector's view, so full collections (which hold the GIL, on
      whichever thread triggers them) stay short during imports.
    """
    import gc

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if window is not None:
        window.session.modelLoaded.connect(lambda _model: gc.freeze())


# --------------------------------------------------------------------------------------------
# logging and the last-resort exception hook
# --------------------------------------------------------------------------------------------
def log_file_path() -> Path:
    override = os.environ.get("LOOKALIKE_LOG_DIR")
    if override:
        return Path(override) / "lookalike-gui.log"
    from platformdirs import user_log_path

    return user_log_path("lookalike", appauthor=False) / "lookalike-gui.log"


def setup_logging() -> Path | None:
    root = logging.getLogger()
    if any(getattr(h, "_lookalike", False) for h in root.handlers):
        return None
    try:
        path = log_file_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=1_000_000, backupCount=2, encoding="utf-8"
        )
    except OSError:
        path, handler = None, logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._lookalike = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return path


def install_excepthook(show: Any, log_path: Path | None = None) -> None:
    """Log uncaught exceptions (UI thread and worker threads) and show a one-line message.

    ``show(text)`` is called on the UI thread (through a queued signal when the exception
    happened elsewhere); the app keeps running.
    """
    from PySide6.QtCore import QObject, Signal

    class _Relay(QObject):
        error = Signal(str)

    relay = _Relay()
    relay.error.connect(show)
    install_excepthook.relay = relay  # type: ignore[attr-defined]  # keep it alive
    where = f" (details in {log_path})" if log_path else ""

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        first = str(exc).splitlines()[0] if str(exc) else ""
        relay.error.emit(
            f"Unexpected error: {exc_type.__name__}{': ' + first if first else ''}{where}"
        )

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook


# --------------------------------------------------------------------------------------------
# screenshot driver
# --------------------------------------------------------------------------------------------
class ScreenshotDriver:
    """Polls the window until the query's results and visible thumbnails are shown, then grabs."""

    def __init__(
        self,
        window: Any,
        out: Path,
        *,
        timeout: float,
        roi=None,
        select: int = 1,
        compare: str | None = None,
    ):
        from PySide6.QtCore import QTimer

        self.window, self.out, self.timeout = window, out, timeout
        self.roi, self.select, self.compare = roi, select, compare
        self.started = time.monotonic()
        self.stage = "search"
        self.exit_code: int | None = None
        self.error: str | None = None
        self._settle_until = 0.0
        self._timer = QTimer()
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._poll)
        window.session.message.connect(self._on_message)

    def start(self) -> None:
        self._timer.start()

    def _on_message(self, level: str, text: str) -> None:
        if level == "error" and self.error is None:
            self.error = text

    def _finish(self, code: int, message: str | None = None) -> None:
        from PySide6.QtWidgets import QApplication

        self._timer.stop()
        self.exit_code = code
        if message:
            print(f"lookalike gui: {message}", file=sys.stderr)
        QApplication.instance().exit(code)

    def _poll(self) -> None:
        w = self.window
        s = w.session
        if time.monotonic() - self.started > self.timeout:
            why = self.error or f"still waiting for the {self.stage} step"
            self._finish(1, f"screenshot timed out after {self.timeout:.0f} s: {why}")
            return
        if s.model_error:
            self._finish(1, f"cannot take the screenshot: model not available: {s.model_error}")
            return
        if s.catalog_error and not s.catalog_loading:
            self._finish(1, f"cannot take the screenshot: {s.catalog_error}")
            return
        query = s.current
        if query is not None and query.error:
            self._finish(1, f"cannot take the screenshot: {query.error}")
            return
        if self.stage == "search":
            if query is None:
                if s.ready:  # no query given: the empty window with the catalog open
                    self.stage = "settle"
                    self._settle_until = time.monotonic() + 0.3
                return
            if self.roi is not None and query.image is not None and query.roi is None:
                w.query_panel.view.set_roi(self.roi, emit=True)
                return
            if not w.is_idle():
                return
            result = w.shown_result
            if (
                result is not None
                and getattr(result, "error", None)
                and not getattr(result, "results", None)
            ):
                self._finish(1, f"cannot take the screenshot: {result.error}")
                return
            if self.select and w.results_model.rowCount() >= self.select:
                index = w.results_model.index(self.select - 1, 0)
                w.results_view.setCurrentIndex(index)
                w.results_view.scrollTo(index)
            if self.compare and w.results_view.currentIndex().isValid():
                w.show_compare()
                w.compare_view.set_mode(self.compare)
                self.stage = "compare"
            else:
                self.stage = "thumbnails"
        elif self.stage == "compare":
            if not w.compare_view.loading and w.compare_view.pair is not None:
                self.stage = "thumbnails"
        elif self.stage == "thumbnails":
            if w.visible_thumbnails_settled():
                self.stage = "settle"
                self._settle_until = time.monotonic() + 0.3
        elif self.stage == "settle" and time.monotonic() >= self._settle_until:
            self._save()

    def _save(self) -> None:
        w = self.window
        if w.compare_view.isVisible():
            w.compare_view.fit()
        w.repaint()
        image = w.grab().toImage()
        if image.isNull() or image.width() < 100:
            self._finish(1, "cannot take the screenshot: the window could not be drawn")
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        fmt = "JPG" if self.out.suffix.lower() in (".jpg", ".jpeg") else "PNG"
        if not image.save(str(self.out), fmt, 90 if fmt == "JPG" else -1):
            self._finish(1, f"{self.out}: cannot write the screenshot")
            return
        print(f"saved {self.out} ({image.width()}x{image.height()})")
        self._finish(0)


# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = _parse_size(args.size)
    roi = _parse_roi(args.roi)
    queries = [*args.query, *args.image]
    if args.screenshot and not queries:
        print("lookalike gui: --screenshot needs a query image (--query IMAGE)", file=sys.stderr)
        return 2
    for path in queries:
        if not path.is_file():
            print(f"lookalike gui: {path}: no such file", file=sys.stderr)
            return 2
    if args.catalog is not None and not args.catalog.startswith("milvus"):
        args.catalog = Path(args.catalog)
        if args.catalog.exists() and not args.catalog.is_dir():
            print(f"lookalike gui: {args.catalog}: not a folder", file=sys.stderr)
            return 2

    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from . import resources
    from .main_window import MainWindow
    from .settings import APPLICATION, ORGANIZATION, Settings

    log_path = setup_logging()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "lookalike"])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Lookalike")
    QGuiApplication.setDesktopFileName("lookalike")
    app.setWindowIcon(resources.app_icon())

    headless = bool(args.screenshot) or args.ready_probe
    window = MainWindow(Settings(), persist=not headless)
    tune_interpreter(window)
    install_excepthook(window.banner.error, log_path)
    from .compat import none_refcount_defect

    defect = none_refcount_defect()
    if defect:
        log.error(defect)
        print(f"lookalike gui: warning: {defect}", file=sys.stderr)
        window.banner.error(defect)
    if headless:
        window.resize(*size)
    else:
        window.restore_state()
        window.setMinimumSize(800, 560)
    if args.min_score is not None or args.results is not None:
        window.filters.set_values(k=args.results, min_score=args.min_score)
        window.session.options = window.session.options.__class__(**window.filters.options())
    window.show()

    driver = None
    if args.screenshot:
        driver = ScreenshotDriver(
            window,
            args.screenshot,
            timeout=args.timeout,
            roi=roi,
            select=args.select,
            compare=args.compare,
        )
    elif roi is not None:

        def apply_roi() -> None:
            query = window.session.current
            if query is not None and query.image is not None:
                window.query_panel.view.set_roi(roi, emit=True)
            elif query is not None and not query.error:
                QTimer.singleShot(100, apply_roi)

        QTimer.singleShot(100, apply_roi)

    if args.ready_probe:  # start-up benchmark: report when the event loop first runs, then quit

        def ready() -> None:
            print(f"window ready after {time.perf_counter() - _T0:.3f} s (in-process)", flush=True)
            print("READY", flush=True)
            app.quit()

        QTimer.singleShot(0, ready)
        app.exec()
        window.close()
        return 0

    # start after the first paint so the window shows before any engine work is scheduled
    QTimer.singleShot(0, lambda: window.start(catalog=args.catalog, queries=queries))
    if driver is not None:
        driver.start()
    code = app.exec()
    window.close()
    if driver is not None and driver.exit_code is None:
        return 1
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
