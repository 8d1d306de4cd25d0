"""Declared variants: different products of one item group in the product feed (the blue and
the green colour of a jacket sharing a recoloured photo). They compete in the scoring like any
pair but are not reported as duplicates unless asked."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ..catalog import Catalog
from ..match_policy import declared_variants


def variant_families(catalog: Catalog, image_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Image id -> (item group, product id) for the images whose product declares an item group
    (a feed's ``item_group_id``, stored as ``products.group_id``). Two images with the same item
    group and different product ids are *declared variants* (the blue and the green colour, or
    two sizes, of one style). Images without a product, or whose product has no item group, are
    left out: they are nobody's variant."""
    return catalog.item_groups(int(i) for i in image_ids)


def listed_images(catalog: Catalog, image_ids: Iterable[int]) -> set[int]:
    """The images among ``image_ids`` that belong to a product (a listing, from a feed), as
    opposed to bare image files."""
    return catalog.listed_images(int(i) for i in image_ids)


def declared_variant_mask(pairs: np.ndarray, family: Mapping[int, tuple[str, str]]) -> np.ndarray:
    """For image-id ``pairs`` [m, 2]: True where the two images belong to different products of
    one item group (``family`` from :func:`variant_families`)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not family or len(pairs) == 0:
        return np.zeros(len(pairs), bool)
    return np.array([declared_variants(family, a, b) for a, b in pairs.tolist()], bool)


def variant_attributes(record: Mapping) -> dict[str, str]:
    """``item_group_id``, ``color`` and ``size`` of an image record (catalog.image_record), where
    its product has them (color and size are kept in the product's ``extra`` under the feed's
    column names, e.g. ``color``, ``g:size``, ``Colour``)."""
    out = {}
    if record.get("group_id"):
        out["item_group_id"] = str(record["group_id"])
    for name, value in (record.get("extra") or {}).items():
        key = name.strip().lower().removeprefix("g:").strip()
        key = "color" if key == "colour" else key
        if key in ("color", "size") and key not in out and str(value).strip():
            out[key] = str(value).strip()
    return out
