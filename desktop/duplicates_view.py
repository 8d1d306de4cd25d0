"""The Duplicates view: scan the whole catalog for groups of copies, review and export them.

Left: the groups (a virtualised table; 10,000 groups are fine). Right: the images of the selected
group as thumbnails with their product data, the representative and the selected copy side by
side, and the actions "Not a duplicate" (N), "Confirm" (C), "Set as reference" (R). Decisions are
written to the catalog (engine.duplicates) and are respected by every later scan, in the GUI and
the CLI. The view works through the :class:`desktop.session.Session`: the scan, the decisions and
the re-scoring run on its worker threads; the UI thread only touches Qt objects and results.

Usable on its own: ``python -m desktop.duplicates_view --catalog DIR``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QTabWidget, QCheckBox, QComboBox, QFileDialog,
                               QHBoxLayout, QHeaderView, QLabel, QListView, QProgressBar,
                               QPushButton, QSizePolicy, QSplitter, QTableView, QVBoxLayout,
                               QWidget)

from engine import duplicates, scoring

from .compare_view import CompareView
from .duplicates_model import GroupsModel, MembersModel, member_details
from .session import Session
from .thumbnails import ThumbnailLoader

THRESHOLD_CHOICES = [(f"{name} (≥ {value:.2f})", name) for name, value in scoring.THRESHOLDS.items()]


# ---------------------------------------------------------------------- compare
class _ImagePane(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.image = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(120, 120)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.caption = QLabel(wordWrap=True)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.caption)
        self._source: QImage | None = None

    def set_image(self, image: QImage | None, missing: str = "") -> None:
        self._source = image
        if image is None:
            self.image.setPixmap(QPixmap())
            self.image.setText(missing)
        else:
            self.image.setText("")
        self._fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._source is not None and self.image.width() > 0 and self.image.height() > 0:
            self.image.setPixmap(QPixmap.fromImage(self._source).scaled(
                self.image.size(), Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation))


class PairCompare(QWidget):
    """The representative and one copy side by side, with their product data and the score."""

    def __init__(self, images: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.images = images
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.left, self.right = _ImagePane(), _ImagePane()
        layout.addWidget(self.left)
        layout.addWidget(self.right)
        self.pair: tuple[duplicates.Member, duplicates.Member] | None = None
        images.ready.connect(self._on_ready)

    def show_pair(self, representative: duplicates.Member | None, copy: duplicates.Member | None) -> None:
        self.pair = (representative, copy) if representative is not None and copy is not None else None
        if self.pair is None:
            for pane in (self.left, self.right):
                pane.set_image(None)
                pane.caption.setText("")
            return
        score = "" if copy.score is None else f"score {copy.score:.3f}" + (" · confirmed" if copy.confirmed else "")
        self.left.caption.setText("Representative\n" + member_details(representative))
        self.right.caption.setText(f"Copy · {score}\n" + member_details(copy))
        self._render()

    def _render(self) -> None:
        if self.pair is None:
            return
        for pane, member in zip((self.left, self.right), self.pair):
            image = self.images.get(member.image_id)
            missing = "cannot read this image" if self.images.has_failed(member.image_id) else "loading…"
            pane.set_image(image, missing)

    def _on_ready(self, image_id: int) -> None:
        if self.pair is not None and image_id in (self.pair[0].image_id, self.pair[1].image_id):
            self._render()


class _CatalogImageQuery:
    """What the compare view needs of a query, for a catalog image (the group's representative);
    the compare worker decodes it off the UI thread."""

    def __init__(self, member: duplicates.Member):
        self.path = member.path
        self.name = os.path.basename(self.path)
        self.roi = None
        self.image = self.path

    def region_image(self) -> str:
        return self.path


class _MemberMatch:
    """What the compare view needs of a match, for a group member."""

    def __init__(self, member: duplicates.Member, rank: int):
        self.path = member.path
        self.rank = rank
        self.score = member.score if member.score is not None else 1.0
        self.strength = "confirmed" if member.confirmed else ""
        self.product = member.record


# ---------------------------------------------------------------------- the view
class DuplicatesView(QWidget):
    """Find, review and export duplicate groups of one catalog."""

    scanFinished = Signal(object)       # engine.duplicates.ScanResult
    message = Signal(str)

    def __init__(self, session: Session, parent=None, *, threshold: str = "copy"):
        super().__init__(parent)
        if session.catalog is None:
            raise ValueError("the Duplicates view needs a session with an open catalog")
        self.session = session
        self.catalog = session.catalog  # the catalog this view shows (the window closes with it)
        self.result: duplicates.ScanResult | None = None
        self._deciding = 0  # decisions being written
        self._recentring = False  # a "set as reference" being written and scored
        # the main window's lazy loader: decoded off the UI thread, LRU-cached, newest request first
        self.thumbnails = ThumbnailLoader(disk_size=256, parent=self)
        self.thumbnails.set_catalog(self.catalog)
        self.large_images = ThumbnailLoader(disk_size=768, display_size=QSize(768, 768), cache_items=40,
                                            parent=self)
        self.large_images.set_catalog(self.catalog)

        # toolbar
        self.threshold_box = QComboBox()
        for text, name in THRESHOLD_CHOICES:
            self.threshold_box.addItem(text, name)
        self.threshold_box.setCurrentIndex(max(0, self.threshold_box.findData(threshold)))
        self.threshold_box.setToolTip("Minimum score for two images to count as duplicates")
        self.new_only_box = QCheckBox("New images only")
        self.new_only_box.setToolTip("Check only the images imported since the last scan")
        self.variants_box = QCheckBox("Include declared variants")
        self.variants_box.setToolTip("Also report images of different products of one item group "
                                     "(item_group_id in the product feed: colours or sizes of one style)")
        self.fast_box = QCheckBox("Skip turned search")
        self.fast_box.setToolTip("No turned pass: unmatched images far from every other get no more "
                                 "visual-word candidates (catalogs of up to 10,000 images) and are not "
                                 "embedded turned by 90/180/270 degrees (larger ones: about 20% faster); "
                                 "turned copies that the embedding and the first visual words miss are missed")
        self.scan_button = QPushButton("Scan")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress.setFormat("%p% %v/%m")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Threshold:"))
        bar.addWidget(self.threshold_box)
        bar.addWidget(self.new_only_box)
        bar.addWidget(self.variants_box)
        bar.addWidget(self.fast_box)
        bar.addWidget(self.scan_button)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.progress, 1)
        bar.addStretch(0)
        bar.addWidget(self.export_button)

        # groups
        self.groups_model = GroupsModel(self)
        self.groups_view = QTableView()
        self.groups_view.setModel(self.groups_model)
        self.groups_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.groups_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.groups_view.verticalHeader().setVisible(False)
        # fixed row heights and no content-based column sizing: painting stays O(visible rows)
        self.groups_view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.groups_view.verticalHeader().setDefaultSectionSize(22)
        header = self.groups_view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.groups_view.setColumnWidth(0, 60)
        self.groups_view.setColumnWidth(2, 60)
        self.groups_view.setColumnWidth(3, 90)
        self.groups_view.selectionModel().currentRowChanged.connect(self._on_group_changed)

        # members + compare + actions
        self.members_model = MembersModel(self.thumbnails, QSize(150, 150), self)
        self.members_view = QListView()
        self.members_view.setModel(self.members_model)
        self.members_view.setViewMode(QListView.ViewMode.IconMode)
        self.members_view.setIconSize(QSize(150, 150))
        self.members_view.setGridSize(QSize(190, 215))
        self.members_view.setResizeMode(QListView.ResizeMode.Adjust)
        self.members_view.setMovement(QListView.Movement.Static)
        self.members_view.setUniformItemSizes(True)
        self.members_view.setWordWrap(True)
        self.members_view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.members_view.selectionModel().currentRowChanged.connect(self._on_member_changed)
        self.members_view.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        self.compare = PairCompare(self.large_images)
        self._pair: tuple = (None, None)      # (representative, member) shown in the compare panes
        # the search window's compare view (linked zoom, difference, blink) on the same pair
        self.detail_compare = CompareView(session.aux_pool, session.runner)
        self.compare_tabs = QTabWidget()
        self.compare_tabs.addTab(self.compare, "Side by side")
        self.compare_tabs.addTab(self.detail_compare, "Compare (difference, blink)")
        self.compare_tabs.currentChanged.connect(lambda *_: self._show_detail_compare())
        self.not_dup_button = QPushButton("Not a duplicate (N)")
        self.not_dup_button.setToolTip("The selected images are not copies of the representative: "
                                       "never report these pairs again")
        self.confirm_button = QPushButton("Confirm (C)")
        self.confirm_button.setToolTip("The selected images are copies of the representative")
        self.reference_button = QPushButton("Set as reference (R)")
        self.reference_button.setToolTip("Make the selected image this group's representative "
                                         "(remembered for later scans)")
        self.decision_progress = QProgressBar()  # busy while a decision is being written
        self.decision_progress.setRange(0, 0)
        self.decision_progress.setMaximumWidth(120)
        self.decision_progress.setTextVisible(False)
        self.decision_progress.setVisible(False)
        actions = QHBoxLayout()
        for b in (self.not_dup_button, self.confirm_button, self.reference_button):
            actions.addWidget(b)
        actions.addWidget(self.decision_progress)
        actions.addStretch(1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.members_view)
        right.addWidget(self.compare_tabs)
        right.setSizes([260, 400])
        right_box = QWidget()
        right_layout = QVBoxLayout(right_box)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(right, 1)
        right_layout.addLayout(actions)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.groups_view)
        split.addWidget(right_box)
        split.setSizes([360, 740])

        self.status = QLabel("Scan the catalog to find groups of copies.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)

        self.scan_button.clicked.connect(self.start_scan)
        self.cancel_button.clicked.connect(self.cancel_scan)
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.not_dup_button.clicked.connect(self.mark_not_duplicate)
        self.confirm_button.clicked.connect(self.confirm)
        self.reference_button.clicked.connect(self.set_reference)
        for key, slot in (("N", self.mark_not_duplicate), ("C", self.confirm), ("R", self.set_reference)):
            QShortcut(QKeySequence(key), self, activated=slot,
                      context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._update_actions()

    # -- scanning ------------------------------------------------------------------------------
    @property
    def scanning(self) -> bool:
        return self.session.scanning

    @property
    def busy(self) -> bool:
        """A decision or a change of reference is being written."""
        return self._deciding > 0 or self._recentring

    def threshold(self) -> float:
        return scoring.resolve_threshold(self.threshold_box.currentData())

    def start_scan(self) -> None:
        started = self.session.scan_duplicates(
            threshold=self.threshold(),
            only_new=self.new_only_box.isChecked(),
            include_variants=self.variants_box.isChecked(),
            turned=not self.fast_box.isChecked(),
            on_done=self._alive(self._on_scanned),
            on_error=self._alive(self._on_scan_failed),
            on_cancelled=self._alive(self._on_scan_cancelled),
            on_progress=self._alive(self._on_progress),
        )
        if not started:
            return
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setEnabled(True)
        self._set_status("Scanning…")
        self._update_actions()

    def cancel_scan(self) -> None:
        if self.scanning:
            self.session.cancel_scan()
            self.cancel_button.setEnabled(False)
            self._set_status("Cancelling…")

    def _on_progress(self, done: int, total: int, stage: str) -> None:
        if not self.scanning:
            return
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))
        self.progress.setFormat(f"{stage} %v/%m")

    def _scan_ended(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setEnabled(False)
        self._update_actions()

    def _on_scanned(self, result: duplicates.ScanResult) -> None:
        self._scan_ended()
        self.show_result(result)
        self.scanFinished.emit(result)

    def _on_scan_failed(self, message: str) -> None:
        self._scan_ended()
        self._set_status(f"Scan failed: {message}")

    def _on_scan_cancelled(self) -> None:
        self._scan_ended()
        self._set_status("Scan cancelled; the previous results are kept." if self.result
                         else "Scan cancelled.")

    def show_result(self, result: duplicates.ScanResult) -> None:
        self.result = result
        self.groups_model.set_groups(result.groups)
        self.export_button.setEnabled(bool(result.groups))
        self._set_status(result.summary())
        if result.groups:
            self.groups_view.selectRow(0)
        else:
            self._show_group(None)

    # -- selection -----------------------------------------------------------------------------
    def current_group(self) -> duplicates.DuplicateGroup | None:
        return self.groups_model.group(self.groups_view.currentIndex().row())

    def select_group(self, row: int) -> None:
        self.groups_view.selectRow(row)

    def _on_group_changed(self, current, _previous) -> None:
        self._show_group(self.groups_model.group(current.row()))

    def _show_group(self, group: duplicates.DuplicateGroup | None, select_row: int = 1) -> None:
        self.members_model.set_group(group)
        if group is not None and self.members_model.rowCount():
            row = min(select_row, self.members_model.rowCount() - 1)
            self.members_view.setCurrentIndex(self.members_model.index(row))
        else:
            self._show_pair(None, None)
        self._update_actions()

    def _show_pair(self, representative, member) -> None:
        self._pair = (representative, member)
        self.compare.show_pair(representative, member)
        self._show_detail_compare()

    def _show_detail_compare(self) -> None:
        """Align and diff only while that tab is shown: it decodes both full images."""
        representative, member = self._pair
        if self.compare_tabs.currentWidget() is not self.detail_compare or None in self._pair:
            return
        group = self.current_group()
        members = group.members if group is not None else []
        rank = next((i + 1 for i, m in enumerate(members) if m.image_id == member.image_id), 1)
        self.detail_compare.show_pair(_CatalogImageQuery(representative), _MemberMatch(member, rank))

    def _on_member_changed(self, current, _previous) -> None:
        group = self.members_model.group()
        member = self.members_model.member(current.row())
        if group is None or member is None:
            self._show_pair(None, None)
        elif member.image_id == group.representative.image_id:
            self._show_pair(group.representative, group.members[0] if group.members else None)
        else:
            self._show_pair(group.representative, member)
        self._update_actions()

    def selected_members(self) -> list[duplicates.Member]:
        """The selected copies (the representative is never one of them)."""
        rows = sorted({i.row() for i in self.members_view.selectionModel().selectedIndexes()})
        if not rows and self.members_view.currentIndex().isValid():
            rows = [self.members_view.currentIndex().row()]
        return [m for r in rows if r > 0 and (m := self.members_model.member(r)) is not None]

    def _update_actions(self) -> None:
        chosen = self.selected_members()
        free = not self.busy
        self.not_dup_button.setEnabled(free and bool(chosen))
        self.confirm_button.setEnabled(free and bool(chosen))
        # re-centring a group while a scan replaces the groups would be lost
        self.reference_button.setEnabled(free and len(chosen) == 1 and not self.scanning)
        self.scan_button.setEnabled(not self.scanning and not self._recentring)
        self.decision_progress.setVisible(self.busy)

    # -- decisions -----------------------------------------------------------------------------
    def mark_not_duplicate(self) -> None:
        """The selected copies are not duplicates of the representative: remembered in the
        catalog, then taken out of the group (a group left with one image disappears)."""
        self._decide(duplicates.NOT_DUPLICATE, self._after_not_duplicate,
                     "Marking as not a duplicate…")

    def confirm(self) -> None:
        """The selected copies are duplicates of the representative: remembered in the catalog."""
        self._decide(duplicates.CONFIRMED, self._after_confirm, "Confirming…")

    def _decide(self, decision: str, applied: Callable[[int, list[int]], None], doing: str) -> None:
        group, chosen = self.current_group(), self.selected_members()
        if group is None or not chosen or self.busy:
            return
        rep = group.representative.image_id
        ids = [m.image_id for m in chosen]
        self._begin_decision(doing)
        self.session.mark_duplicate_pairs(
            [(rep, i) for i in ids], decision, [m.score for m in chosen],
            on_done=self._alive(lambda _n, g=group.group_id: (self._end_decision(), applied(g, ids))),
            on_error=self._alive(self._decision_failed),
        )  # fmt: skip

    def _begin_decision(self, text: str) -> None:
        self._deciding += 1
        self._set_status(text)
        self._update_actions()

    def _end_decision(self) -> None:
        self._deciding = max(0, self._deciding - 1)
        self._update_actions()

    def _decision_failed(self, message: str) -> None:
        self._end_decision()
        self._set_status(f"Cannot record the decision: {message}")

    def _after_not_duplicate(self, group_id: int, ids: list[int]) -> None:
        row = self.groups_model.row_of(group_id)
        group = self.groups_model.group(row)
        if group is None:  # a new scan replaced the groups meanwhile
            return
        gone = set(ids)
        group.members = [m for m in group.members if m.image_id not in gone]
        shown = self.groups_view.currentIndex().row() == row
        if group.members:
            self.groups_model.replace_group(row, group)
            if shown:
                self._show_group(group)
        else:
            self.groups_model.remove_group(row)
            if shown and self.groups_model.rowCount():
                self.groups_view.selectRow(min(row, self.groups_model.rowCount() - 1))
            elif shown:
                self._show_group(None)
        self._set_status(f"{len(ids)} image(s) marked as not a duplicate; they will not be reported again.")

    def _after_confirm(self, group_id: int, ids: list[int]) -> None:
        row = self.groups_model.row_of(group_id)
        group = self.groups_model.group(row)
        if group is None:
            return
        for m in group.members:
            if m.image_id in ids:
                m.confirmed = True
        self.groups_model.replace_group(row, group)
        if self.groups_view.currentIndex().row() == row:
            current = self.members_view.currentIndex().row()
            self._show_group(group, select_row=max(current, 1))
        self._set_status(f"{len(ids)} image(s) confirmed as duplicates.")

    def set_reference(self) -> None:
        """Make the selected image the representative; the others are scored against it on a worker
        thread, and those below the threshold leave the group."""
        group, chosen = self.current_group(), self.selected_members()
        if group is None or len(chosen) != 1 or self.busy or self.scanning:
            return
        threshold = self.result.threshold if self.result is not None else self.threshold()
        snapshot = duplicates.DuplicateGroup(group.group_id, group.representative, list(group.members))
        self._recentring = True
        self._set_status("Scoring the group against its new reference…")
        self._update_actions()
        self.session.set_duplicate_reference(
            snapshot, chosen[0].image_id,
            on_done=self._alive(lambda g: self._on_recentred(group.group_id, g, threshold)),
            on_error=self._alive(self._recentre_failed),
        )  # fmt: skip

    def _recentre_failed(self, message: str) -> None:
        self._recentring = False
        self._update_actions()
        self._set_status(f"Cannot set the reference: {message}")

    def _on_recentred(self, group_id: int, group: duplicates.DuplicateGroup, threshold: float) -> None:
        self._recentring = False
        self._update_actions()
        row = self.groups_model.row_of(group_id)
        if row < 0:
            return
        kept = [m for m in group.members if m.confirmed or (m.score or 0.0) >= threshold]
        dropped = len(group.members) - len(kept)
        group.members = kept
        text = f"{os.path.basename(group.representative.path)} is now the reference of group {group_id}."
        if dropped:
            text += (f" {dropped} image(s) do not match it above {threshold:.2f} and left the group "
                     "(scan again to regroup them).")
        if kept:
            self.groups_model.replace_group(row, group)
            if self.groups_view.currentIndex().row() == row:
                self._show_group(group)
        else:
            self.groups_model.remove_group(row)
            self._show_group(self.current_group())
        self._set_status(text)

    # -- export --------------------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike | None = None) -> int:
        """Write the groups shown (decisions applied) as CSV; asks for a file when ``path`` is None."""
        groups = self.groups_model.groups()
        if not groups:
            return 0
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export duplicate groups", "duplicates.csv",
                                                  "CSV files (*.csv)")
            if not path:
                return 0
        try:
            n = duplicates.export_csv(groups, path)
        except OSError as exc:
            self._set_status(f"Cannot write {path}: {exc.strerror or exc}")
            return 0
        self._set_status(f"Wrote {n} rows ({len(groups)} groups) to {path}")
        return n

    # -- misc ----------------------------------------------------------------------------------
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
        """Cancel a running scan and wait for the thumbnail threads (call before closing)."""
        self.session.cancel_scan()
        self.detail_compare.stop()
        self.thumbnails.wait_idle(msecs)
        self.large_images.wait_idle(msecs)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


def main(argv: list[str] | None = None) -> int:
    from .side_windows import run_alone

    return run_alone(DuplicatesView, prog="lookalike-duplicates", title="Duplicates", size=(1200, 780), argv=argv)


if __name__ == "__main__":
    sys.exit(main())
