"""Worker jobs of the Cases window (desktop.cases_view): reading a case, checking offers into it,
watching folders for new offers, recording decisions. They run on the session's pools as
:class:`desktop.workers.Task` jobs and import the engine lazily.
"""

from __future__ import annotations

import threading
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class CaseState:
    """What the window shows of one case."""

    name: str
    summary: Any  # engine.case_store.CaseSummary
    offers: list  # engine.case_store.OfferRecord, strongest first


@dataclass
class WatchProblem:
    """A file the watch could not check (sent with the watch's records)."""

    source: str
    reason: str


def case_names_job(catalog: Any) -> list[str]:
    return catalog.case_store.names()


def load_case_job(catalog: Any, name: str) -> CaseState:
    store = catalog.case_store
    return CaseState(name, store.summary(name), store.offers(name))


def create_case_job(catalog: Any, name: str) -> str:
    from engine.case_store import check_name

    name = check_name(name)
    catalog.case_store.create(name)
    return name


def check_case_job(
    catalog: Any,
    model: Any,
    case: str,
    paths: Sequence[str],
    *,
    progress: Callable[[int, int, str], None],
    cancel: threading.Event,
    note: Callable[[Any], None],
) -> Any:
    """Read the offers named by ``paths`` (folders, images, offers CSVs) and check the new ones
    into ``case``; ``note(record)`` for each offer as it is stored. Returns the CheckReport, with
    the problems of reading the offers first."""
    from engine.case_check import check_offers, read_offers

    offers, problems = read_offers(paths)
    report = check_offers(
        catalog, model, case, offers, progress=progress, cancel=cancel, on_checked=note,
        sources=[str(p) for p in paths],
    )  # fmt: skip
    report.problems = problems + report.problems
    return report


def watch_case_job(
    catalog: Any,
    model: Any,
    case: str,
    folders: Sequence[str],
    *,
    cancel: threading.Event,
    note: Callable[[Any], None],
    poll_seconds: float = 0.5,
    settle_seconds: float = 1.0,
) -> int:
    """Check the images that arrive in ``folders`` into ``case`` until ``cancel`` is set
    (``engine.case_watch.watch_case``, which adds the folders to the case); ``note`` gets each
    stored record and each problem (:class:`WatchProblem`). Returns how many were checked."""
    from engine.case_watch import watch_case

    def problem(source: Any, reason: Any = "") -> None:
        note(WatchProblem(str(source), str(reason)))

    return watch_case(
        catalog, model, case, [str(f) for f in folders], cancel=cancel, on_checked=note,
        on_problem=problem, poll_seconds=poll_seconds, settle_seconds=settle_seconds,
    )  # fmt: skip


#: the ``decision`` of a job that only replaces the note (the decision and its date stay)
NOTE_ONLY = "note only"


def decide_job(catalog: Any, case: str, offer: str, decision: str | None, note: str | None) -> Any:
    """Record a decision (None: clear it) and, unless None, the note; with NOTE_ONLY only the
    note. Returns the stored record."""
    if decision == NOTE_ONLY:
        return catalog.case_store.set_note(case, offer, note or "")
    return catalog.case_store.decide(case, offer, decision, note)


def write_report_job(
    catalog: Any,
    _model: Any,
    case: str,
    path: str,
    *,
    progress: Callable[[int, int, str], None],
    cancel: threading.Event,
) -> Any:
    """The evidence report (``engine.case_report``, .html or .pdf) of the offers decided
    infringing; None when cancelled (nothing written), 0 when no offer is decided infringing.
    A .csv path gets every offer of the case as a spreadsheet instead (engine.export)."""
    from engine.case_report import WrittenReport, select_offers, write_report

    if str(path).lower().endswith(".csv"):
        from engine.export import export_case, open_output

        with open_output(path, protect=catalog.directory) as out:
            return WrittenReport(Path(path), export_case(catalog, case, out))

    offers = select_offers(catalog, case)
    if not offers:
        return 0
    return write_report(catalog, case, offers, path, progress=progress, cancel=cancel)
