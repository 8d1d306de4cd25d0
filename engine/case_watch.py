"""Watch a case's folders: images dropped into them are checked as they arrive.

The folders are watched with watchdog (inotify, FSEvents or ReadDirectoryChanges; polling where
none works). An image is checked once it has stopped changing for ``settle_seconds`` (a browser
or a copy still writing it would otherwise be read half-written), then again whenever it
changes; engine.case_check skips a file already checked with the same bytes, so a touch or a
rename costs no search.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

from .case_check import check_offers, read_offers
from .case_store import OfferRecord
from .errors import LookalikeError
from .imaging import is_image_path


class _Arrivals:
    """Image paths touched under the watched folders, with when they last changed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def touch(self, path: str) -> None:
        if is_image_path(path):
            with self._lock:
                self._seen[os.path.abspath(path)] = time.monotonic()

    def settled(self, settle_seconds: float) -> list[str]:
        """The paths unchanged for ``settle_seconds`` (taken out), in the order they arrived."""
        now = time.monotonic()
        with self._lock:
            ready = [p for p, t in self._seen.items() if now - t >= settle_seconds]
            for p in ready:
                del self._seen[p]
        return ready


def _handler(arrivals: _Arrivals):
    from watchdog.events import FileSystemEventHandler

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
                return
            arrivals.touch(getattr(event, "dest_path", "") or event.src_path)

    return Handler()


def watch_case(catalog, model, case: str, folders: Sequence[str | os.PathLike], *, cancel,
               on_checked: Callable[[OfferRecord], None] | None = None,
               on_problem: Callable[[str, str], None] | None = None,
               poll_seconds: float = 0.5, settle_seconds: float = 1.0, edits: bool = True) -> int:
    """Check the images that appear or change under ``folders`` into ``case`` until ``cancel``
    is set; returns how many offers were checked. Once the folders are watched, the images
    already in them that the case lacks (or holds with other bytes) are checked first, so an
    image that arrived before the watch began is not missed. ``on_problem(path, reason)``
    hears of files that fail."""
    from watchdog.observers import Observer

    roots = [os.path.abspath(os.path.expanduser(os.fspath(f))) for f in folders]
    for root in roots:
        if not os.path.isdir(root):
            raise LookalikeError(f"{root}: not a folder; only folders can be watched")
    catalog.case_store.create(case, roots)
    arrivals = _Arrivals()
    observer = Observer()
    for root in roots:
        observer.schedule(_handler(arrivals), root, recursive=True)
    observer.start()
    checked = 0

    def check(paths: list[str]) -> None:
        nonlocal checked
        offers, problems = read_offers(paths)
        for path, reason in problems:
            if on_problem is not None:
                on_problem(path, reason)
        report = check_offers(catalog, model, case, offers, cancel=cancel, edits=edits, on_checked=on_checked)
        checked += len(report.checked)
        if on_problem is not None:
            for r in report.failed:
                on_problem(r.image_path, r.error)

    try:
        check(roots)                   # what arrived before the observer ran (the unchanged are skipped)
        while not cancel.is_set():
            ready = [p for p in arrivals.settled(settle_seconds) if os.path.isfile(p)]
            if ready:
                check(ready)
            cancel.wait(poll_seconds)
    finally:
        observer.stop()
        observer.join(timeout=5)
    return checked
