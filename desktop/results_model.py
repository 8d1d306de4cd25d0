"""Qt item model over the ranked matches of the current query."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

from .status_bar import plural
from .thumbnails import ThumbnailLoader
from .why import matched_words_text

MatchRole = Qt.ItemDataRole.UserRole + 1
ImageIdRole = Qt.ItemDataRole.UserRole + 2
ScoreRole = Qt.ItemDataRole.UserRole + 3
StrengthRole = Qt.ItemDataRole.UserRole + 4
ThumbnailStateRole = Qt.ItemDataRole.UserRole + 5  # "ready" | "loading" | "failed"
ImageCountRole = Qt.ItemDataRole.UserRole + 6  # how many of the product's photos matched

STRENGTH_ORDER = ("likely copy", "same product", "similar")


def format_price(product: dict) -> str:
    price = product.get("price")
    if price is None or price == "":
        return ""
    try:
        text = f"{float(price):,.2f}"
    except (TypeError, ValueError):
        return str(price)
    currency = product.get("currency") or ""
    return f"{text} {currency}".strip()


def format_score(score: float) -> str:
    """Two decimals; three below 0.1, where calibrated scores of weak matches live."""
    return f"{score:.2f}" if score >= 0.1 else f"{score:.3f}"


def product_sku(product: dict, match: Any = None) -> str:
    for key in ("sku", "product_id"):
        value = product.get(key)
        if value not in (None, ""):
            return str(value)
    extra = product.get("extra") or {}
    if isinstance(extra, dict) and extra.get("sku"):
        return str(extra["sku"])
    return ""


def image_count(match: Any) -> int:
    """How many photos a result stands for: the product's matching photos (1 for an image)."""
    return int(getattr(match, "image_count", 1) or 1)


def photos_text(count: int) -> str:
    """The "N photos" badge of a product result whose photos matched more than once."""
    return f"{count} photos" if count > 1 else ""


def match_title(match: Any) -> str:
    product = match.product or {}
    title = product.get("title")
    if title:
        return str(title)
    from pathlib import Path

    return Path(str(match.path)).name


class ResultsModel(QAbstractListModel):
    """One row per :class:`engine.search.Match` (a product, shown by its best photo, or an image);
    thumbnails come from a :class:`ThumbnailLoader`."""

    def __init__(self, thumbnails: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self._matches: list[Any] = []
        self._read: list[str] = []
        self._rows_by_image: dict[int, list[int]] = {}
        thumbnails.ready.connect(self._on_thumbnail)

    # -- content -------------------------------------------------------------------------------
    def set_matches(self, matches: list[Any], read: Any = ()) -> None:
        """``read``: the text lines read on the query (QueryResult.read), for the tooltips'
        matched words as read."""
        self.beginResetModel()
        self._matches = list(matches)
        self._read = [str(line) for line in read or ()]
        self._rows_by_image = {}
        for row, match in enumerate(self._matches):
            self._rows_by_image.setdefault(int(match.image_id), []).append(row)
        self.endResetModel()

    def clear(self) -> None:
        self.set_matches([])

    def matches(self) -> list[Any]:
        return list(self._matches)

    def match_at(self, row: int) -> Any | None:
        return self._matches[row] if 0 <= row < len(self._matches) else None

    def remove_image_ids(self, image_ids: set[int]) -> None:
        keep = [m for m in self._matches if int(m.image_id) not in image_ids]
        if len(keep) != len(self._matches):
            self.set_matches(keep, read=self._read)

    # -- Qt model API ------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._matches)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._matches):
            return None
        match = self._matches[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return match_title(match)
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnails.get(int(match.image_id))
        if role == MatchRole:
            return match
        if role == ImageIdRole:
            return int(match.image_id)
        if role == ScoreRole:
            return float(match.score)
        if role == StrengthRole:
            return match.strength or ""
        if role == ImageCountRole:
            return image_count(match)
        if role == ThumbnailStateRole:
            image_id = int(match.image_id)
            if self.thumbnails.is_cached(image_id):
                return "ready"
            return "failed" if self.thumbnails.has_failed(image_id) else "loading"
        if role == Qt.ItemDataRole.ToolTipRole:
            product = match.product or {}
            lines = [
                f"<b>{_html(match_title(match))}</b>",
                f"#{match.rank} · score {match.score:.3f}"
                + (f" · {match.strength}" if match.strength else ""),
                (
                    f"SKU {_html(product_sku(product, match))} · "
                    if product_sku(product, match)
                    else ""
                )
                + f"image #{match.image_id}",
            ]
            if price := format_price(product):
                lines.append(_html(price))
            if product.get("category"):
                lines.append(_html(str(product["category"])))
            if image_count(match) > 1:
                lines.append(f"{image_count(match)} photos of this product matched; the best is shown")
            if words := matched_words_text(match, self._read):
                lines.append(f"Words on the photo that match: <b>{_html(words)}</b>")
            lines.append(f"<small>{_html(str(match.path))}</small>")
            return "<br>".join(lines)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            photos = f", {photos_text(image_count(match))}" if image_count(match) > 1 else ""
            return (
                f"Result {match.rank}: {match_title(match)}, score {match.score:.2f} "
                f"{match.strength}{photos}"
            )
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    # -- thumbnails ---------------------------------------------------------------------------------
    def _on_thumbnail(self, image_id: int) -> None:
        for row in self._rows_by_image.get(image_id, ()):
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def results_header(query, result: Any, matches: list[Any], info, options) -> str:
    """The line above the results grid: what was searched and how many results of each strength
    (``info``: the open catalog's CatalogInfo or None; ``options``: the SearchOptions)."""
    if query is None:
        return "Drop, paste or open a product photo to find its matches."
    if result is None:
        return ""
    error = getattr(result, "error", None)
    if error and not matches:
        return f"No results: {error}"
    name = query.name + (" (region)" if query.roi else "")
    if not matches and info is not None and info.images == 0:
        return "The catalog is empty: import a folder of photos or a product feed (Ctrl+I)."
    if not matches:
        floor = options.min_score
        hint = f" above the minimum score {floor:.2f}" if floor > 0 else ""
        filtered = any(v for k, v in options.filters().items() if k != "min_score")
        return f"No match for {name}{hint}{' with these filters' if filtered else ''}."
    counts: dict[str, int] = {}
    for m in matches:
        counts[m.strength or ""] = counts.get(m.strength or "", 0) + 1
    parts = []
    for key, word in (
        ("likely copy", "likely cop"),
        ("same product", "same product"),
        ("similar", "similar"),
    ):
        n = counts.get(key, 0)
        if n:
            parts.append(
                f"{n} {word + ('y' if n == 1 else 'ies') if key == 'likely copy' else word}"
            )
    text = f"{plural(len(matches), 'result')} for {name}"
    return text + (": " + ", ".join(parts) if parts else "")
