"""The detail pane of the Cases window: one offer and its best catalog match.

Top: the offer image and its best match side by side (large thumbnails, loaded off the UI
thread), or the search window's compare view (aligned, difference, blink) on the same pair.
Below: score and strength, the edits found, why it matched (desktop.why on the stored evidence),
the offer's CSV columns and the other matches; then the decision buttons and the note. The pane
only shows and asks: the window writes decisions (:attr:`OfferDetail.decided`).
"""

from __future__ import annotations

import os
from html import escape
from types import SimpleNamespace
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QPushButton, QScrollArea, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from engine.case_store import INFRINGING, NOT_INFRINGING, UNSURE

from .cases_model import decision_text, edits_text, product_text, strength_text
from .compare_view import CompareView
from .duplicates_view import _ImagePane as ImagePane
from .thumbnails import FileThumbnailLoader, ThumbnailLoader
from .why import MUTED_COLOR, why_html

#: (decision, button text, shortcut)
DECISION_BUTTONS = ((INFRINGING, "Infringement (I)", "I"), (NOT_INFRINGING, "Not infringing (N)", "N"),
                    (UNSURE, "Unsure (U)", "U"))


def match_view(best: dict | None) -> Any:
    """A stored match (``Match.to_json()``) as what desktop.why and the compare view read."""
    if not best:
        return None
    evidence = best.get("evidence")
    product = {k: best.get(k) for k in ("title", "brand", "product_id", "category", "url")}
    return SimpleNamespace(path=best.get("path"), rank=1, score=float(best.get("score") or 0.0),
                           strength=best.get("strength") or "", product=product, image_id=best.get("image_id"),
                           evidence=SimpleNamespace(**evidence) if isinstance(evidence, dict) else None)


class _OfferQuery:
    """What the compare view needs of its query, for an offer image (decoded by its worker)."""

    def __init__(self, record: Any):
        self.path = self.image = record.image_path
        self.name = f"offer #{record.number} ({os.path.basename(record.image_path)})"
        self.roi = None

    def region_image(self) -> str:
        return self.path


def offer_html(record: Any) -> str:
    """Score, edits, why it matched, the CSV columns and the other matches, as HTML."""
    best = record.best
    rows = [("Offer", f"#{record.number} · {escape(record.offer)}")]
    rows.append(("Match", escape(strength_text(record))
                 + (f" · {escape(product_text(best))}" if best else " · nothing in the catalog")))
    if record.edits is not None:
        rows.append(("Edits", escape(edits_text(record)) or "none found"))
    if record.decision:
        when = (record.decided_at or "")[:16].replace("T", " ")
        rows.append(("Decision", f"<b>{escape(decision_text(record))}</b> {escape(when)}"))
    for key, value in (record.fields or {}).items():
        rows.append((str(key), escape(str(value))))
    others = record.matches[1:]
    if others:
        rows.append(("Also", "<br>".join(f"{float(m.get('score') or 0):.2f} {escape(product_text(m))}"
                                         for m in others)))
    body = "".join(f"<tr><td style='color:{MUTED_COLOR}; padding-right:6px' valign='top'>{escape(name)}</td>"
                   f"<td>{html}</td></tr>" for name, html in rows)
    why = why_html(match_view(best)) if best else ""
    return f"<table cellspacing='0' cellpadding='1'>{body}</table>" + (f"<p><b>Why it matched</b></p>{why}" if why else "")


