"""Render assets/lookalike.svg to the PNG sizes of the desktop menu: make_icons.py OUT_DIR."""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

SIZES = (48, 128, 256)

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    app = QGuiApplication([])
    svg = Path(__file__).resolve().parent.parent / "assets" / "lookalike.svg"
    renderer = QSvgRenderer(str(svg))
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        if not image.save(str(out / f"lookalike-{size}.png")):
            sys.exit(f"make_icons: cannot write {out}")
    (out / "lookalike.svg").write_bytes(svg.read_bytes())
