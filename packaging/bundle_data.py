"""The data files the bundle carries, at the same paths relative to the code as in a checkout.

The code finds its data next to its packages (``engine/paths.py`` models, ``desktop/resources.py``
assets, ``engine/case_report.py`` fonts and templates); PyInstaller sets each module's
``__file__`` inside ``_internal/``, so the same relative places there need no frozen-only code.
Used by ``lookalike.spec`` and checked by ``tests/test_packaging.py``.
"""

from __future__ import annotations

from pathlib import Path

#: the model packs in the bundle: the default one (engine.model.DEFAULT_PACK). The fp32 pack
#: retrieves no better at twice the CPU (docs/models.md) and would add 18 MiB past the size
#: target; build.sh packs the others into a separate ``-extra-packs`` tarball that unpacks over
#: the bundle, for catalogs indexed with them.
BUNDLED_PACKS = ("efficientnet-lite0-int8",)
PACK_FILES = ("model.onnx", "model.json", "*.txt")

# (glob relative to the repository root) -> destination folder inside the bundle's _internal/
DATA_GLOBS = tuple(f"models/{pack}/{name}" for pack in BUNDLED_PACKS for name in PACK_FILES) + (
    "assets/*.svg",
    "assets/*.png",
    "assets/icons/*.svg",
    "assets/fonts/*.ttf",
    "assets/fonts/*.txt",
    "engine/templates/*.html",
)


def _pairs(root: Path, patterns) -> list[tuple[str, str]]:
    out = []
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            out.append((str(path), str(path.parent.relative_to(root))))
    return out


def data_files(root: Path) -> list[tuple[str, str]]:
    """(source file, destination folder) pairs in PyInstaller's ``datas`` form."""
    return _pairs(root, DATA_GLOBS)


def extra_pack_files(root: Path) -> list[tuple[str, str]]:
    """The same pairs for the model packs left out of the bundle (the extra-packs tarball)."""
    others = sorted(p.name for p in (root / "models").iterdir()
                    if (p / "model.json").is_file() and p.name not in BUNDLED_PACKS)
    return _pairs(root, [f"models/{pack}/{name}" for pack in others for name in PACK_FILES])


if __name__ == "__main__":       # build.sh: the extra packs' files, "SOURCE<TAB>DESTINATION" lines
    for src, dest in extra_pack_files(Path(__file__).resolve().parent.parent):
        print(f"{src}\t{dest}")
