"""The Cases window (brand protection): check batches of suspect marketplace offers against the
catalog, review them strongest match first, and record a decision on each.

A case (``engine.case_store``) is picked or made in the toolbar; "Check folder…", "Check files or
offers CSV…" or a drop of folders, images or CSVs checks the offers not yet in it
(``engine.case_check``: offers already checked with the same file are skipped); each offer
appears in the table as it is stored. "Watch folder" keeps checking the images that arrive in the
case's folders (``engine.case_watch``) until it is turned off, the window closes or the catalog
changes. The selected offer is shown beside its best match (desktop.cases_detail); I, N and U
record "infringement", "not infringing" and "unsure" and move to the next offer. Decisions and
notes are stored in the catalog, like the duplicate decisions (through the session, off the UI
thread); checks and watches run on the session's case pool (desktop.case_session).

Usable on its own: ``python -m desktop.cases_view --catalog DIR``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.case_store import DECISION_LABELS

from . import case_jobs
from .case_jobs import CaseState, WatchProblem
from .cases_detail import DECISION_BUTTONS, OfferDetail
from .cases_model import OffersModel
from .session import Session
from .thumbnails import FileThumbnailLoader, ThumbnailLoader
from .workers import Task

NEW_CASE = "New case…"
OFFER_FILTER = "Offer images or offers CSV (*.csv *.tsv *.jpg *.jpeg *.png *.webp *.bmp *.gif *.tif *.tiff);;All files (*)"
THUMB = 64


class CasesView(QWidget):
    """Check, review and decide the offers of one brand-protection case at a time."""

    message = Signal(str)
    caseLoaded = Signal(str)
    checkFinished = Signal(object)  # engine.case_check.CheckReport
    reportWritten = Signal(object)  # engine.case_report.WrittenReport, None (cancelled) or 0 (empty)

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        if session.catalog is None:
            raise ValueError("the Cases view needs a session with an open catalog")
        self.session = session
        self.catalog = session.catalog  # the catalog this view shows (the window closes with it)
        self.case: str | None = None
        self.state: CaseState | None = None
        self._load_generation = 0
        self._check_task: Task | None = None
        self._watch_task: Task | None = None
        self._deciding = 0
        self._follow_top = True  # the strongest offer stays selected until the user picks one
        self._auto_select = False
        self.watch_poll_seconds, self.watch_settle_seconds = 0.5, 1.0
        self.setAcceptDrops(True)

        # toolbar
        self.case_box = QComboBox()
        self.case_box.setMinimumContentsLength(18)
        self.case_box.setToolTip("The case shown; a new case is named when it is made")
        self.check_folder_button = QPushButton("Check folder…")
        self.check_folder_button.setToolTip("Check every image under a folder (new or changed offers only)")
        self.check_files_button = QPushButton("Check files or offers CSV…")
        self.check_files_button.setToolTip("Check offer images, or an offers CSV (an image column, and "
                                           "any others: offer URL, seller, price…)")
        self.watch_button = QPushButton("Watch folder")
        self.watch_button.setCheckable(True)
        self.watch_button.setToolTip("Check new offer images as they arrive in the case's folders, until turned off")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress.setFormat("%v/%m offers")
        self.export_button = QPushButton("Export report…")
        self.export_button.setToolTip("Write the evidence report (HTML or PDF) of the offers decided infringing, "
                                      "or every offer as CSV")
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Case:"))
        bar.addWidget(self.case_box)
        for w in (self.check_folder_button, self.check_files_button, self.watch_button, self.cancel_button):
            bar.addWidget(w)
        bar.addWidget(self.progress, 1)
        bar.addStretch(0)
        bar.addWidget(self.export_button)
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        # offers
        self.offer_thumbs = FileThumbnailLoader(display_size=QSize(THUMB, THUMB), parent=self)
        self.offer_thumbs.set_catalog(self.catalog)
        self.match_thumbs = ThumbnailLoader(disk_size=256, display_size=QSize(THUMB, THUMB), parent=self)
        self.match_thumbs.set_catalog(self.catalog)
        self.model = OffersModel(self.offer_thumbs, self.match_thumbs, QSize(THUMB, THUMB), self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        # fixed row heights, no content-based sizing: painting stays O(visible rows)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        m = OffersModel
        for col, width in ((m.NUMBER, 36), (m.OFFER, THUMB + 12), (m.MATCH, THUMB + 12), (m.SCORE, 108),
                           (m.EDITS, 120), (m.DECISION, 100), (m.NOTE, 110), (m.SOURCE, 190)):
            self.table.setColumnWidth(col, width)
        self.table.selectionModel().currentRowChanged.connect(lambda current, _p: self._show_row(current.row()))
        self.detail = OfferDetail(session, self.catalog)
        self.decision_progress = QProgressBar()  # busy while a decision is being written
        self.decision_progress.setRange(0, 0)
        self.decision_progress.setMaximumWidth(120)
        self.decision_progress.setTextVisible(False)
        self.decision_progress.setVisible(False)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.detail)
        split.setSizes([780, 620])
        self.status = QLabel("Pick a case, or check a folder of offer images to start one.")
        self.status.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.decision_progress)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.summary)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)

        self.case_box.activated.connect(self._on_case_chosen)
        self.check_folder_button.clicked.connect(lambda: self.check_folder())
        self.check_files_button.clicked.connect(lambda: self.check_files())
        self.watch_button.toggled.connect(self._on_watch_toggled)
        self.cancel_button.clicked.connect(self.cancel_check)
        self.export_button.clicked.connect(lambda: self.export_report())
        self.detail.decided.connect(self.decide)
        self.detail.noteEdited.connect(self.save_note)
        for decision, _text, key in DECISION_BUTTONS:
            QShortcut(QKeySequence(key), self, activated=lambda d=decision: self.decide(d),
                      context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        session.modelLoaded.connect(self._alive(lambda _m: self._update_actions()))
        session.catalogOpened.connect(self._alive(lambda _i: self.stop_jobs()))
        self._fill_cases([])
        self._update_actions()
        self.refresh_cases()

    # -- cases ---------------------------------------------------------------------------------
    def refresh_cases(self, select: str | None = None) -> None:
        """Read the case names (engine thread) and show ``select`` (default: the last case)."""
        self.session.runner.start(
            self.session.engine_pool, Task(case_jobs.case_names_job, self.catalog),
            on_done=self._alive(lambda names: self._on_names(names, select)),
            on_error=self._alive(lambda msg: self._set_status(f"Cannot read the cases: {msg}")),
        )  # fmt: skip

    def _on_names(self, names: list[str], select: str | None) -> None:
        self._fill_cases(names)
        target = select or self.case or (names[-1] if names else None)
        if target in names:
            self.load_case(target)

    def _fill_cases(self, names: list[str]) -> None:
        self.case_box.blockSignals(True)
        self.case_box.clear()
        for name in names:
            self.case_box.addItem(name, name)
        self.case_box.addItem(NEW_CASE, None)
        index = self.case_box.findData(self.case) if self.case else -1
        self.case_box.setCurrentIndex(index)
        self.case_box.blockSignals(False)

    def case_names(self) -> list[str]:
        return [self.case_box.itemData(i) for i in range(self.case_box.count()) if self.case_box.itemData(i)]

    def _on_case_chosen(self, index: int) -> None:
        name = self.case_box.itemData(index)
        if name is None:
            self.new_case()
        else:
            self.load_case(name)

    def new_case(self, name: str | None = None, then: Callable[[str], None] | None = None) -> None:
        """Make a case (asks for its name when ``name`` is None) and show it; ``then(name)`` after."""
        if name is None:
            name, ok = QInputDialog.getText(self, "New case", "Name of the new case (e.g. a marketplace "
                                            "and a date):")
            if not ok or not name.strip():
                self._fill_cases(self.case_names())
                return
        self.session.runner.start(
            self.session.engine_pool, Task(case_jobs.create_case_job, self.catalog, name),
            on_done=self._alive(lambda made: (self.refresh_cases(select=made), then and then(made))),
            on_error=self._alive(lambda msg: (self._set_status(f"Cannot make the case: {msg}"),
                                              self._fill_cases(self.case_names()))),
        )  # fmt: skip

    def load_case(self, name: str) -> None:
        """Show case ``name``: its offers, strongest first (read on the engine thread)."""
        if self.running and name != self.case:
            self._set_status("A check or a watch is running: stop it before switching cases.")
            self._fill_cases(self.case_names())
            return
        self._load_generation += 1
        generation = self._load_generation
        self.session.runner.start(
            self.session.engine_pool, Task(case_jobs.load_case_job, self.catalog, name),
            on_done=self._alive(lambda state: self._on_case_loaded(generation, state)),
            on_error=self._alive(lambda msg: self._set_status(f"Cannot read the case {name!r}: {msg}")),
        )  # fmt: skip

    def _on_case_loaded(self, generation: int, state: CaseState) -> None:
        if generation != self._load_generation:
            return
        keep = self.current_record().offer if self.current_record() is not None and state.name == self.case else None
        switched = state.name != self.case
        self.case, self.state = state.name, state
        self._fill_cases(self.case_names())
        self.model.set_records(state.offers)
        row = self.model.row_of(keep) if keep is not None else -1
        self._follow_top = row <= 0
        if self.model.rowCount():
            self._select_automatically(max(row, 0))
        else:
            self._show_row(-1)
        self._show_summary()
        self._update_actions()
        if switched and not self.running:
            self._set_status("Offers strongest first. I, N, U: infringement, not infringing, unsure "
                             "(then the next offer); ↑ ↓ move; drop folders, images or an offers CSV to "
                             "check more." if state.offers else "Check a folder of offer images or an "
                             "offers CSV (or drop them here) to fill this case.")
        self.caseLoaded.emit(state.name)

    def _show_summary(self) -> None:
        if self.state is None:
            self.summary.setText("")
            return
        records = self.model.records()
        failed = sum(1 for r in records if r.error)
        decided: dict[str, int] = {}
        for r in records:
            if r.decision:
                decided[r.decision] = decided.get(r.decision, 0) + 1
        text = f"<b>{self.state.name}</b>: {len(records)} offers, {failed} could not be checked"
        if decided:
            text += "; " + ", ".join(f"{n} {DECISION_LABELS.get(d, d)}" for d, n in decided.items())
        folders = [s for s in self.state.summary.sources if os.path.isdir(s)]
        if folders:
            text += f" · folders: {', '.join(folders[:3])}{' …' if len(folders) > 3 else ''}"
        self.summary.setText(text)

    # -- checking --------------------------------------------------------------------------------
    @property
    def checking(self) -> bool:
        return self._check_task is not None

    @property
    def watching(self) -> bool:
        return self._watch_task is not None

    @property
    def running(self) -> bool:
        return self.checking or self.watching

    def check_folder(self, folder: str | None = None) -> None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Check a folder of offer images")
            if not folder:
                return
        self.check_paths([folder])

    def check_files(self, paths: list[str] | None = None) -> None:
        if paths is None:
            paths, _ = QFileDialog.getOpenFileNames(self, "Check offer images or an offers CSV", "", OFFER_FILTER)
            if not paths:
                return
        self.check_paths(paths)

    def check_paths(self, paths: list[str | os.PathLike]) -> None:
        """Check the offers under ``paths`` into the case shown (one is made when none is)."""
        paths = [str(p) for p in paths]
        if not paths or self.running:
            return
        if self.case is None:
            self.new_case(Path(paths[0]).stem or "case", then=lambda _name: self.check_paths(paths))
            return
        task = self.session.start_case_job(
            case_jobs.check_case_job, self.case, paths,
            on_done=self._alive(self._on_checked_all), on_error=self._alive(self._on_check_failed),
            on_cancelled=self._alive(lambda: self._on_check_failed("cancelled")),
            on_progress=self._alive(self._on_progress), on_note=self._alive(self._on_record),
        )  # fmt: skip
        if task is None:
            return
        self._check_task = task
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self._set_status(f"Checking {', '.join(os.path.basename(p) or p for p in paths)}…")
        self._update_actions()

    def cancel_check(self) -> None:
        if self._check_task is not None:
            self._check_task.cancel()
            self.cancel_button.setEnabled(False)
            self._set_status("Cancelling after the offer being checked…")

    def _on_progress(self, done: int, total: int, _path: str) -> None:
        if self.checking:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(min(done, max(total, 1)))

    def _on_record(self, record: Any) -> None:
        """A record stored by the running check or watch (or a file the watch could not read)."""
        if isinstance(record, WatchProblem):
            self._set_status(f"Cannot check {record.source}: {record.reason}")
            return
        current = self.current_record()
        self._auto_select = True  # rows moving under the selection are no choice of the user's
        try:
            self.model.upsert(record)
        finally:
            self._auto_select = False
        if current is None or (self._follow_top and self.table.currentIndex().row() != 0):
            self._select_automatically(0)
        elif current.offer == record.offer:
            self._show_row(self.table.currentIndex().row())
        self._show_summary()
        if self.watching and not self.checking:
            self._set_status(f"Watching: offer #{record.number} {os.path.basename(record.image_path)} "
                             f"checked ({record.error or record.strength or 'no match'}).")

    def _check_ended(self) -> None:
        self._check_task = None
        self.progress.setVisible(False)
        self._update_actions()

    def _on_checked_all(self, report: Any) -> None:
        self._check_ended()
        failed = len(report.failed)
        parts = [f"{len(report.checked) - failed} offer(s) checked"]
        if report.skipped:
            parts.append(f"{report.skipped} already checked")
        if failed:
            parts.append(f"{failed} could not be read")
        if report.problems:
            source, reason = report.problems[0]
            parts.append(f"{len(report.problems)} problem(s), e.g. {os.path.basename(source)}: {reason}")
        text = ", ".join(parts) + (" (cancelled: check again to go on)" if report.cancelled else ".")
        self._set_status(text[0].upper() + text[1:])
        self.load_case(self.case)
        self.checkFinished.emit(report)

    def _on_check_failed(self, message: str) -> None:
        self._check_ended()
        self._set_status(f"Check stopped: {message}" if message != "cancelled" else "Check cancelled.")
        if self.case:
            self.load_case(self.case)

    # -- watching --------------------------------------------------------------------------------
    def watch_folders(self) -> list[str]:
        """The case's folders (those checked into it that still exist)."""
        sources = self.state.summary.sources if self.state is not None and self.state.name == self.case else []
        return [s for s in sources if os.path.isdir(s)]

    def _on_watch_toggled(self, on: bool) -> None:
        if on and not self.watching:
            self.start_watch()
        elif not on and self.watching:
            self.stop_watch()

    def start_watch(self, folders: list[str] | None = None) -> bool:
        """Check the images arriving in ``folders`` (default: the case's folders, else one asked
        for) until :meth:`stop_watch`."""
        folders = [str(f) for f in folders] if folders else self.watch_folders()
        if not folders and self.case is not None:
            chosen = QFileDialog.getExistingDirectory(self, "Watch a folder for new offer images")
            folders = [chosen] if chosen else []
        task = None
        if folders and self.case is not None and not self.checking:
            task = self.session.start_case_job(
                case_jobs.watch_case_job, self.case, folders,
                poll_seconds=self.watch_poll_seconds, settle_seconds=self.watch_settle_seconds,
                on_done=self._alive(lambda _r: self._watch_ended("Stopped watching.")),
                on_error=self._alive(lambda msg: self._watch_ended(f"Watching stopped: {msg}")),
                on_cancelled=self._alive(lambda: self._watch_ended("Stopped watching.")),
                on_note=self._alive(self._on_record),
            )  # fmt: skip
        self._watch_task = task
        self.watch_button.blockSignals(True)
        self.watch_button.setChecked(task is not None)
        self.watch_button.blockSignals(False)
        if task is not None:
            self._set_status(f"Watching {', '.join(folders)}: new offer images are checked as they arrive.")
        self._update_actions()
        return task is not None

    def stop_watch(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._set_status("Stopping the watch…")

    def _watch_ended(self, text: str) -> None:
        self._watch_task = None
        self.watch_button.blockSignals(True)
        self.watch_button.setChecked(False)
        self.watch_button.blockSignals(False)
        self._set_status(text)
        self._update_actions()

    def stop_jobs(self) -> None:
        """Cancel the check and the watch (the window closes, or the catalog changed)."""
        for task in (self._check_task, self._watch_task):
            if task is not None:
                task.cancel()

    # -- selection and decisions -----------------------------------------------------------------
    def current_record(self) -> Any | None:
        return self.model.record(self.table.currentIndex().row())

    def select_row(self, row: int) -> None:
        self.table.selectRow(row)

    def _select_automatically(self, row: int) -> None:
        self._auto_select = True
        try:
            self.table.selectRow(row)
        finally:
            self._auto_select = False

    def _show_row(self, row: int) -> None:
        if not self._auto_select and row > 0:
            self._follow_top = False
        self.detail.show_record(self.model.record(row))
        self._update_actions()

    def decide(self, decision: str | None) -> None:
        """Record ``decision`` (None: clear it) and the note on the selected offer, then select
        the next offer."""
        record = self.current_record()
        if record is None or self.case is None or not record.number:
            return
        self._write_decision(record, decision, self.detail.note_text())
        row = self.table.currentIndex().row()
        if decision is not None and row + 1 < self.model.rowCount():
            self.table.selectRow(row + 1)
        self.table.setFocus()

    def save_note(self, text: str) -> None:
        record = self.current_record()
        if record is not None and self.case is not None and record.number:
            from .case_jobs import NOTE_ONLY

            self._write_decision(record, NOTE_ONLY, text)

    def _write_decision(self, record: Any, decision: str | None, note: str) -> None:
        self._deciding += 1
        self._update_actions()
        self.session.decide_case_offer(
            self.case, record.number, decision, note,
            on_done=self._alive(self._on_decided), on_error=self._alive(self._decision_failed),
        )  # fmt: skip

    def _on_decided(self, record: Any) -> None:
        self._deciding = max(0, self._deciding - 1)
        if self.model.row_of(record.offer) >= 0:
            self.model.upsert(record)
            current = self.current_record()
            if current is not None and current.offer == record.offer:
                self.detail.note.setModified(False)
                self.detail.show_record(current)
        self._show_summary()
        self._update_actions()
        label = DECISION_LABELS.get(record.decision, "no decision")
        self._set_status(f"Offer #{record.number}: {label}" + (f" — {record.note}" if record.note else "."))

    def _decision_failed(self, message: str) -> None:
        self._deciding = max(0, self._deciding - 1)
        self._update_actions()
        self._set_status(f"Cannot record the decision: {message}")

    # -- report ----------------------------------------------------------------------------------
    def export_report(self, path: str | None = None) -> None:
        """Write the evidence report (engine.case_report: .html or .pdf) of the offers decided
        infringing, on the case pool (progress and Cancel as for a check)."""
        if self.case is None or self.running:
            return
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export the evidence report", f"{self.case}.html",
                                                  "HTML report (*.html);;PDF report (*.pdf);;"
                                                  "Every offer as CSV (*.csv)")
            if not path:
                return
        task = self.session.start_case_job(
            case_jobs.write_report_job, self.case, path,
            on_done=self._alive(self._on_report), on_error=self._alive(self._on_report_failed),
            on_cancelled=self._alive(lambda: self._on_report_failed("cancelled")),
            on_progress=self._alive(self._on_progress),
        )  # fmt: skip
        if task is not None:
            self._check_task = task  # the one job of the window with progress and Cancel
            self.progress.setRange(0, 0)
            self.progress.setVisible(True)
            self._set_status(f"Writing the report to {path}…")
            self._update_actions()

    def _on_report(self, written: Any) -> None:
        self._check_ended()
        if written == 0:
            self._set_status("No offer is decided as an infringement: the report would be empty.")
        elif written is None:
            self._set_status("Report cancelled; nothing was written.")
        else:
            warned = f" ({len(written.warnings)} warning(s), e.g. {written.warnings[0]})" if written.warnings else ""
            self._set_status(f"Wrote the report of {written.offers} offer(s) to {written.path}{warned}.")
        self.reportWritten.emit(written)

    def _on_report_failed(self, message: str) -> None:
        self._check_ended()
        self._set_status("Report cancelled." if message == "cancelled" else f"Cannot write the report: {message}")

    # -- misc ------------------------------------------------------------------------------------
    def _update_actions(self) -> None:
        ready = self.session.ready and self.session.catalog is self.catalog
        self.check_folder_button.setEnabled(ready and not self.running)
        self.check_files_button.setEnabled(ready and not self.running)
        self.cancel_button.setEnabled(self.checking and not self._check_task.cancel_requested)
        self.case_box.setEnabled(not self.running)
        self.watch_button.setEnabled(ready and self.case is not None and not self.checking)
        self.export_button.setEnabled(self.case is not None and not self.running)
        self.decision_progress.setVisible(self._deciding > 0)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            if self.running:
                self._set_status("A check or a watch is running: drop the offers once it has stopped.")
            else:
                self.check_paths(paths)

    def _alive(self, fn: Callable[..., None]) -> Callable[..., None]:
        """``fn``, skipped once the view's widgets are deleted (a worker's outcome may arrive
        after the main window has discarded the view)."""

        def call(*args: Any) -> None:
            if shiboken6.isValid(self):
                fn(*args)

        return call

    def _set_status(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)

    def shutdown(self, msecs: int = 5000) -> None:
        """Cancel the check and the watch and wait for the thumbnail threads (before closing)."""
        self.stop_jobs()
        self.detail.shutdown(msecs)
        self.offer_thumbs.wait_idle(msecs)
        self.match_thumbs.wait_idle(msecs)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


def main(argv: list[str] | None = None) -> int:
    from .side_windows import run_alone

    return run_alone(CasesView, prog="lookalike-cases", title="Cases", size=(1400, 860), argv=argv)


if __name__ == "__main__":
    sys.exit(main())
