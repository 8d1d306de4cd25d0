"""Export search results to CSV (Qt-free).

Cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a carriage
return) are prefixed with a single quote, so an exported file is safe to open in Excel/LibreOffice.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = [
    "query",
    "rank",
    "score",
    "strength",
    "image_id",
    "product_id",
    "title",
    "brand",
    "category",
    "price",
    "currency",
    "url",
    "path",
]


def safe_cell(value: Any) -> str:
    """The cell text, neutralised if a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = "" if math.isnan(value) else f"{value:.4f}".rstrip("0").rstrip(".")
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def match_row(query: str, match: Any) -> list[str]:
    product = getattr(match, "product", None) or {}
    values = {
        "query": query,
        "rank": match.rank,
        "score": round(float(match.score), 4),
        "strength": match.strength,
        "image_id": match.image_id,
        "product_id": product.get("product_id"),
        "title": product.get("title"),
        "brand": product.get("brand"),
        "category": product.get("category"),
        "price": product.get("price"),
        "currency": product.get("currency"),
        "url": product.get("url"),
        "path": match.path,
    }
    return [safe_cell(values[c]) for c in COLUMNS]


def export_results_csv(path: str | Path, query: str, matches: Iterable[Any]) -> int:
    """Write ``matches`` (engine ``Match`` objects) to ``path``; returns the number of rows.

    UTF-8 with a byte-order mark, so spreadsheets detect the encoding of non-ASCII titles.
    """
    count = 0
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for match in matches:
            writer.writerow(match_row(query, match))
            count += 1
    return count
