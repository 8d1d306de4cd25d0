"""The Session's part for the Cases window (desktop.cases_view): case checks and folder watches
on the session's case pool, and decisions written like the duplicate decisions. A mixin of
:class:`desktop.session.Session`, which owns ``case_pool`` and ``_case_tasks``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .workers import Task


class CaseJobs:
    """Case jobs of a Session."""

    def decide_case_offer(
        self,
        case: str,
        number: int,
        decision: str | None,
        note: str | None,
        *,
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None],
    ) -> None:
        """Record a decision on a case's offer (``engine.case_store.CaseStore.decide``), off the
        UI thread like the duplicate decisions; ``on_done`` gets the stored record."""
        from .case_jobs import decide_job

        self._write_catalog(decide_job, case, int(number), decision, note, on_done=on_done, on_error=on_error)

    def start_case_job(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None],
        on_cancelled: Callable[[], None],
        on_progress: Callable[[int, int, str], None] | None = None,
        on_note: Callable[[Any], None] | None = None,
        **kwargs: Any,
    ) -> Task | None:
        """Run ``fn(catalog, model, *args, cancel=..., **kwargs)`` (a case check or watch) on the
        case pool; it is cancelled when the catalog changes or the app closes, and the catalog
        is closed only after it has stopped. None (and ``on_error``) when it cannot start."""
        catalog = self.catalog
        if catalog is None or not self.ready:
            why = "no catalog is open" if catalog is None else "the model is not loaded yet"
            on_error(why if self.model_error is None else f"no model: {self.model_error}")
            return None
        if self.importing:   # the import holds the write lock: every offer would wait for it
            from .session import IMPORT_BUSY

            on_error(IMPORT_BUSY)
            return None
        ended = threading.Event()

        def job(*a: Any, **kw: Any) -> Any:  # case pool
            try:
                return fn(*a, **kw)
            finally:
                ended.set()

        task = Task(job, catalog, self.model, *args, wants_progress=on_progress is not None,
                    wants_notes=on_note is not None, cancellable=True, **kwargs)
        self._case_tasks[task] = (catalog, ended)

        def finish(callback: Callable[..., None]) -> Callable[..., None]:
            def call(*a: Any) -> None:
                self._case_tasks.pop(task, None)
                callback(*a)

            return call

        self.runner.start(self.case_pool, task, on_done=finish(on_done), on_error=finish(on_error),
                          on_cancelled=finish(on_cancelled), on_progress=on_progress, on_note=on_note)
        return task

    def cancel_case_jobs(self, catalog: Any = None) -> list[threading.Event]:
        """Cancel the case jobs on ``catalog`` (None: all); returns events set when each has ended."""
        ended = []
        for task, (on, event) in list(self._case_tasks.items()):
            if catalog is None or on is catalog:
                task.cancel()
                ended.append(event)
        return ended
