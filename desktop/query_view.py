"""The query image with a rubber-band region of interest (ROI).

Drag on the image to draw a rectangle: :attr:`QueryView.roiChanged` carries it as ``(x, y, w, h)``
in the pixels of the full-resolution query image (the view may show a downscaled copy).
Esc or :meth:`clear_roi` goes back to the whole image (``roiChanged(None)``).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
)

MIN_ROI_PIXELS = 8  # smaller drags are clicks, not regions


class QueryView(QGraphicsView):
    roiChanged = Signal(object)  # (x, y, w, h) in image pixels, or None for the whole image

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(
            QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing
        )
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumSize(220, 200)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setAccessibleName("Query image (drag to search a region)")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._pixmap_item: QGraphicsPixmapItem | None = None
        self._rect_item: QGraphicsRectItem | None = None
        self._shade_item: QGraphicsPathItem | None = None
        self._scale = 1.0  # display pixels per image pixel
        self._image_size = (0, 0)  # full-resolution (w, h)
        self._roi: tuple[int, int, int, int] | None = None
        self._drag_start: QPointF | None = None
        self._message = "Drop a product photo here\npaste one (Ctrl+V) or open one (Ctrl+O)"

    # -- content --------------------------------------------------------------------------------
    def set_message(self, text: str) -> None:
        """Text shown when there is no image (empty state, loading, error)."""
        self._message = text
        self.viewport().update()

    def set_image(
        self, display: QImage | None, image_size: tuple[int, int] = (0, 0), scale: float = 1.0
    ) -> None:
        """Show ``display`` (a possibly downscaled copy of an image of ``image_size`` = (w, h))."""
        scene = self.scene()
        scene.clear()
        self._pixmap_item = self._rect_item = self._shade_item = None
        self._roi = None
        if display is None or display.isNull():
            self._image_size = (0, 0)
            scene.setSceneRect(QRectF())
            self.viewport().update()
            return
        self._image_size = image_size if image_size[0] else (display.width(), display.height())
        self._scale = scale
        self._pixmap_item = scene.addPixmap(QPixmap.fromImage(display))
        self._pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        scene.setSceneRect(self._pixmap_item.boundingRect())
        self._shade_item = scene.addPath(
            QPainterPath(), QPen(Qt.PenStyle.NoPen), QBrush(QColor(0, 0, 0, 110))
        )
        self._rect_item = scene.addRect(QRectF(), self._roi_pen())
        self._rect_item.setVisible(False)
        self._fit()

    def has_image(self) -> bool:
        return self._pixmap_item is not None

    def roi(self) -> tuple[int, int, int, int] | None:
        return self._roi

    def set_roi(self, roi: tuple[int, int, int, int] | None, *, emit: bool = False) -> None:
        """Show ``roi`` (image pixels); emits :attr:`roiChanged` only if ``emit``."""
        self._roi = tuple(int(v) for v in roi) if roi else None  # type: ignore[assignment]
        self._draw_roi(self._roi_scene_rect(self._roi) if self._roi else None)
        if emit:
            self.roiChanged.emit(self._roi)

    def clear_roi(self) -> None:
        if self._roi is not None:
            self.set_roi(None, emit=True)

    # -- geometry helpers -----------------------------------------------------------------------
    def _roi_pen(self) -> QPen:
        pen = QPen(QColor("#ffb703"), 2)
        pen.setCosmetic(True)
        return pen

    def _roi_scene_rect(self, roi: tuple[int, int, int, int]) -> QRectF:
        x, y, w, h = roi
        s = self._scale
        return QRectF(x * s, y * s, w * s, h * s)

    def _image_roi(self, rect: QRectF) -> tuple[int, int, int, int]:
        s = self._scale
        iw, ih = self._image_size
        x0 = max(0, min(iw, round(rect.left() / s)))
        y0 = max(0, min(ih, round(rect.top() / s)))
        x1 = max(0, min(iw, round(rect.right() / s)))
        y1 = max(0, min(ih, round(rect.bottom() / s)))
        return x0, y0, x1 - x0, y1 - y0

    def _clamp(self, point: QPointF) -> QPointF:
        bounds = self.scene().sceneRect()
        return QPointF(
            min(max(point.x(), bounds.left()), bounds.right()),
            min(max(point.y(), bounds.top()), bounds.bottom()),
        )

    def _draw_roi(self, rect: QRectF | None) -> None:
        if self._rect_item is None or self._shade_item is None:
            return
        if rect is None or rect.isEmpty():
            self._rect_item.setVisible(False)
            self._shade_item.setPath(QPainterPath())
            return
        self._rect_item.setRect(rect)
        self._rect_item.setVisible(True)
        shade = QPainterPath()
        shade.setFillRule(Qt.FillRule.OddEvenFill)
        shade.addRect(self.scene().sceneRect())
        shade.addRect(rect)
        self._shade_item.setPath(shade)

    def _fit(self) -> None:
        if self._pixmap_item is not None:
            self.fitInView(self._pixmap_item, Qt.AspectRatioMode.KeepAspectRatio)

    # -- events ---------------------------------------------------------------------------------
    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._pixmap_item is not None:
            self._drag_start = self._clamp(self.mapToScene(event.position().toPoint()))
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._drag_start is not None:
            end = self._clamp(self.mapToScene(event.position().toPoint()))
            self._draw_roi(QRectF(self._drag_start, end).normalized())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if self._drag_start is not None and event.button() == Qt.MouseButton.LeftButton:
            end = self._clamp(self.mapToScene(event.position().toPoint()))
            rect = QRectF(self._drag_start, end).normalized()
            self._drag_start = None
            roi = self._image_roi(rect)
            if roi[2] >= MIN_ROI_PIXELS and roi[3] >= MIN_ROI_PIXELS:
                self.set_roi(roi, emit=True)
            else:  # a click: keep the previous region
                self.set_roi(self._roi)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape and self._roi is not None:
            self.clear_roi()
            event.accept()
            return
        super().keyPressEvent(event)

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawBackground(painter, rect)
        if self._pixmap_item is None and self._message:
            painter.save()
            painter.resetTransform()
            area = self.viewport().rect().adjusted(12, 12, -12, -12)
            pen = QPen(
                self.palette().color(self.foregroundRole()).lighter(160), 2, Qt.PenStyle.DashLine
            )
            painter.setPen(pen)
            painter.drawRoundedRect(area, 10, 10)
            painter.setPen(self.palette().color(self.foregroundRole()))
            painter.drawText(
                area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message
            )
            painter.restore()
