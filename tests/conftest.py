"""Shared fixtures. Real photos come from ../shared/datasets/luma (never copied into the repo)
and from scikit-image; tests that need Luma skip cleanly where it is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:   # CI runs the property tests on a fixed set of examples; local runs keep exploring
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:   # pragma: no cover - hypothesis is a test dependency
    pass

ROOT = Path(__file__).resolve().parent.parent
LUMA = Path(os.environ.get("LOOKALIKE_LUMA", ROOT.parent / "shared" / "datasets" / "luma"))


@pytest.fixture(scope="session")
def luma_dir() -> Path:
    if not (LUMA / "images").is_dir():
        pytest.skip(f"Luma dataset not found at {LUMA}")
    return LUMA


@pytest.fixture(scope="session")
def luma_images(luma_dir) -> list[Path]:
    return sorted((luma_dir / "images").glob("*.jpg"))


@pytest.fixture(scope="session")
def model():
    from engine.model import load_model

    return load_model()


@pytest.fixture(scope="session")
def small_luma_catalog(tmp_path_factory, luma_dir, luma_images, model):
    """A catalog of 40 Luma photos (every 18th), built once per test session. Tests must not
    modify it: copy it with ``catalog_copy`` first."""
    from engine.catalog import Catalog
    from engine.ingest import ingest

    folder = tmp_path_factory.mktemp("small-luma-catalog")
    with Catalog.open(folder) as cat:
        report = ingest(cat, model, luma_images[::18][:40])
        assert report.added == 40 and not report.failed, report.summary()
    return folder


@pytest.fixture
def catalog_copy(tmp_path):
    def copy(src: Path) -> Path:
        dst = tmp_path / "catalog-copy"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("write.lock"))
        return dst
    return copy
