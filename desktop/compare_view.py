"""Compare view: the query and the selected match side by side, with linked zoom and pan.

The match is put into the query's frame (resized, or registered on image features when "Align"
is on) so that the two QGraphicsViews can share one transform and one pair of scroll positions.
Modes: side by side, difference (changed pixels in heat colours) and blink (the right view
alternates match and query twice a second, so edits jump out). "Swap" exchanges the sides;
"Mirror" flips the match (mirrored copies are a common edit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QRectF, QSignalBlocker, QSize, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QTransform
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSplitter,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import resources
from .results_model import format_score, match_title
from .workers import Task, TaskRunner

MODES = ("side", "difference", "blink")
BLINK_MS = 500
ZOOM_STEP = 1.25


@dataclass
class ComparePair:
    query: QImage
    match: QImage
    difference: QImage
    description: str  # how the match was aligned, how much differs


def build_compare_pair(
    query_rgb: Any, match_path: str, features: bool, mirror: bool
) -> ComparePair:
    """Worker job: decode the match, align it to the query, compute the difference image."""
    from engine.alignment import align, difference
    from engine.imaging import load_image

    from .qt_images import qimage_from_rgb

    if isinstance(query_rgb, (str, os.PathLike)):   # a catalog image as the query: decode it here
        query_rgb = load_image(query_rgb)
    match_rgb = load_image(match_path)
    aligned = align(query_rgb, match_rgb, features=features, mirror=mirror)
    diff = difference(aligned)
    text = (
        f"Match {aligned.describe()}; {diff.changed_fraction * 100:.1f}% of the pixels differ "
        f"(mean difference {diff.mean_abs:.1f}/255)"
    )
    return ComparePair(
        qimage_from_rgb(aligned.query),
        qimage_from_rgb(aligned.match),
        qimage_from_rgb(diff.image),
        text,
    )


class LinkedView(QGraphicsView):
    """A QGraphicsView that reports wheel zooms so a partner view can follow."""

    zoomed = Signal(float, object)  # factor, scene point under the cursor

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setBackgroundBrush(self.palette().window())
        self.item = QGraphicsPixmapItem()
        self.item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.item)

    def set_image(self, image: QImage | None) -> None:
        if image is None or image.isNull():
            self.item.setPixmap(QPixmap())
            self.scene().setSceneRect(QRectF())
            return
        self.item.setPixmap(QPixmap.fromImage(image))
        self.scene().setSceneRect(self.item.boundingRect())

    def wheelEvent(self, event) -> None:
        delta = event.angleDelta().y()
        if delta == 0:
            return super().wheelEvent(event)
        factor = ZOOM_STEP if delta > 0 else 1 / ZOOM_STEP
        self.scale(factor, factor)
        self.zoomed.emit(factor, self.mapToScene(event.position().toPoint()))
        event.accept()


class CompareView(QWidget):
    closeRequested = Signal()
    message = Signal(str, str)

    def __init__(self, pool: QThreadPool, runner: TaskRunner, parent=None):
        super().__init__(parent)
        self.pool, self.runner = pool, runner
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)

        bar = QToolBar()
        bar.setIconSize(QSize(18, 18))
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.back_button = self._tool("Results", "compare", "Back to the results grid (Esc)")
        self.back_button.setIcon(resources.icon("zoom-fit"))
        bar.addWidget(self.back_button)
        bar.addSeparator()
        self.mode_group = QButtonGroup(self)
        self.mode_buttons: dict[str, QToolButton] = {}
        for mode, text, tip in (
            ("side", "Side by side", "Query and match next to each other"),
            ("difference", "Difference", "Show where the match differs from the query"),
            ("blink", "Blink", "Alternate match and query in the right view"),
        ):
            button = self._tool(text, None, tip)
            button.setCheckable(True)
            self.mode_group.addButton(button)
            self.mode_buttons[mode] = button
            bar.addWidget(button)
        self.mode_buttons["side"].setChecked(True)
        bar.addSeparator()
        self.swap_button = self._tool("Swap", "swap", "Swap the two sides")
        self.swap_button.setCheckable(True)
        self.mirror_button = self._tool("Mirror", "mirror", "Flip the match horizontally")
        self.mirror_button.setCheckable(True)
        self.align_box = QCheckBox("Align")
        self.align_box.setChecked(True)
        self.align_box.setToolTip(
            "Register the match on the query by image features (undoes crops, rotations, perspective)"
        )
        bar.addWidget(self.swap_button)
        bar.addWidget(self.mirror_button)
        bar.addWidget(self.align_box)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bar.addWidget(spacer)
        self.zoom_out_button = self._tool("", "zoom-out", "Zoom out (-)")
        self.zoom_in_button = self._tool("", "zoom-in", "Zoom in (+)")
        self.fit_button = self._tool("", "zoom-fit", "Fit to window (0)")
        self.actual_button = self._tool("", "zoom-original", "Actual pixels (1)")
        for b in (self.zoom_out_button, self.zoom_in_button, self.fit_button, self.actual_button):
            bar.addWidget(b)
        layout.addWidget(bar)
        self.toolbar = bar

        captions = QHBoxLayout()
        self.left_caption = QLabel()
        self.right_caption = QLabel()
        for c in (self.left_caption, self.right_caption):
            c.setTextFormat(Qt.TextFormat.PlainText)
            c.setAlignment(Qt.AlignmentFlag.AlignCenter)
            captions.addWidget(c, 1)
        layout.addLayout(captions)

        self.left = LinkedView()
        self.right = LinkedView()
        self.left.setAccessibleName("Left image")
        self.right.setAccessibleName("Right image")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.left)
        splitter.addWidget(self.right)
        splitter.setChildrenCollapsible(False)
        layout.addWidget(splitter, 1)
        self.info = QLabel("Select a result and press C to compare it with the query.")
        self.info.setTextFormat(Qt.TextFormat.PlainText)
        self.info.setWordWrap(True)
        layout.addWidget(self.info)

        self._link(self.left, self.right)
        self._link(self.right, self.left)
        self.back_button.clicked.connect(self.closeRequested)
        self.mode_group.buttonClicked.connect(lambda _b: self._render())
        self.swap_button.toggled.connect(lambda _c: self._render())
        self.mirror_button.toggled.connect(lambda _c: self._reload())
        self.align_box.toggled.connect(lambda _c: self._reload())
        self.zoom_in_button.clicked.connect(lambda: self.zoom(ZOOM_STEP))
        self.zoom_out_button.clicked.connect(lambda: self.zoom(1 / ZOOM_STEP))
        self.fit_button.clicked.connect(self.fit)
        self.actual_button.clicked.connect(self.actual_size)

        self._blink = QTimer(self)
        self._blink.setInterval(BLINK_MS)
        self._blink.timeout.connect(self._blink_tick)
        self._blink_showing_match = True
        self._syncing = False
        self._generation = 0
        self.query: Any = None
        self.match: Any = None
        self.pair: ComparePair | None = None
        self.loading = False
        self._auto_fit = True  # fit to the window until the user zooms

    def _tool(self, text: str, icon: str | None, tip: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        if icon:
            button.setIcon(resources.icon(icon))
        button.setToolButtonStyle(
            Qt.ToolButtonStyle.ToolButtonTextBesideIcon
            if text and icon
            else Qt.ToolButtonStyle.ToolButtonIconOnly
            if icon
            else Qt.ToolButtonStyle.ToolButtonTextOnly
        )
        button.setToolTip(tip)
        button.setAccessibleName(text or tip)
        button.setAutoRaise(True)
        return button

    # -- linking --------------------------------------------------------------------------------
    def _link(self, a: LinkedView, b: LinkedView) -> None:
        a.horizontalScrollBar().valueChanged.connect(
            lambda v: self._sync_scroll(b.horizontalScrollBar(), v)
        )
        a.verticalScrollBar().valueChanged.connect(
            lambda v: self._sync_scroll(b.verticalScrollBar(), v)
        )
        a.zoomed.connect(lambda _f, _p, a=a, b=b: self._on_wheel_zoom(a, b))

    def _on_wheel_zoom(self, source: LinkedView, target: LinkedView) -> None:
        self._auto_fit = False
        self._sync_transform(source, target)

    def _sync_scroll(self, bar, value: int) -> None:
        if not self._syncing:
            self._syncing = True
            try:
                bar.setValue(value)
            finally:
                self._syncing = False

    def _sync_transform(self, source: LinkedView, target: LinkedView) -> None:
        self._syncing = True
        try:
            target.setTransform(QTransform(source.transform()))
            target.horizontalScrollBar().setValue(source.horizontalScrollBar().value())
            target.verticalScrollBar().setValue(source.verticalScrollBar().value())
        finally:
            self._syncing = False

    def zoom(self, factor: float) -> None:
        self._auto_fit = False
        self.left.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.left.scale(factor, factor)
        self.left.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self._sync_transform(self.left, self.right)

    def fit(self) -> None:
        self._auto_fit = True
        if self.left.scene().sceneRect().isEmpty():
            return
        self.left.fitInView(self.left.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._sync_transform(self.left, self.right)

    def actual_size(self) -> None:
        self._auto_fit = False
        self.left.setTransform(QTransform())
        self._sync_transform(self.left, self.right)

    def zoom_factor(self) -> float:
        return self.left.transform().m11()

    # -- content ---------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        for mode, button in self.mode_buttons.items():
            if button.isChecked():
                return mode
        return "side"

    def set_mode(self, mode: str) -> None:
        self.mode_buttons[mode].setChecked(True)
        self._render()

    def show_pair(self, query: Any, match: Any) -> None:
        """Compare ``match`` (an engine Match) with the searched region of ``query``. "Mirror"
        starts as the search matched it: on for a match found through the mirrored query."""
        self.query, self.match = query, match
        transform = getattr(getattr(match, "evidence", None), "transform", "") or ""
        blocker = QSignalBlocker(self.mirror_button)    # one reload, below
        self.mirror_button.setChecked("mirrored" in transform)
        del blocker
        self._reload()

    def _reload(self) -> None:
        if self.query is None or self.match is None or self.query.image is None:
            return
        self._generation += 1
        generation = self._generation
        self.loading = True
        self.info.setText(f"Loading {self.match.path} …")
        self.runner.start(
            self.pool,
            Task(
                build_compare_pair,
                self.query.region_image(),
                str(self.match.path),
                self.align_box.isChecked(),
                self.mirror_button.isChecked(),
            ),
            on_done=lambda pair, g=generation: self._on_pair(g, pair),
            on_error=lambda msg, g=generation: self._on_error(g, msg),
        )

    def _on_pair(self, generation: int, pair: ComparePair) -> None:
        if generation != self._generation:
            return
        self.loading = False
        first = self.pair is None or self.pair.query.size() != pair.query.size()
        self.pair = pair
        self.info.setText(pair.description)
        self._render()
        if first or self._auto_fit:
            self.fit()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._auto_fit and self.pair is not None:
            QTimer.singleShot(0, self.fit)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._auto_fit and self.pair is not None:
            QTimer.singleShot(0, self.fit)

    def _on_error(self, generation: int, message: str) -> None:
        if generation != self._generation:
            return
        self.loading = False
        self.pair = None
        self.left.set_image(None)
        self.right.set_image(None)
        self.info.setText(f"Cannot compare: {message}")
        self.message.emit("error", f"Cannot compare: {message}")

    def _captions(self) -> tuple[str, str]:
        query_name = self.query.name if self.query is not None else ""
        if self.query is not None and self.query.roi is not None:
            query_name += " (region)"
        match_name = ""
        if self.match is not None:
            match_name = f"#{self.match.rank} {match_title(self.match)} · {format_score(self.match.score)}"
            if self.match.strength:
                match_name += f" · {self.match.strength}"
        return f"Query: {query_name}", f"Match: {match_name}"

    def _render(self) -> None:
        self._blink.stop()
        pair = self.pair
        if pair is None:
            return
        left, right = pair.query, pair.match
        left_caption, right_caption = self._captions()
        if self.swap_button.isChecked():
            left, right = right, left
            left_caption, right_caption = right_caption, left_caption
        mode = self.mode
        if mode == "difference":
            right = pair.difference
            right_caption = "Difference (bright = changed)"
        self.left.set_image(left)
        self.right.set_image(right)
        self.left_caption.setText(left_caption)
        self.right_caption.setText(right_caption)
        self._sync_transform(self.left, self.right)
        if mode == "blink":
            self._blink_showing_match = True
            self._blink.start()

    def _blink_tick(self) -> None:
        pair = self.pair
        if pair is None:
            return
        self._blink_showing_match = not self._blink_showing_match
        match_side, query_side = (
            (pair.query, pair.match) if self.swap_button.isChecked() else (pair.match, pair.query)
        )
        self.right.item.setPixmap(
            QPixmap.fromImage(match_side if self._blink_showing_match else query_side)
        )
        left_caption, right_caption = self._captions()
        if self.swap_button.isChecked():
            left_caption, right_caption = right_caption, left_caption
        self.right_caption.setText(
            f"Blink: {right_caption if self._blink_showing_match else left_caption}"
        )

    def stop(self) -> None:
        """Leave the view (stop blinking, drop pending loads)."""
        self._blink.stop()
        self._generation += 1
        self.loading = False

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key == Qt.Key.Key_Escape:
            self.closeRequested.emit()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(ZOOM_STEP)
        elif key == Qt.Key.Key_Minus:
            self.zoom(1 / ZOOM_STEP)
        elif key == Qt.Key.Key_0:
            self.fit()
        elif key == Qt.Key.Key_1:
            self.actual_size()
        else:
            super().keyPressEvent(event)
            return
        event.accept()
