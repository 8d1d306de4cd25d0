"""The data files the bundle carries, at the same paths relative to the code as in a checkout.

The code finds its data next to its packages (``engine/paths.py`` models, ``desktop/resources.py``
assets, ``engine/case_report.py`` fonts and templates); PyInstaller sets each module's
``__file__`` inside ``_internal/``, so the same relative places there need no frozen-only code.
Used by ``lookalike.spec`` and checked by ``tests/test_packaging.py``.
"""

from __future__ import annotations

from pathlib import Path

# (glob relative to the repository root) -> destination folder inside the bundle's _internal/
DATA_GLOBS = (
    "models/*/model.onnx",
    "models/*/model.json",
    "models/*/*.txt",
    "assets/*.svg",
    "assets/*.png",
    "assets/icons/*.svg",
    "assets/fonts/*.ttf",
    "assets/fonts/*.txt",
    "engine/templates/*.html",
)


def data_files(root: Path) -> list[tuple[str, str]]:
    """(source file, destination folder) pairs in PyInstaller's ``datas`` form."""
    out = []
    for pattern in DATA_GLOBS:
        for path in sorted(root.glob(pattern)):
            out.append((str(path), str(path.parent.relative_to(root))))
    return out
