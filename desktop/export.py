"""Export search results to CSV (Qt-free).

The cells are written by the engine's CSV writer (:func:`engine.export.write_csv`), so the app,
``lookalike export`` and ``lookalike dupes --csv`` quote and escape alike: numbers stay numbers,
and text that a spreadsheet would run as a formula (``= + - @``, a tab or a carriage return first)
gets a leading apostrophe.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

COLUMNS = [
    "query",
    "rank",
    "score",
    "strength",
    "image_id",
    "image_count",
    "product_id",
    "title",
    "brand",
    "category",
    "price",
    "currency",
    "url",
    "path",
]


def match_row(query: str, match: Any) -> list[Any]:
    """The values of one result, in COLUMNS order (escaped when written)."""
    product = getattr(match, "product", None) or {}
    values = {
        "query": query,
        "rank": match.rank,
        "score": round(float(match.score), 4),
        "strength": match.strength,
        "image_id": match.image_id,
        "image_count": getattr(match, "image_count", 1),  # the product's matched photos
        "product_id": product.get("product_id"),
        "title": product.get("title"),
        "brand": product.get("brand"),
        "category": product.get("category"),
        "price": product.get("price"),
        "currency": product.get("currency"),
        "url": product.get("url"),
        "path": match.path,
    }
    return [values[c] for c in COLUMNS]


def export_results_csv(path: str | Path, query: str, matches: Iterable[Any], *,
                       catalog_dir: str | Path | None = None) -> int:
    """Write ``matches`` (engine ``Match`` objects) to ``path``; returns the number of rows.

    Through :func:`engine.export.open_output`: UTF-8 with a byte-order mark (spreadsheets detect
    the encoding of non-ASCII titles), written under a temporary name and renamed when complete,
    and refused (OutputError, one line) for a folder, a missing folder or a file inside
    ``catalog_dir``.
    """
    from engine.export import open_output, write_csv  # the engine loads after the window shows

    with open_output(path, protect=catalog_dir) as fh:
        return write_csv(fh, COLUMNS, (match_row(query, m) for m in matches))
