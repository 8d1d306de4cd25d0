"""The results grid: a QListView in icon mode with a delegate that paints one card per match."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)

from . import resources
from .results_model import (
    ImageCountRole,
    MatchRole,
    ThumbnailStateRole,
    format_price,
    format_score,
    match_title,
    photos_text,
    product_sku,
)

STRENGTH_COLORS = {
    "likely copy": QColor("#c62828"),
    "same product": QColor("#e65100"),
    "similar": QColor("#1565c0"),
    "": QColor("#78909c"),
}

STRENGTH_LABELS = {
    "likely copy": "LIKELY COPY",
    "same product": "SAME PRODUCT",
    "similar": "SIMILAR",
}


def strength_color(strength: str) -> QColor:
    return STRENGTH_COLORS.get(strength or "", STRENGTH_COLORS[""])


class ResultDelegate(QStyledItemDelegate):
    """Paints a card: thumbnail (or placeholder), strength badge, rank, "N photos" (a product
    several of whose photos matched), title, SKU, price, score."""

    THUMB = 160
    PAD = 8

    def __init__(self, parent=None):
        super().__init__(parent)
        self._placeholder = resources.pixmap("placeholder", 56)
        self._broken = resources.pixmap("broken", 56)

    def card_size(self, option_font: QFont) -> QSize:
        fm = QFontMetrics(option_font)
        text_h = fm.height() * 4 + 6
        return QSize(self.THUMB + 2 * self.PAD, self.THUMB + 2 * self.PAD + text_h)

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        return self.card_size(option.font)  # never touches DecorationRole: no thumbnail request

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        match = index.data(MatchRole)
        if match is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = option.rect.adjusted(3, 3, -3, -3)
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        color = strength_color(match.strength)

        # card background and strength-coloured frame
        background = (
            palette.color(QPalette.ColorRole.Highlight).lighter(175)
            if selected
            else palette.color(QPalette.ColorRole.Base)
        )
        path = QPainterPath()
        path.addRoundedRect(QRectF(rect), 6, 6)
        painter.fillPath(path, background)
        frame = QPen(
            palette.color(QPalette.ColorRole.Highlight) if selected else color, 3 if selected else 2
        )
        painter.setPen(frame)
        painter.drawPath(path)

        # thumbnail, centred in its box
        box = QRect(rect.left() + self.PAD - 3, rect.top() + self.PAD - 3, self.THUMB, self.THUMB)
        image = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(image, QImage) and not image.isNull():
            size = image.size().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(box.center())
            painter.drawImage(target, image)
        else:
            state = index.data(ThumbnailStateRole)
            pix = self._broken if state == "failed" else self._placeholder
            target = QRect(0, 0, pix.width(), pix.height())
            target.moveCenter(box.center())
            painter.setOpacity(0.8)
            painter.drawPixmap(target, pix)
            painter.setOpacity(1.0)

        # badge: strength (top-left), rank (top-right)
        small = QFont(option.font)
        small.setPointSizeF(max(6.5, option.font.pointSizeF() * 0.78))
        small.setBold(True)
        painter.setFont(small)
        sfm = QFontMetrics(small)
        if match.strength:
            label = STRENGTH_LABELS.get(match.strength, match.strength.upper())
            badge = QRect(
                box.left(), box.top(), sfm.horizontalAdvance(label) + 10, sfm.height() + 4
            )
            badge_path = QPainterPath()
            badge_path.addRoundedRect(QRectF(badge), 3, 3)
            painter.fillPath(badge_path, color)
            painter.setPen(Qt.GlobalColor.white)
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, label)
        rank = f"#{match.rank}"
        rank_rect = QRect(0, 0, sfm.horizontalAdvance(rank) + 10, sfm.height() + 4)
        rank_rect.moveTopRight(box.topRight())
        rank_path = QPainterPath()
        rank_path.addRoundedRect(QRectF(rank_rect), 3, 3)
        painter.fillPath(rank_path, QColor(0, 0, 0, 150))
        painter.setPen(Qt.GlobalColor.white)
        painter.drawText(rank_rect, Qt.AlignmentFlag.AlignCenter, rank)
        # bottom-left: how many of the product's photos matched (the best one is shown)
        photos = self.photos_badge(index)
        if photos:
            photos_rect = QRect(0, 0, sfm.horizontalAdvance(photos) + 10, sfm.height() + 4)
            photos_rect.moveBottomLeft(box.bottomLeft())
            photos_path = QPainterPath()
            photos_path.addRoundedRect(QRectF(photos_rect), 3, 3)
            painter.fillPath(photos_path, QColor(0, 0, 0, 150))
            painter.drawText(photos_rect, Qt.AlignmentFlag.AlignCenter, photos)

        # text lines
        fm = QFontMetrics(option.font)
        line_h = fm.height()
        text_w = rect.width() - 2 * (self.PAD - 3)
        x = rect.left() + self.PAD - 3
        y = box.bottom() + 6
        product = match.product or {}
        text_color = palette.color(QPalette.ColorRole.Text)
        dim = QColor(text_color)
        dim.setAlpha(160)

        title_font = QFont(option.font)
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(text_color)
        tfm = QFontMetrics(title_font)
        title = match_title(match)
        # two lines for the title: wrap at a word, elide the rest
        first, rest = _split_line(title, tfm, text_w)
        painter.drawText(QRect(x, y, text_w, line_h), Qt.AlignmentFlag.AlignLeft, first)
        if rest:
            painter.drawText(
                QRect(x, y + line_h, text_w, line_h),
                Qt.AlignmentFlag.AlignLeft,
                tfm.elidedText(rest, Qt.TextElideMode.ElideRight, text_w),
            )
        y += 2 * line_h
        painter.setFont(option.font)
        painter.setPen(dim)
        sku = product_sku(product, match)
        painter.drawText(
            QRect(x, y, text_w, line_h),
            Qt.AlignmentFlag.AlignLeft,
            fm.elidedText(
                f"SKU {sku}" if sku else f"image #{match.image_id}",
                Qt.TextElideMode.ElideMiddle,
                text_w,
            ),
        )
        y += line_h
        price = format_price(product)
        score_text = format_score(match.score)
        score_font = QFont(option.font)
        score_font.setBold(True)
        painter.setFont(score_font)
        painter.setPen(color)
        painter.drawText(QRect(x, y, text_w, line_h), Qt.AlignmentFlag.AlignRight, score_text)
        painter.setFont(option.font)
        painter.setPen(text_color)
        score_w = QFontMetrics(score_font).horizontalAdvance(score_text) + 6
        painter.drawText(
            QRect(x, y, text_w - score_w, line_h),
            Qt.AlignmentFlag.AlignLeft,
            fm.elidedText(price, Qt.TextElideMode.ElideRight, text_w - score_w),
        )
        if option.state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(
                QPen(palette.color(QPalette.ColorRole.Highlight), 1, Qt.PenStyle.DotLine)
            )
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(rect.adjusted(2, 2, -2, -2)), 5, 5)
        painter.restore()


    @staticmethod
    def photos_badge(index: QModelIndex | QPersistentModelIndex) -> str:
        """The card's "N photos" badge: empty unless several of the product's photos matched."""
        return photos_text(int(index.data(ImageCountRole) or 1))


def _split_line(text: str, fm: QFontMetrics, width: int) -> tuple[str, str]:
    if fm.horizontalAdvance(text) <= width:
        return text, ""
    words = text.split()
    line = ""
    for i, word in enumerate(words):
        candidate = f"{line} {word}".strip()
        if fm.horizontalAdvance(candidate) > width:
            if not line:  # one very long word
                return fm.elidedText(text, Qt.TextElideMode.ElideRight, width), ""
            return line, " ".join(words[i:])
        line = candidate
    return line, ""


class ResultsView(QListView):
    """Icon-mode grid of result cards; uniform item sizes keep layout O(1) per item."""

    activatedMatch = Signal(object)  # double-click / Enter: open the compare view

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setSpacing(4)
        self.setWordWrap(False)
        self.setMouseTracking(True)
        self.delegate = ResultDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setGridSize(self.delegate.card_size(self.font()) + QSize(8, 8))
        self.setAccessibleName("Search results")
        self.activated.connect(self._on_activated)

    def _on_activated(self, index: QModelIndex) -> None:
        match = index.data(MatchRole)
        if match is not None:
            self.activatedMatch.emit(match)

    def visible_rows(self) -> list[int]:
        """Rows whose cards intersect the viewport (what the user sees now).

        Probes the viewport on a half-card grid with ``indexAt``: cost proportional to the
        viewport, not to the number of rows, and right in batched layout mode too.
        """
        model = self.model()
        if model is None or model.rowCount() == 0:
            return []
        viewport = self.viewport().rect()
        grid = self.gridSize()
        step_x = max(8, grid.width() // 2)
        step_y = max(8, grid.height() // 2)
        rows: set[int] = set()
        for y in range(viewport.top() + 2, viewport.bottom() + step_y, step_y):
            for x in range(viewport.left() + 2, viewport.right() + step_x, step_x):
                index = self.indexAt(
                    QPoint(min(x, viewport.right() - 1), min(y, viewport.bottom() - 1))
                )
                if index.isValid():
                    rows.add(index.row())
        return sorted(rows)

    def current_match(self) -> Any | None:
        index = self.currentIndex()
        return index.data(MatchRole) if index.isValid() else None

    def selected_matches(self) -> list[Any]:
        return [
            i.data(MatchRole)
            for i in sorted(self.selectionModel().selectedIndexes(), key=lambda i: i.row())
        ]

    def step(self, delta: int) -> None:
        """Select the next (``+1``) or previous (``-1``) result."""
        model = self.model()
        if model is None or model.rowCount() == 0:
            return
        row = self.currentIndex().row() if self.currentIndex().isValid() else -1
        row = max(0, min(model.rowCount() - 1, row + delta if row >= 0 else 0))
        index = model.index(row, 0)
        self.setCurrentIndex(index)
        self.scrollTo(index)
