"""Right panel: everything known about the selected result, with actions on it, and the
product's matched photos when several of them matched."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from . import resources
from .results_model import format_price, format_score, image_count, match_title, product_sku
from .results_view import STRENGTH_LABELS, strength_color
from .why import WHY_TOOLTIP, why_html

WEB_SCHEMES = {"http", "https"}
PHOTO_ICON = 48
PHOTO_ROLE = Qt.ItemDataRole.UserRole + 1  # the photo's Match
SHOWN_KEYS = {
    "image_id", "path", "width", "height", "product_id", "title", "brand", "price", "currency",
    "category", "url", "description", "extra", "added_at", "sku", "file_size",
    "content_hash", "model_id", "labels", "updated_at",  # internal: not product data
}  # fmt: skip


class ElidedLabel(QLabel):
    """A one-line label that elides its text to the width it is given (paths, URLs)."""

    def __init__(
        self, text: str, mode: Qt.TextElideMode = Qt.TextElideMode.ElideMiddle, parent=None
    ):
        super().__init__(parent)
        self._full = text
        self._mode = mode
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setToolTip(text)
        super().setText(text)

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        super().setText(
            self.fontMetrics().elidedText(self._full, self._mode, max(20, self.width()))
        )


def open_external(url: QUrl) -> bool:
    """Open a URL with the desktop (browser, file manager). Tests replace this function."""
    return QDesktopServices.openUrl(url)


def web_url(text: Any) -> QUrl | None:
    """A product URL fit to open in a browser (http/https only: feeds are untrusted input)."""
    if not text:
        return None
    url = QUrl(str(text).strip())
    return url if url.isValid() and url.scheme().lower() in WEB_SCHEMES else None


class DetailsPanel(QScrollArea):
    compareRequested = Signal(object)  # Match
    photoActivated = Signal(object)  # Match: one of the product's photos, to compare with the query
    message = Signal(str, str)  # level, text

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumWidth(260)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.setWidget(body)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(8)

        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(160)
        self.preview.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        layout.addWidget(self.preview)

        self.title = QLabel("No result selected")
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title.setFont(font)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.title)

        self.badge = QLabel()
        self.badge.setTextFormat(Qt.TextFormat.RichText)
        self.badge.setWordWrap(True)
        self.badge.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.badge)

        # why it matched: the evidence in plain words, the words read on the query marked
        self.why = QLabel()
        self.why.setTextFormat(Qt.TextFormat.RichText)
        self.why.setWordWrap(True)
        self.why.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.why.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.why.setToolTip(WHY_TOOLTIP)
        self.why.setAccessibleName("Why it matched")
        layout.addWidget(self.why)
        self.read: list[str] = []  # the text lines read on the query (QueryResult.read)

        # a product several of whose photos matched: each of them (double-click: compare)
        self.photos_label = QLabel()
        self.photos_label.setWordWrap(True)
        self.photos_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.photos_label)
        self.photos = QListWidget()
        self.photos.setAccessibleName("Matched photos of the product")
        self.photos.setIconSize(QSize(PHOTO_ICON, PHOTO_ICON))
        self.photos.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.photos.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.photos.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.photos.itemActivated.connect(self._on_photo_activated)
        layout.addWidget(self.photos)
        self._photo_items: dict[int, QListWidgetItem] = {}

        self.form = QFormLayout()
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.addLayout(self.form)

        buttons = QGridLayout()
        buttons.setSpacing(4)
        self.compare_button = self._button(
            "Compare", "compare", "Compare with the query side by side (C)"
        )
        self.reveal_button = self._button(
            "Folder", "folder", "Show the folder holding this image (Ctrl+Shift+R)"
        )
        self.url_button = self._button(
            "Web page", "link", "Open the product page in the browser (Ctrl+Shift+U)"
        )
        self.copy_sku_button = self._button("SKU", "copy", "Copy the product id / SKU")
        self.copy_id_button = self._button("Image id", "copy", "Copy the catalog image id")
        self.copy_path_button = self._button("Path", "copy", "Copy the image file path")
        for i, button in enumerate(
            (
                self.compare_button,
                self.reveal_button,
                self.url_button,
                self.copy_sku_button,
                self.copy_id_button,
                self.copy_path_button,
            )
        ):
            button.setMinimumWidth(40)
            button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            buttons.addWidget(button, i // 3, i % 3)
        layout.addLayout(buttons)

        self.description = QTextBrowser()
        self.description.setOpenLinks(False)
        self.description.setMaximumHeight(140)
        self.description.setAccessibleName("Product description")
        layout.addWidget(self.description)
        layout.addStretch(1)

        self.compare_button.clicked.connect(
            lambda: self.match and self.compareRequested.emit(self.match)
        )
        self.reveal_button.clicked.connect(self.reveal_in_folder)
        self.url_button.clicked.connect(self.open_product_url)
        self.copy_sku_button.clicked.connect(
            lambda: self._copy(product_sku(self._product(), self.match), "SKU")
        )
        self.copy_id_button.clicked.connect(
            lambda: self._copy(str(self.match.image_id), "image id")
        )
        self.copy_path_button.clicked.connect(lambda: self._copy(str(self.match.path), "path"))
        self.match: Any = None
        self.record: dict = {}
        self.fields: dict[str, str] = {}
        self.show_match(None)

    def _button(self, text: str, icon: str, tip: str) -> QPushButton:
        button = QPushButton(resources.icon(icon), text)
        button.setToolTip(tip)
        return button

    def _product(self) -> dict:
        merged = dict(self.record or {})
        if self.match is not None:
            merged.update(
                {k: v for k, v in (self.match.product or {}).items() if v not in (None, "")}
            )
        return merged

    # -- content -----------------------------------------------------------------------------------
    def show_match(self, match: Any, thumbnail: QImage | None = None) -> None:
        self.match = match
        self.record = {}
        self._fill(thumbnail)

    def set_read(self, lines: Any) -> None:
        """The text lines read on the current query (QueryResult.read): shown with the words
        that matched the selected product marked."""
        self.read = [str(line) for line in lines or () if str(line).strip()]
        self._fill_why()

    def _fill_why(self) -> None:
        html = why_html(self.match, self.read) if self.match is not None else ""
        self.why.setText(html)
        self.why.setVisible(bool(html))

    def set_record(self, match: Any, record: dict | None) -> None:
        """More data about ``match`` from ``catalog.image_record`` (arrives from a worker)."""
        if match is self.match and record:
            self.record = dict(record)
            self._fill(None, keep_preview=True)

    def set_thumbnail(self, image_id: int, image: QImage | None) -> None:
        if self.match is not None and int(self.match.image_id) == image_id and image is not None:
            self._set_preview(image)
        item = self._photo_items.get(int(image_id))
        if item is not None and image is not None and not image.isNull():
            item.setIcon(QIcon(QPixmap.fromImage(image)))

    def photo_matches(self) -> list[Any]:
        """The product's matched photos, best first (the shown one first), when there are
        several; else empty."""
        match = self.match
        if match is None or image_count(match) < 2:
            return []
        return [match, *(getattr(match, "images", None) or [])]

    def image_ids(self) -> set[int]:
        """The catalog images whose thumbnails the panel shows."""
        ids = {int(m.image_id) for m in self.photo_matches()}
        if self.match is not None:
            ids.add(int(self.match.image_id))
        return ids

    def _fill_photos(self) -> None:
        self.photos.clear()
        self._photo_items = {}
        photos = self.photo_matches()
        self.photos_label.setVisible(bool(photos))
        self.photos.setVisible(bool(photos))
        if not photos:
            return
        self.photos_label.setText(
            f"<b>{image_count(self.match)} photos</b> of this product matched "
            "(double-click one to compare it):"
        )
        placeholder = QIcon(resources.pixmap("placeholder", PHOTO_ICON))
        for photo in photos:
            name = Path(str(photo.path)).name
            strength = STRENGTH_LABELS.get(photo.strength, "").lower()
            text = " · ".join(t for t in (format_score(photo.score), strength, name) if t)
            item = QListWidgetItem(placeholder, text)
            item.setToolTip(f"image #{photo.image_id} · score {photo.score:.3f}\n{photo.path}")
            item.setData(PHOTO_ROLE, photo)
            self.photos.addItem(item)
            self._photo_items[int(photo.image_id)] = item
        row = self.photos.sizeHintForRow(0) if self.photos.count() else PHOTO_ICON
        self.photos.setFixedHeight(min(len(photos), 4) * max(row, PHOTO_ICON + 4) + 6)

    def _on_photo_activated(self, item: QListWidgetItem) -> None:
        photo = item.data(PHOTO_ROLE)
        if photo is not None:
            self.photoActivated.emit(photo)

    def _set_preview(self, image: QImage | None) -> None:
        if image is None or image.isNull():
            self.preview.setPixmap(resources.pixmap("placeholder", 64))
        else:
            pix = QPixmap.fromImage(image)
            self.preview.setPixmap(
                pix.scaled(
                    220,
                    160,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )

    def _fill(self, thumbnail: QImage | None, keep_preview: bool = False) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields = {}
        match = self.match
        has = match is not None
        for button in (
            self.compare_button,
            self.reveal_button,
            self.copy_id_button,
            self.copy_path_button,
        ):
            button.setEnabled(has)
        if not keep_preview:
            self._fill_photos()
        self._fill_why()
        if not has:
            self.title.setText("No result selected")
            self.badge.setText("Select a result to see its product data.")
            self.preview.clear()
            self.url_button.setEnabled(False)
            self.copy_sku_button.setEnabled(False)
            self.description.clear()
            self.description.setVisible(False)
            return
        if not keep_preview:
            self._set_preview(thumbnail)
        product = self._product()
        self.title.setText(match_title(match))
        color = strength_color(match.strength).name()
        label = STRENGTH_LABELS.get(match.strength, "below the “similar” threshold")
        self.badge.setText(
            f"<span style='color:{color}; font-weight:600'>{label}</span>"
            f" &nbsp;score <b>{match.score:.3f}</b> &nbsp;rank #{match.rank}"
        )
        sku = product_sku(product, match)
        self._row("SKU", sku)
        if product.get("product_id") and product.get("product_id") != sku:
            self._row("Product id", product.get("product_id"))
        self._row("Image id", str(match.image_id))
        self._row("Brand", product.get("brand"))
        self._row("Category", product.get("category"))
        self._row("Price", format_price(product))
        if product.get("width") and product.get("height"):
            size = f"{product['width']} × {product['height']} px"
            if product.get("file_size"):
                size += f", {_file_size(product['file_size'])}"
            self._row("Size", size)
        url = web_url(product.get("url"))
        if product.get("url"):
            self._row("URL", str(product["url"]), elide=True)
        self._row("File", str(match.path), elide=True)
        self._row("Added", _when(product.get("added_at")))
        extra = product.get("extra") or {}
        if isinstance(extra, dict):
            for key, value in extra.items():
                if value not in (None, "", [], {}):
                    self._row(str(key).replace("_", " ").capitalize(), _short(value))
        for key, value in product.items():  # anything else the engine adds
            if (
                key not in SHOWN_KEYS
                and value not in (None, "", [], {})
                and not isinstance(value, (dict, list))
            ):
                self._row(str(key).replace("_", " ").capitalize(), _short(value))
        self.url_button.setEnabled(url is not None)
        self.copy_sku_button.setEnabled(bool(sku))
        self.url_button.setToolTip(url.toString() if url else "This product has no web address")
        description = product.get("description")
        self.description.setPlainText(str(description) if description else "")
        self.description.setVisible(bool(description))

    def _row(self, name: str, value: Any, *, elide: bool = False) -> None:
        if value in (None, ""):
            return
        text = str(value)
        if elide:
            label: QLabel = ElidedLabel(text)
        else:
            label = QLabel(text)
            label.setTextFormat(Qt.TextFormat.PlainText)
            label.setWordWrap(True)
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setToolTip(text)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.form.addRow(name, label)
        self.fields[name] = text

    # -- actions ---------------------------------------------------------------------------------
    def reveal_in_folder(self) -> None:
        if self.match is None:
            return
        folder = Path(str(self.match.path)).parent
        if not folder.is_dir():
            self.message.emit("warning", f"{folder}: the folder no longer exists")
            return
        if not open_external(QUrl.fromLocalFile(str(folder))):
            self.message.emit("warning", f"{folder}: no file manager could open it")

    def open_product_url(self) -> None:
        url = web_url(self._product().get("url"))
        if url is None:
            self.message.emit("warning", "This product has no web address.")
        elif not open_external(url):
            self.message.emit("warning", f"{url.toString()}: no browser could open it")

    def _copy(self, text: str, what: str) -> None:
        if self.match is None or not text:
            return
        QGuiApplication.clipboard().setText(text)
        self.message.emit("info", f"Copied the {what}: {text}")


def _when(value: Any) -> str:
    """A timestamp (epoch seconds or ISO 8601, UTC) in local time, to the minute."""
    if value in (None, ""):
        return ""
    try:
        if isinstance(value, (int, float)):
            moment = _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
        else:
            moment = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.timezone.utc)
        return moment.astimezone().strftime("%Y-%m-%d %H:%M")
    except (ValueError, OverflowError, OSError):
        return str(value)


def _file_size(n: Any) -> str:
    try:
        n = float(n)
    except (TypeError, ValueError):
        return str(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _short(value: Any, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
