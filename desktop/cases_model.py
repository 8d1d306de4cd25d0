"""The Qt model of a case's offers (desktop.cases_view): one row per offer, strongest match first.

Rows are plain ``engine.case_store.OfferRecord`` objects kept sorted by score (descending; offers
that failed or are not checked yet last, then by number), as ``CaseStore.offers`` returns them. A
record arriving from a running check or watch (:meth:`OffersModel.upsert`) is inserted at its
place or moved there (``beginMoveRows``: the selection follows it). Thumbnails are lazy, as in
the results grid: ``data(DecorationRole)`` is only asked for painted rows, a miss paints a
placeholder and schedules the decode, and the row is refreshed when the image arrives. The offer
images come from a :class:`desktop.thumbnails.FileThumbnailLoader` keyed by offer number, the
best matches from the catalog's :class:`desktop.thumbnails.ThumbnailLoader` by image id.
"""

from __future__ import annotations

import bisect
import os
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QPixmap

from engine.case_store import DECISION_LABELS, INFRINGING, NOT_INFRINGING, UNSURE

RecordRole = Qt.ItemDataRole.UserRole + 1

DECISION_COLORS = {INFRINGING: QColor(198, 40, 40), NOT_INFRINGING: QColor(46, 125, 50),
                   UNSURE: QColor(239, 108, 0)}
#: CSV columns (compared case-insensitively) that name the seller and the offer's page
SELLER_COLUMNS = ("seller", "shop", "store", "merchant", "vendor")
URL_COLUMNS = ("offer url", "offer_url", "url", "listing url", "link", "offer link", "offer")


def sort_key(record: Any) -> tuple:
    """Strongest match first; failed and unchecked offers last; then by number."""
    score = record.score
    return (score is None, -(score or 0.0), record.number)


def edits_text(record: Any) -> str:
    """The edits found between the offer and its best match, as a comma list ("" when none)."""
    edits = record.edits or {}
    return ", ".join(str(e) for e in edits.get("edits") or [])


def field_value(fields: dict, names: tuple[str, ...]) -> str:
    lowered = {str(k).strip().lower(): v for k, v in (fields or {}).items()}
    for name in names:
        value = lowered.get(name)
        if value not in (None, ""):
            return str(value)
    return ""


def offer_source(record: Any) -> str:
    """Who sells it where: the CSV's seller and offer URL, else the image file's name."""
    seller = field_value(record.fields, SELLER_COLUMNS)
    url = field_value(record.fields, URL_COLUMNS)
    text = " · ".join(t for t in (seller, url) if t)
    return text or os.path.basename(record.image_path)


def product_text(match: dict | None) -> str:
    """The best match's product: title (SKU), else the catalog image's file name."""
    if not match:
        return ""
    title, product = match.get("title"), match.get("product_id")
    if title and product:
        return f"{title} ({product})"
    return str(title or product or os.path.basename(str(match.get("path") or "")))


def decision_text(record: Any) -> str:
    if not record.decision:
        return ""
    text = DECISION_LABELS.get(record.decision, record.decision)
    return text + (" (older file)" if record.decided_on_other_file else "")


def strength_text(record: Any) -> str:
    if record.error:
        return f"failed: {record.error}"
    if record.score is None:
        return "not checked"
    return f"{record.score:.2f} {record.strength}".strip()


