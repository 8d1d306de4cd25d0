"""Search filters (engine.search.SearchFilters) as Milvus expressions on a catalog collection's
scalar fields (engine.milvus_store), for filters pushed down into the search."""

from __future__ import annotations

import math


def _quoted(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expression(filters) -> str | None:
    """The Milvus expression on the collection's scalar fields that accepts what
    ``filters.accepts`` accepts (engine.search.SearchFilters); None when nothing is filtered, a
    category holds LIKE wildcards or a price bound is not finite. A missing value ("" / NaN)
    fails every comparison, as a missing field fails ``accepts``."""
    terms = []
    if filters.category:
        if any(c in filters.category for c in "%_\\"):
            return None
        terms.append(f"(category == {_quoted(filters.category)} or "
                     f"category like {_quoted(filters.category + ' >%')})")
    if filters.brand:
        terms.append(f"brand == {_quoted(filters.brand)}")
    for bound, op in ((filters.price_min, ">="), (filters.price_max, "<=")):
        if bound is not None:
            if not math.isfinite(float(bound)):
                return None                  # (no literal for it: the records decide)
            terms.append(f"price {op} {float(bound)!r}")
    if not terms:
        return None
    if filters.exclude_ids:
        terms.append(f"id not in {sorted(int(i) for i in filters.exclude_ids)}")
    return " and ".join(terms)
