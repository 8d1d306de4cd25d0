"""Where things live by default: the catalog folder and the bundled model packs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Lookalike"
CATALOG_ENV = "LOOKALIKE_CATALOG"


def default_catalog_dir() -> Path:
    """``$LOOKALIKE_CATALOG`` if set, else ``<user data dir>/Lookalike/catalog``."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "catalog"


def models_dir() -> Path:
    """The folder of bundled model packs (``models/`` next to the ``engine`` package)."""
    return Path(__file__).resolve().parent.parent / "models"
