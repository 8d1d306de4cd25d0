"""CSV export of search results (Qt-free): columns, encoding and formula-injection safety."""

from __future__ import annotations

import csv

from desktop.export import COLUMNS, export_results_csv, safe_cell
from engine.search import Match


def test_cells_a_spreadsheet_would_run_are_neutralised():
    for text in ('=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tindent", "\rreturn"):
        assert safe_cell(text) == "'" + text
    for text in ("Jacket", "a=b", "100% cotton", "", "O'Neill"):
        assert safe_cell(text) == text
    assert safe_cell(None) == ""
    assert safe_cell(0.5) == "0.5"
    assert safe_cell(12.0) == "12"
    assert safe_cell(-3.0) == "'-3"


def test_export_writes_one_row_per_match(tmp_path):
    matches = [
        Match(rank=1, image_id=7, path="/p/a.jpg", score=0.97, strength="likely copy",
              product={"product_id": "MJ01", "title": "=cmd|' /C calc'!A0", "brand": "Luma",
                       "price": 52.0, "currency": "EUR", "category": "Men > Jackets",
                       "url": "https://shop.example/mj01"}),
        Match(rank=2, image_id=9, path="/p/é b.jpg", score=0.61, strength="similar", product={}),
    ]  # fmt: skip
    out = tmp_path / "r.csv"
    assert export_results_csv(out, "query.jpg", matches) == 2
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets read the UTF-8 right
    with open(out, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == COLUMNS
    first = dict(zip(COLUMNS, rows[1]))
    assert first["title"] == "'=cmd|' /C calc'!A0"
    assert first["score"] == "0.97" and first["price"] == "52" and first["currency"] == "EUR"
    assert first["product_id"] == "MJ01" and first["image_id"] == "7"
    second = dict(zip(COLUMNS, rows[2]))
    assert (
        second["path"] == "/p/é b.jpg" and second["title"] == "" and second["strength"] == "similar"
    )
