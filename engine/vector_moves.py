"""Moving a catalog's vectors between stores (``lookalike vectors --to``): the local HNSW index,
Milvus Lite and a Milvus server, filled from the stored embeddings (no re-embedding)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from .errors import CatalogError
from .milvus_store import BACKEND_KEY, VERSION_KEY, MilvusVectorStore
from .paths import LITE_SCHEME, SERVER_SCHEME, parse_server
from .vector_store import VectorStore

if TYPE_CHECKING:
    from .catalog import Catalog


def move_vectors(catalog: "Catalog", to: str) -> str:
    """Move the catalog's vectors to ``to`` (``local``, the HNSW index; ``milvus-lite``; or a
    server, ``milvus://HOST:PORT/NAME``) from the stored embeddings, holding the write lock.
    ``meta.vector_store`` switches only once the new store is complete (an interrupted move leaves
    the old one in use); the old store is dropped after. Returns a line saying what was done."""
    target = {"local": "", "milvus-lite": LITE_SCHEME.rstrip(":")}.get(to)
    if target is None and to.startswith(SERVER_SCHEME):
        host, port, name = parse_server(to)
        target = f"{SERVER_SCHEME}{host}:{port}/{name}"
    if target is None:
        raise CatalogError(f"{to}: expected local, milvus-lite or milvus://HOST:PORT/NAME")
    with catalog.writer():
        current = catalog.meta(BACKEND_KEY) or ""
        if current == target:
            return f"vectors already in {to}"
        store = MilvusVectorStore(catalog, target) if target else VectorStore(catalog)
        if catalog.count_images():
            store.rebuild()
            if not target:
                store.maybe_fit_projection()
        elif target:
            catalog.set_meta(VERSION_KEY, str(catalog.version))
        catalog.set_meta(BACKEND_KEY, target)           # the switch
        old, catalog.vectors = catalog.vectors, store
        if isinstance(old, MilvusVectorStore):
            old.drop()
            if old.server is None:                       # (Milvus Lite's file)
                shutil.rmtree(old.path, ignore_errors=True)
        else:
            old.close()
            old.delete_files()
    line = f"moved {catalog.count_images()} vectors to {to}"
    if current.startswith(SERVER_SCHEME):       # its records folder is now the way to open it
        line += f"; open the catalog with --catalog {catalog.directory}"
    return line
