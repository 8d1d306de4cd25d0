"""Conversions between numpy RGB arrays (what the engine uses) and QImage."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPainter


def qimage_from_rgb(rgb: np.ndarray) -> QImage:
    """A QImage that owns a copy of an ``H x W x 3`` (or ``H x W``) uint8 array."""
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    if arr.ndim == 2:
        h, w = arr.shape
        image = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        h, w = arr.shape[:2]
        image = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    else:
        raise ValueError(f"expected an HxWx3 or HxW uint8 array, got shape {arr.shape}")
    return image.copy()  # detach from the numpy buffer


def rgb_from_qimage(image: QImage) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB array from any QImage; transparency is composited on white."""
    if image.isNull():
        raise ValueError("the image is empty")
    if image.hasAlphaChannel():
        flat = QImage(image.size(), QImage.Format.Format_RGB888)
        flat.fill(Qt.GlobalColor.white)
        painter = QPainter(flat)
        painter.drawImage(0, 0, image)
        painter.end()
        image = flat
    else:
        image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * h)
    return buf.reshape(h, stride)[:, : w * 3].reshape(h, w, 3).copy()