class OffersModel(QAbstractTableModel):
    """A case's offers with thumbnails of the offer and its best match."""

    COLUMNS = ("#", "Offer", "Best match", "Score", "Edits", "Decision", "Note", "Seller / offer", "Product")
    NUMBER, OFFER, MATCH, SCORE, EDITS, DECISION, NOTE, SOURCE, PRODUCT = range(9)

    def __init__(self, offer_images=None, match_images=None, icon_size: QSize = QSize(64, 64), parent=None):
        super().__init__(parent)
        self._records: list[Any] = []
        self._keys: list[tuple] = []  # sort_key of each row, for bisect
        self.offer_images, self.match_images = offer_images, match_images
        self.icon_size = icon_size
        self._placeholder = QPixmap(icon_size)
        self._placeholder.fill(QColor(225, 225, 225))
        self._pixmaps: dict[tuple[str, int], QPixmap] = {}
        if offer_images is not None:
            offer_images.ready.connect(lambda key: self._on_image("offer", key, self.OFFER))
        if match_images is not None:
            match_images.ready.connect(lambda key: self._on_image("match", key, self.MATCH))

    # -- contents ------------------------------------------------------------------------------
    def set_records(self, records: list[Any]) -> None:
        self.beginResetModel()
        self._records = sorted(records, key=sort_key)
        self._keys = [sort_key(r) for r in self._records]
        self._pixmaps.clear()
        for r in self._records:
            self._register(r)
        self.endResetModel()

    def records(self) -> list[Any]:
        return list(self._records)

    def record(self, row: int) -> Any | None:
        return self._records[row] if 0 <= row < len(self._records) else None

    def row_of(self, offer: str) -> int:
        for row, r in enumerate(self._records):
            if r.offer == offer:
                return row
        return -1

    def upsert(self, record: Any) -> int:
        """Show ``record`` (new, or a newer state of a shown offer) at its place; returns its row."""
        self._register(record)
        old = self.row_of(record.offer)
        key = sort_key(record)
        if old < 0:
            row = bisect.bisect_left(self._keys, key)
            self.beginInsertRows(QModelIndex(), row, row)
            self._records.insert(row, record)
            self._keys.insert(row, key)
            self.endInsertRows()
            return row
        del self._keys[old]
        row = bisect.bisect_left(self._keys, key)  # its row once it has left its old one
        self._pixmaps.pop(("offer", record.number), None)
        if row == old:
            self._records[old] = record
            self._keys.insert(old, key)
            self.dataChanged.emit(self.index(old, 0), self.index(old, len(self.COLUMNS) - 1))
            return old
        # Qt's destination is counted before the move: past the old row it is one further
        self.beginMoveRows(QModelIndex(), old, old, QModelIndex(), row + 1 if row > old else row)
        del self._records[old]
        self._records.insert(row, record)
        self._keys.insert(row, key)
        self.endMoveRows()
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))
        return row

    def _register(self, record: Any) -> None:
        if self.offer_images is not None and record.number:
            self.offer_images.set_path(record.number, record.image_path)

    # -- Qt model API (constant time) ------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._records):
            return None
        r = self._records[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(r, col)
        if role == Qt.ItemDataRole.DecorationRole:
            if col == self.OFFER:
                return self._pixmap("offer", r.number, self.offer_images)
            if col == self.MATCH and r.best:
                return self._pixmap("match", int(r.best.get("image_id") or 0), self.match_images)
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            if col in (self.OFFER, self.SOURCE):
                return "\n".join([r.offer, r.image_path, *(f"{k}: {v}" for k, v in r.fields.items())])
            if col == self.MATCH and r.best:
                return str(r.best.get("path") or "")
            text = self._text(r, col)
            return text or None
        if role == Qt.ItemDataRole.ForegroundRole and col == self.DECISION and r.decision:
            return QBrush(DECISION_COLORS.get(r.decision, QColor(0, 0, 0)))
        if role == Qt.ItemDataRole.ForegroundRole and col == self.SCORE and r.error:
            return QBrush(QColor(120, 120, 120))
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (self.NUMBER, self.SCORE):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == RecordRole:
            return r
        return None

    def _text(self, r: Any, col: int) -> str:
        if col == self.NUMBER:
            return str(r.number)
        if col == self.SCORE:
            return strength_text(r)
        if col == self.EDITS:
            return edits_text(r)
        if col == self.DECISION:
            return decision_text(r)
        if col == self.NOTE:
            return r.note or ""
        if col == self.SOURCE:
            return offer_source(r)
        if col == self.PRODUCT:
            return product_text(r.best)
        if col == self.OFFER:
            return "" if self.offer_images is not None else os.path.basename(r.image_path)
        return ""

    def _pixmap(self, kind: str, key: int, loader) -> QPixmap | None:
        if loader is None:
            return None
        pixmap = self._pixmaps.get((kind, key))
        if pixmap is not None:
            return pixmap
        image = loader.get(key)
        if image is None:
            return self._placeholder
        pixmap = QPixmap.fromImage(image)
        self._pixmaps[(kind, key)] = pixmap
        return pixmap

    def _on_image(self, kind: str, key: int, column: int) -> None:
        self._pixmaps.pop((kind, key), None)
        for row, r in enumerate(self._records):
            shown = r.number if kind == "offer" else int((r.best or {}).get("image_id") or -1)
            if shown == key:
                idx = self.index(row, column)
                self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])
