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


# ---------------------------------------------------------------------- catalog locations
#: ``--catalog milvus-lite:PATH``: a catalog folder whose vectors live in Milvus Lite in it.
LITE_SCHEME = "milvus-lite:"
LITE_FILE = "vectors.milvus.db"
#: ``--catalog milvus://HOST:PORT/NAME``: vectors on a Milvus server, in collection NAME.
SERVER_SCHEME = "milvus://"


def parse_server(text: str) -> tuple[str, int, str]:
    """(host, port, collection) of ``milvus://HOST:PORT/NAME``; a one-line error otherwise."""
    import re
    from urllib.parse import urlsplit

    from .errors import CatalogError

    try:
        parts = urlsplit(text)
        host, port, name = parts.hostname, parts.port, parts.path.strip("/")
    except ValueError:
        host = port = name = None
    if not host or not port or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", name or ""):
        raise CatalogError(f"{text}: expected milvus://HOST:PORT/NAME (NAME: letters, digits, _)")
    return host, port, name


def catalog_location(text: str | os.PathLike) -> tuple[Path, str | None]:
    """(catalog folder, vector backend it names or None) of a ``--catalog`` value: a folder,
    ``milvus-lite:PATH`` (backend ``milvus-lite``) or ``milvus://HOST:PORT/NAME`` (its records in
    a local folder under the user data dir named HOST-PORT-NAME: per desktop, in this version)."""
    text = os.fspath(text)
    if text.startswith(LITE_SCHEME):
        from .errors import CatalogError

        if not text[len(LITE_SCHEME):]:
            raise CatalogError(f"{text}: expected milvus-lite:PATH (the catalog folder)")
        return Path(text[len(LITE_SCHEME):]).expanduser(), LITE_SCHEME.rstrip(":")
    if text.startswith(SERVER_SCHEME):
        host, port, name = parse_server(text)
        folder = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "milvus" / f"{host}-{port}-{name}"
        return folder, f"{SERVER_SCHEME}{host}:{port}/{name}"
    return Path(text).expanduser(), None
