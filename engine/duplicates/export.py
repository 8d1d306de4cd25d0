"""Duplicate groups as CSV rows (the engine's CSV escaper)."""

from __future__ import annotations

from typing import IO, Iterable

from .results import DuplicateGroup
from .variants import variant_attributes


CSV_FIELDS = ("group_id", "path", "product_id", "title", "score", "representative", "role", "image_id",
              "representative_product_id", "brand", "price", "currency", "width", "height", "confirmed",
              "item_group_id", "color", "size")


def csv_rows(groups: Iterable[DuplicateGroup]) -> Iterable[list]:
    for g in groups:
        rep = g.representative
        for m in [rep, *g.members]:
            r = m.record
            v = variant_attributes(r)
            yield [g.group_id, r.get("path"), r.get("product_id"), r.get("title"),
                   None if m.score is None else round(float(m.score), 4), rep.record.get("path"),
                   "representative" if m is rep else "copy", m.image_id, rep.record.get("product_id"),
                   r.get("brand"), r.get("price"), r.get("currency"), r.get("width"), r.get("height"),
                   m.confirmed if m is not rep else None,
                   v.get("item_group_id"), v.get("color"), v.get("size")]


def write_groups_csv(groups: Iterable[DuplicateGroup], out: IO[str]) -> int:
    """One row per image (representative first), spreadsheet-safe cells. Returns the row count."""
    from ..export import write_csv

    return write_csv(out, CSV_FIELDS, csv_rows(groups))


def export_csv(groups: Iterable[DuplicateGroup], path, *, protect=None) -> int:
    """``groups`` as CSV to ``path`` (``-``: stdout), replaced atomically; ``protect``: the
    catalog folder, which no export may write into (engine.export.check_output)."""
    from ..export import open_output

    with open_output(path, protect=protect) as out:
        return write_groups_csv(groups, out)
