"""The main window's tool windows on the open catalog (the Duplicates view, the Cases window):
each one is made on first use, shown again while the catalog stays open, and closed (its scan,
check or watch cancelled) when the catalog changes or the main window closes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QWidget


def show(main: Any, attr: str, make: Callable[..., QWidget], title: str, size: QSize) -> QWidget | None:
    """The tool window ``main.<attr>`` on the open catalog, made with ``make(session, main)``
    when there is none for it yet, shown and raised; None (and a hint) without a catalog."""
    catalog = main.session.catalog
    if catalog is None:
        main.banner.info("Open a catalog first.")
        return None
    window = getattr(main, attr)
    if window is None or getattr(window, "catalog", None) is not catalog:
        close(main, attr)
        window = make(main.session, main)  # its jobs go through the session
        window.setWindowFlag(Qt.WindowType.Window)
        window.setWindowTitle(f"{title} — {Path(catalog.directory).name}")
        window.resize(size)
        window.message.connect(lambda text: main.status.showMessage(text, 8000))
        setattr(main, attr, window)
    window.show()
    window.raise_()
    window.activateWindow()
    return window


def close(main: Any, attr: str) -> None:
    window = getattr(main, attr)
    if window is not None:
        window.close()  # cancels its jobs
        window.deleteLater()
        setattr(main, attr, None)


def run_alone(make: Callable[[Any], QWidget], *, prog: str, title: str, size: tuple[int, int],
              argv: list[str] | None = None) -> int:
    """Run one tool window on its own (``python -m desktop.cases_view --catalog DIR``): open the
    catalog through a Session, show ``make(session)``, run the event loop."""
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from engine.paths import default_catalog_dir

    from .session import Session

    ap = argparse.ArgumentParser(prog=prog, description=f"The {title} window on its own.")
    ap.add_argument("--catalog", metavar="DIR", default=None)
    args, qt_args = ap.parse_known_args(argv)
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    session = Session()
    outcome: list[str | None] = []
    loop = QEventLoop()
    session.catalogOpened.connect(lambda _info: (outcome.append(None), loop.quit()))
    session.catalogFailed.connect(lambda message: (outcome.append(message), loop.quit()))
    session.open_catalog(Path(args.catalog) if args.catalog else default_catalog_dir(), create=False)
    loop.exec()
    if outcome[0] is not None:
        print(f"lookalike: error: {outcome[0]}", file=sys.stderr)
        session.shutdown()
        return 2
    view = make(session)
    view.setWindowTitle(f"{title} — {view.catalog.directory}")
    view.resize(*size)
    view.show()
    code = app.exec()
    session.shutdown()
    return code
