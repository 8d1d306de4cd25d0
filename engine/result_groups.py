"""Search results per product: one query's ranked image matches collapsed so that each product
appears once, represented by its best-ranked image.

A catalog with several photos per product would otherwise answer a query with ten photos of one
product instead of ten products. The search (:mod:`engine.search`) ranks images exactly as
before; this step runs after it, on the ranked list:

* the images of one ``product_id`` become one result: the product's first image in the ranking
  represents it (its score, strength, evidence and path), ``images`` holds the product's other
  matched images in ranking order (best first) and ``image_count`` counts them all;
* an image without a product is a result of its own;
* the results are numbered again (rank 1, 2, ...) and cut to ``k`` products.

Nothing here re-scores or re-orders: the products come in the order of their first image, so a
longer ranked list (more candidate groups) extends a shorter one and never reorders it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

PRODUCT = "product"
IMAGE = "image"
GROUPS = (PRODUCT, IMAGE)


def check(group: str) -> str:
    """``group`` if it is one of :data:`GROUPS`, else a ValueError naming them."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(map(repr, GROUPS))}, not {group!r}")
    return group


def result_key(record: dict) -> Hashable:
    """What one result stands for: the record's product, or the image itself when it has none."""
    product_id = record.get("product_id")
    if product_id not in (None, ""):
        return ("product", product_id)
    return ("image", record.get("image_id"))


def count(records: Iterable[dict], group: str) -> int:
    """How many results ``records`` (image records, ranked) make in mode ``group``."""
    if group == IMAGE:
        return sum(1 for _ in records)
    return len({result_key(r) for r in records})


def by_product(matches: list[Any], k: int) -> list[Any]:
    """The ranked image ``matches`` (engine ``Match`` objects, changed in place) as at most ``k``
    product results: each product's first match, with ``images`` (the product's other matches,
    in ranking order), ``image_count`` and a new ``rank``."""
    heads: dict[Hashable, Any] = {}
    for match in matches:
        key = result_key({**(match.product or {}), "image_id": match.image_id})
        head = heads.get(key)
        if head is None:
            heads[key] = match
            match.images = []
        else:
            head.images.append(match)
    results = list(heads.values())[:k]
    for rank, head in enumerate(results, 1):
        head.rank = rank
        head.image_count = 1 + len(head.images)
        for other in head.images:
            other.rank = rank        # part of this result
            other.image_count, other.images = 1, []
    return results
