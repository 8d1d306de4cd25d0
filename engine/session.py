"""Pairing a catalog with the model its embeddings were made with.

Embeddings of different models (or of two exports of one model) must never be compared, so a
catalog remembers the pack it was built with (``meta.model_pack``) and is searched and extended
with that pack unless the user asks otherwise on an empty catalog.
"""

from __future__ import annotations

from .catalog import Catalog
from .errors import CatalogError
from .model import Model, load_model


def load_model_for(catalog: Catalog, requested: str | None = None) -> Model:
    """The model to use with ``catalog``: the requested pack, else the catalog's own, else the
    default. Raises CatalogError when the catalog holds embeddings of another model. Writes
    nothing (the import records the pack: :func:`record_model_pack`)."""
    stored = catalog.meta("model_pack")
    model = load_model(requested or stored or None)
    ids = catalog.model_ids()
    others = {mid: n for mid, n in ids.items() if mid != model.model_id}
    if others:
        mid, n = next(iter(others.items()))
        raise CatalogError(
            f"{catalog.directory}: {n} images were indexed with model {mid}, not {model.model_id}; "
            f"use --model {stored or mid.split('@')[0]} or a new catalog")
    return model


def record_model_pack(catalog: Catalog, model: Model) -> None:
    """Remember the pack the catalog's embeddings are made with (``meta.model_pack``). Called by
    the import holding the write lock: choosing a model writes nothing, so a command refused as
    busy leaves the catalog as it was. Raises CatalogError when images of another model arrived
    since the model was chosen."""
    ids = catalog.model_ids()
    others = {mid: n for mid, n in ids.items() if mid != model.model_id}
    if others:
        mid, n = next(iter(others.items()))
        raise CatalogError(f"{catalog.directory}: {n} images were indexed with model {mid}, not "
                           f"{model.model_id}; use --model {mid.split('@')[0]} or a new catalog")
    name = getattr(model, "name", None)
    if name and catalog.meta("model_pack") != name:
        catalog.set_meta("model_pack", name)
