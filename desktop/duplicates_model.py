"""Qt item models for the Duplicates view: the list of groups and the images of one group.

Both models keep plain Python lists and answer ``rowCount``/``data`` in constant time, so a
QTableView over 10,000 groups (which only asks for the rows it paints) stays responsive. Thumbnails
come from a loader with ``get(image_id) -> QImage | None`` and a ``ready(int)`` signal; a miss
paints a placeholder and the row is refreshed when the image arrives.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QAbstractListModel, QAbstractTableModel, QModelIndex, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPixmap

from engine.duplicates import DuplicateGroup, Member, variant_attributes

GroupRole = Qt.ItemDataRole.UserRole + 1
MemberRole = Qt.ItemDataRole.UserRole + 2
IsRepresentativeRole = Qt.ItemDataRole.UserRole + 3


def member_title(member: Member) -> str:
    r = member.record
    name = os.path.basename(r.get("path") or "") or f"image {member.image_id}"
    product = r.get("product_id")
    title = r.get("title")
    if product and title:
        return f"{title} ({product})"
    return title or product or name


def member_details(member: Member) -> str:
    """A few lines of product data for captions and tooltips."""
    r = member.record
    lines = [member_title(member)]
    price = r.get("price")
    if price is not None:
        lines.append(f"{price:.2f} {r.get('currency') or ''}".strip())
    for key in ("brand", "category"):
        if r.get(key):
            lines.append(str(r[key]))
    variant = variant_attributes(r)
    if variant:     # item group, colour, size from the product feed
        text = " · ".join(variant[k] for k in ("item_group_id", "color", "size") if k in variant)
        lines.append(("variant of " if "item_group_id" in variant else "") + text)
    if r.get("width") and r.get("height"):
        lines.append(f"{r['width']} × {r['height']} px")
    lines.append(r.get("path") or "")
    return "\n".join(lines)


class GroupsModel(QAbstractTableModel):
    """One row per duplicate group: number, representative, image count, weakest score."""

    COLUMNS = ("Group", "Representative", "Images", "Lowest score")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._groups: list[DuplicateGroup] = []

    # -- contents ------------------------------------------------------------------------------
    def set_groups(self, groups: list[DuplicateGroup]) -> None:
        self.beginResetModel()
        self._groups = list(groups)
        self.endResetModel()

    def groups(self) -> list[DuplicateGroup]:
        return list(self._groups)

    def group(self, row: int) -> DuplicateGroup | None:
        return self._groups[row] if 0 <= row < len(self._groups) else None

    def row_of(self, group_id: int) -> int:
        for row, g in enumerate(self._groups):
            if g.group_id == group_id:
                return row
        return -1

    def replace_group(self, row: int, group: DuplicateGroup) -> None:
        self._groups[row] = group
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))

    def remove_group(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._groups[row]
        self.endRemoveRows()

    # -- Qt model API (constant time) ------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._groups)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._groups):
            return None
        g = self._groups[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return str(g.group_id)
            if col == 1:
                return member_title(g.representative)
            if col == 2:
                return str(g.size)
            return f"{g.min_score:.3f}"
        if role == Qt.ItemDataRole.ToolTipRole and col == 1:
            return member_details(g.representative)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (0, 2, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == GroupRole:
            return g
        return None


class MembersModel(QAbstractListModel):
    """The images of one group, representative first, with thumbnails."""

    def __init__(self, thumbnails=None, icon_size: QSize = QSize(160, 160), parent=None):
        super().__init__(parent)
        self._group: DuplicateGroup | None = None
        self._items: list[Member] = []
        self._rows: dict[int, int] = {}
        self.icon_size = icon_size
        self.thumbnails = thumbnails
        self._placeholder = QPixmap(icon_size)
        self._placeholder.fill(QColor(225, 225, 225))
        self._pixmaps: dict[int, QPixmap] = {}
        if thumbnails is not None:
            thumbnails.ready.connect(self._on_thumbnail)

    def set_group(self, group: DuplicateGroup | None) -> None:
        self.beginResetModel()
        self._group = group
        self._items = [] if group is None else [group.representative, *group.members]
        self._rows = {m.image_id: row for row, m in enumerate(self._items)}
        self._pixmaps.clear()
        self.endResetModel()

    def group(self) -> DuplicateGroup | None:
        return self._group

    def member(self, row: int) -> Member | None:
        return self._items[row] if 0 <= row < len(self._items) else None

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        m = self._items[index.row()]
        is_rep = index.row() == 0
        if role == Qt.ItemDataRole.DisplayRole:
            head = "Representative" if is_rep else f"{m.score:.3f}" + (" ✓ confirmed" if m.confirmed else "")
            return f"{head}\n{member_title(m)}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return member_details(m)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._pixmap(m.image_id)
        if role == MemberRole:
            return m
        if role == IsRepresentativeRole:
            return is_rep
        return None

    def _pixmap(self, image_id: int) -> QPixmap:
        pixmap = self._pixmaps.get(image_id)
        if pixmap is not None:
            return pixmap
        image: QImage | None = self.thumbnails.get(image_id) if self.thumbnails is not None else None
        if image is None:
            return self._placeholder
        pixmap = QPixmap.fromImage(image)
        self._pixmaps[image_id] = pixmap
        return pixmap

    def _on_thumbnail(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])
