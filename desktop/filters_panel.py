"""Search knobs: category, brand, price range, minimum score, number of results, and whether a
product with several matching photos is one result or one per photo."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

ANY = "Any"
MAX_RESULTS = 5000
SCORE_STEPS = 1000  # slider positions for scores 0..1


def engine_thresholds() -> dict[str, float]:
    """The named score thresholds from ``engine.scoring`` (empty if the engine lacks them)."""
    try:
        from engine import scoring
    except Exception:  # noqa: BLE001 - the slider still works without named marks
        return {}
    labels = getattr(scoring, "STRENGTH_LABELS", {})
    return {str(labels.get(k, k)): float(v) for k, v in dict(scoring.THRESHOLDS).items()}


class FiltersPanel(QGroupBox):
    """Emits :attr:`changed` with a dict of :class:`desktop.session.SearchOptions` fields,
    debounced so that dragging the slider or typing a price runs one search, not twenty."""

    changed = Signal(dict)

    def __init__(self, parent=None, *, debounce_ms: int = 250):
        super().__init__("Filters", parent)
        form = QFormLayout(self)
        form.setContentsMargins(8, 8, 8, 8)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.category = QComboBox()
        self.category.setAccessibleName("Category filter")
        self.category.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.category.setMinimumContentsLength(12)
        form.addRow("&Category", self.category)

        self.brand = QComboBox()
        self.brand.setAccessibleName("Brand filter")
        self.brand.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.brand.setMinimumContentsLength(12)
        form.addRow("&Brand", self.brand)

        price = QWidget()
        price_row = QHBoxLayout(price)
        price_row.setContentsMargins(0, 0, 0, 0)
        self.price_min = self._price_box("Minimum price")
        self.price_max = self._price_box("Maximum price")
        price_row.addWidget(self.price_min)
        price_row.addWidget(QLabel("–"))
        price_row.addWidget(self.price_max)
        form.addRow("&Price", price)

        score = QWidget()
        score_col = QVBoxLayout(score)
        score_col.setContentsMargins(0, 0, 0, 0)
        score_col.setSpacing(2)
        slider_row = QHBoxLayout()
        self.min_score = QSlider(Qt.Orientation.Horizontal)
        # 0.001 steps: the calibrated thresholds (engine.scoring) are not multiples of 0.01
        self.min_score.setRange(0, SCORE_STEPS)
        self.min_score.setSingleStep(5)
        self.min_score.setPageStep(50)
        self.min_score.setAccessibleName("Minimum score")
        self.min_score.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.min_score.setTickInterval(SCORE_STEPS // 10)
        self.min_score.setMinimumWidth(100)
        self.min_score_label = QLabel("0.000")
        self.min_score_label.setMinimumWidth(34)
        slider_row.addWidget(self.min_score, 1)
        slider_row.addWidget(self.min_score_label)
        score_col.addLayout(slider_row)
        presets = QHBoxLayout()
        presets.setSpacing(2)
        self._presets = presets
        self.preset_buttons: dict[str, QToolButton] = {}
        all_button = self._preset_button("all")
        all_button.setToolTip("No minimum score")
        all_button.clicked.connect(lambda: self.set_min_score(0.0))
        presets.addWidget(all_button)
        presets.addStretch(1)
        score_col.addLayout(presets)
        form.addRow("Min &score", score)

        self.count = QSpinBox()
        self.count.setRange(1, MAX_RESULTS)
        self.count.setSingleStep(10)
        self.count.setValue(60)
        self.count.setAccessibleName("Number of results")
        form.addRow("&Results", self.count)

        # one result per product (its best photo, "N photos" when several matched) by default
        self.all_images = QCheckBox("Show all &images")
        self.all_images.setAccessibleName("Show all images")
        self.all_images.setToolTip(
            "One result per matching image. Off: one result per product, shown by its best "
            "photo, with how many of its photos matched"
        )
        form.addRow(self.all_images)

        self.reset_button = QPushButton("Reset filters")
        self.reset_button.clicked.connect(self.reset)
        form.addRow(self.reset_button)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(debounce_ms)
        self._debounce.timeout.connect(self._emit)
        self._quiet = False
        self.set_facets({})
        for signal in (
            self.category.currentIndexChanged,
            self.brand.currentIndexChanged,
            self.price_min.valueChanged,
            self.price_max.valueChanged,
            self.min_score.valueChanged,
            self.count.valueChanged,
            self.all_images.toggled,
        ):
            signal.connect(self._schedule)
        self.min_score.valueChanged.connect(
            lambda v: self.min_score_label.setText(f"{v / SCORE_STEPS:.3f}")
        )

    def _preset_button(self, text: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setAutoRaise(True)
        font = button.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        button.setFont(font)
        return button

    def _price_box(self, name: str) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(-1.0, 1e8)
        box.setMinimumWidth(80)
        box.setDecimals(2)
        box.setSpecialValueText(ANY)  # shown at the minimum (-1): no bound
        box.setValue(-1.0)
        box.setAccessibleName(name)
        box.setKeyboardTracking(False)
        return box

    # -- values ------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        def price(box: QDoubleSpinBox) -> float | None:
            return None if box.value() <= box.minimum() else float(box.value())

        return {
            "category": self.category.currentData(),
            "brand": self.brand.currentData(),
            "price_min": price(self.price_min),
            "price_max": price(self.price_max),
            "min_score": self.min_score.value() / SCORE_STEPS,
            "k": self.count.value(),
            "group": "image" if self.all_images.isChecked() else "product",
        }

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Add one button per named threshold (from ``engine.scoring.THRESHOLDS``)."""
        for button in self.preset_buttons.values():
            button.deleteLater()
        self.preset_buttons.clear()
        for name, value in sorted(thresholds.items(), key=lambda kv: kv[1]):
            button = self._preset_button(name)
            button.setToolTip(f"Only matches scoring at least {value:.2f} ({name} or stronger)")
            button.clicked.connect(lambda _=False, v=value: self.set_min_score(v))
            self._presets.insertWidget(self._presets.count() - 1, button)
            self.preset_buttons[name] = button

    def set_min_score(self, value: float) -> None:
        self.min_score.setValue(round(max(0.0, min(1.0, value)) * SCORE_STEPS))

    def set_values(
        self, *, k: int | None = None, min_score: float | None = None, group: str | None = None
    ) -> None:
        """Restore remembered knobs without triggering a search."""
        self._quiet = True
        try:
            if k is not None:
                self.count.setValue(int(k))
            if min_score is not None:
                self.set_min_score(min_score)
            if group is not None:
                self.all_images.setChecked(group == "image")
        finally:
            self._quiet = False

    def set_facets(self, facets: dict) -> None:
        """Fill the category/brand lists from the catalog, keeping the current choice if possible."""
        self._quiet = True
        try:
            for combo, key, label in (
                (self.category, "categories", "All categories"),
                (self.brand, "brands", "All brands"),
            ):
                current = combo.currentData()
                combo.clear()
                combo.addItem(label, None)
                for value in facets.get(key) or []:
                    if value not in (None, ""):
                        combo.addItem(str(value), value)
                index = combo.findData(current) if current is not None else 0
                combo.setCurrentIndex(max(0, index))
            low, high = facets.get("price_min"), facets.get("price_max")
            if low is not None and high is not None:
                tip = f"Catalog prices range from {low:,.2f} to {high:,.2f}"
                self.price_min.setToolTip(tip)
                self.price_max.setToolTip(tip)
        finally:
            self._quiet = False

    def reset(self) -> None:
        self._quiet = True
        try:
            self.category.setCurrentIndex(0)
            self.brand.setCurrentIndex(0)
            self.price_min.setValue(self.price_min.minimum())
            self.price_max.setValue(self.price_max.minimum())
            self.min_score.setValue(0)
        finally:
            self._quiet = False
        self._schedule()

    # -- debounce -------------------------------------------------------------------------------------
    def _schedule(self, *_: Any) -> None:
        if not self._quiet:
            self._debounce.start()

    def flush(self) -> None:
        """Emit a pending change now (used by tests and before exporting)."""
        if self._debounce.isActive():
            self._debounce.stop()
            self._emit()

    def _emit(self) -> None:
        self.changed.emit(self.options())
