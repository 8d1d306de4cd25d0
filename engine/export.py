"""CSV export of catalog data, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO, Iterable, Sequence

from .catalog import Catalog

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """The text of a CSV cell, with formula injection defused by a leading apostrophe
    (OWASP's advice). Numbers stay numbers: a negative price is written as a plain number."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def write_csv(out: IO[str], header: Sequence[str], rows: Iterable[Sequence]) -> int:
    writer = csv.writer(out, dialect="excel")
    writer.writerow([safe_cell(h) for h in header])
    n = 0
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        n += 1
    return n


PRODUCT_FIELDS = ("id", "title", "brand", "price", "currency", "category", "url", "sku", "gtin",
                  "group_id", "description", "extra", "remote_images", "source")
IMAGE_FIELDS = ("image_id", "path", "product_id", "title", "brand", "price", "currency", "category",
                "width", "height", "file_size", "content_hash", "model_id", "labels", "added_at")


def export_products(catalog: Catalog, out: IO[str]) -> int:
    return write_csv(out, PRODUCT_FIELDS, catalog.product_rows(PRODUCT_FIELDS))


def export_images(catalog: Catalog, out: IO[str]) -> int:
    rows = ([rec.get(k) for k in IMAGE_FIELDS] for rec in catalog.iter_records())
    return write_csv(out, IMAGE_FIELDS, rows)


def open_output(path: str | os.PathLike | None):
    """A text stream for CSV output: a file (UTF-8 with BOM, so Excel reads accents) or stdout."""
    import sys

    if path is None or str(path) == "-":
        return _NoClose(sys.stdout)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", newline="", encoding="utf-8-sig")


class _NoClose:
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        self.stream.flush()