class OfferDetail(QWidget):
    """One offer, its best match and the decision buttons."""

    decided = Signal(object)  # the decision chosen (None: cleared)
    noteEdited = Signal(str)

    def __init__(self, session: Any, catalog: Any, parent=None):
        super().__init__(parent)
        self.record: Any = None
        self.offer_images = FileThumbnailLoader(display_size=QSize(768, 768), cache_items=40, parent=self)
        self.offer_images.set_catalog(catalog)
        self.match_images = ThumbnailLoader(disk_size=768, display_size=QSize(768, 768), cache_items=40,
                                            parent=self)
        self.match_images.set_catalog(catalog)
        self.offer_pane, self.match_pane = ImagePane(), ImagePane()
        pair = QWidget()
        pair_layout = QHBoxLayout(pair)
        pair_layout.setContentsMargins(0, 0, 0, 0)
        pair_layout.addWidget(self.offer_pane)
        pair_layout.addWidget(self.match_pane)
        self.compare = CompareView(session.aux_pool, session.runner)
        self.compare.back_button.setVisible(False)
        self.tabs = QTabWidget()
        self.tabs.addTab(pair, "Side by side")
        self.tabs.addTab(self.compare, "Compare (difference, blink)")
        self.tabs.currentChanged.connect(lambda *_: self._show_compare())

        self.info = QLabel(wordWrap=True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.info)

        self.buttons: dict[str, QPushButton] = {}
        actions = QHBoxLayout()
        for decision, text, key in DECISION_BUTTONS:
            button = QPushButton(text)
            button.setToolTip(f"Record the decision on this offer and go to the next one ({key})")
            button.setCheckable(True)
            button.clicked.connect(lambda _c=False, d=decision: self.decided.emit(d))
            self.buttons[decision] = button
            actions.addWidget(button)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Forget the decision on this offer")
        self.clear_button.clicked.connect(lambda: self.decided.emit(None))
        actions.addWidget(self.clear_button)
        self.note = QLineEdit()
        self.note.setPlaceholderText("Note (saved with the decision, or on Enter)")
        self.note.returnPressed.connect(lambda: self.noteEdited.emit(self.note.text()))
        actions.addWidget(self.note, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tabs)
        split.addWidget(scroll)
        split.setSizes([420, 220])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split, 1)
        layout.addLayout(actions)
        self.offer_images.ready.connect(lambda _k: self._render_images())
        self.match_images.ready.connect(lambda _k: self._render_images())
        self.show_record(None)

    def show_record(self, record: Any) -> None:
        """Show ``record`` (None: nothing); the note editor keeps its text for the same offer."""
        same = record is not None and self.record is not None and record.offer == self.record.offer
        self.record = record
        for decision, button in self.buttons.items():
            button.setEnabled(record is not None)
            button.setChecked(record is not None and record.decision == decision)
        self.clear_button.setEnabled(record is not None and bool(record.decision))
        self.note.setEnabled(record is not None)
        if record is None:
            self.note.clear()
            self.info.setText("Check a folder of offer images or an offers CSV, then select an offer.")
            self.offer_pane.set_image(None)
            self.match_pane.set_image(None)
            self.offer_pane.caption.setText("")
            self.match_pane.caption.setText("")
            return
        if not same or not self.note.isModified():
            self.note.setText(record.note or "")
            self.note.setCursorPosition(0)
            self.note.setModified(False)
        if record.number:
            self.offer_images.set_path(record.number, record.image_path)
        self.info.setText(offer_html(record))
        self.offer_pane.caption.setText(f"Offer #{record.number} · {os.path.basename(record.image_path)}")
        best = record.best
        self.match_pane.caption.setText(
            f"Best match · {strength_text(record)}\n{product_text(best)}" if best
            else (f"Not checked: {record.error}" if record.error else "No match in the catalog"))
        self._render_images()
        if not same:
            self._show_compare()

    def note_text(self) -> str:
        return self.note.text()

    def _render_images(self) -> None:
        record = self.record
        if record is None:
            return
        image = self.offer_images.get(record.number) if record.number else None
        broken = self.offer_images.has_failed(record.number)
        self.offer_pane.set_image(image, "cannot read this image" if broken else "loading…")
        best = record.best
        if best is None:
            self.match_pane.set_image(None, "")
            return
        image_id = int(best.get("image_id") or 0)
        image = self.match_images.get(image_id)
        self.match_pane.set_image(image, "cannot read this image" if self.match_images.has_failed(image_id)
                                  else "loading…")

    def _show_compare(self) -> None:
        """Align and diff only while that tab is shown: it decodes both full images."""
        if self.tabs.currentWidget() is not self.compare or self.record is None or self.record.best is None:
            return
        self.compare.show_pair(_OfferQuery(self.record), match_view(self.record.best))

    def shutdown(self, msecs: int = 5000) -> None:
        self.compare.stop()
        self.offer_images.wait_idle(msecs)
        self.match_images.wait_idle(msecs)
