"""Values never reach SQL text (every statement the engine runs is traced), hostile product fields
round-trip, and exported CSV cells a spreadsheet would run as formulas are escaped."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from engine.catalog import Catalog
from engine.consistency import check_catalog
from engine.export import export_images, export_products, safe_cell
from engine.ingest import ingest
from engine.search import SearchFilters, Searcher

from .reliability_data import write_photos

ROOT = Path(__file__).resolve().parent.parent

EVIL_ID = "Robert'); DROP TABLE products;--"
EVIL = {
    "id": EVIL_ID,
    "title": 'Mug "deluxe" \'quoted\'; DELETE FROM images; --',
    "brand": "x' OR '1'='1",
    "price": 12.5,
    "currency": "EUR",
    "category": "Home > Kitchen'); DROP TABLE images;--",
    "url": "https://example.com/?q=1' UNION SELECT * FROM meta--",
    "description": "=HYPERLINK(\"http://evil\",\"click\")",
    "sku": "+SUM(A1:A9)",
    "gtin": "-2+3",
    "group_id": "@cmd|' /C calc'!A0",
    "extra": {"colour": "red'; --", "size": "\tTAB"},
}
PAYLOADS = ["DROP TABLE", "DELETE FROM images;", "'1'='1", "UNION SELECT", "Robert"]


def _recording_connect(statements: list[str]):
    """sqlite3.connect that records the SQL *text* handed to execute (sqlite3's trace callback
    shows statements with the bound values expanded into them, which would hide a leak). It
    wraps the connection class the catalog asks for (engine.sqlite_damage's)."""
    real_connect = sqlite3.connect

    def connect(*args, factory=sqlite3.Connection, **kwargs):
        class Recording(factory):
            _inside = False

            def _record(self, method, sql, *args):
                statements.append(sql)
                self._inside = True          # the cursor the base class makes to run it
                try:
                    return method(sql, *args)
                finally:
                    self._inside = False

            def execute(self, sql, *args):
                return self._record(super().execute, sql, *args)

            def executemany(self, sql, *args):
                return self._record(super().executemany, sql, *args)

            def executescript(self, sql):
                return self._record(super().executescript, sql)

            def cursor(self, *args, **kwargs):
                if not self._inside:
                    raise AssertionError("the engine is expected to call Connection.execute")
                return super().cursor(*args, **kwargs)

        return real_connect(*args, factory=Recording, **kwargs)
    return connect


def test_hostile_product_fields_never_reach_sql_text(tmp_path, model, monkeypatch):
    photos = write_photos(tmp_path / "photos", 3)
    evil_name = tmp_path / "photos" / "it's'); DROP TABLE images;--.jpg"
    os.rename(photos[2], evil_name)
    statements: list[str] = []
    monkeypatch.setattr("engine.catalog.sqlite3.connect", _recording_connect(statements))
    with Catalog.open(tmp_path / "cat") as cat:
        other = dict(EVIL, id="plain", title="plain")
        cat.upsert_products([EVIL, other])
        ingest(cat, model, [tmp_path / "photos"])
        assert cat.link_images([(str(photos[0]), EVIL_ID), (str(evil_name), EVIL_ID)]) == 2

        # round trip: every field comes back exactly
        got = cat.product(EVIL_ID)
        for key, value in EVIL.items():
            assert got[key] == value, key
        recs = {r["path"]: r for r in cat.iter_records()}
        assert recs[str(evil_name)]["product_id"] == EVIL_ID and recs[str(evil_name)]["title"] == EVIL["title"]

        # search with filters made of the hostile values
        res = Searcher(cat, model).search_path(
            photos[0], k=3, filters=SearchFilters(brand=EVIL["brand"], category=EVIL["category"]),
            group="image")
        assert res.error is None and {m.image_id for m in res.results} == {
            recs[str(photos[0])]["image_id"], recs[str(evil_name)]["image_id"]}

        export_products(cat, io.StringIO())
        export_images(cat, io.StringIO())
        cat.record_errors([(str(tmp_path / "x'); DROP TABLE ingest_errors;--.jpg"), "it's broken")])
        assert cat.errors(limit=1)[0]["reason"] == "it's broken"
        assert check_catalog(cat).healthy
        assert cat.remove_paths([evil_name]) == 1

        # the tables are all still there, with the expected rows
        tables = {r[0] for r in cat.db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"products", "images", "ingest_errors", "meta", "removed"} <= tables
        assert cat.count_products() == 2 and cat.count_images() == 2

    assert len(statements) > 20
    leaked = [s for s in statements for p in PAYLOADS if p in s]
    assert leaked == [], leaked[:3]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_safe_cell_escapes_formulas_and_keeps_numbers():
    for bad in ("=1+2", "+SUM(A1)", "-2+3", "@cmd", "\t=1", "\r=1", "=", "-"):
        assert safe_cell(bad) == "'" + bad
    for fine in ("plain", "Mug 'deluxe'", " =1 (leading space)", "a=b", "1-2", ""):
        assert safe_cell(fine) == fine
    assert safe_cell(-5.25) == "-5.25" and safe_cell(-3) == "-3" and safe_cell(12.5) == "12.5"
    assert safe_cell(None) == "" and safe_cell(True) == "true"
    assert safe_cell(["=x"]) == '["=x"]'         # JSON text starts with [ : not a formula
    assert safe_cell({"a": 1}) == '{"a": 1}'


def test_export_round_trip_via_cli(tmp_path, model):
    photos = write_photos(tmp_path / "photos", 2)
    cat_dir = tmp_path / "cat"
    with Catalog.open(cat_dir) as cat:
        cat.upsert_products([EVIL, {"id": "neg", "title": "Refund\nline two", "price": -5.25,
                                    "brand": "Ac,me"}])
        ingest(cat, model, [tmp_path / "photos"])
        cat.link_images([(str(photos[0]), EVIL_ID)])
    out = tmp_path / "products.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "cli", "export", "products", "--catalog", str(cat_dir),
                           "-o", str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(out.read_text(encoding="utf-8-sig"))
    header, body = rows[0], {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert len(rows) == 3 and header[0] == "id"
    evil = body[EVIL_ID]
    # formula-looking text cells carry a leading apostrophe; the rest of the text is intact
    for key in ("description", "sku", "gtin", "group_id"):
        assert evil[key] == "'" + EVIL[key], key
    assert evil["title"] == EVIL["title"] and evil["brand"] == EVIL["brand"]
    # numbers stay numbers (a negative price is not escaped), quoted newlines and commas survive
    assert float(evil["price"]) == 12.5
    assert body["neg"]["price"] == "-5.25" and body["neg"]["title"] == "Refund\nline two"
    assert body["neg"]["brand"] == "Ac,me"
    # no cell of the whole file would be run as a formula
    for r in rows:
        for cell in r:
            if cell.startswith(("=", "+", "@", "\t", "\r")) or (cell.startswith("-") and not _is_number(cell)):
                raise AssertionError(f"unescaped formula cell {cell!r}")

    buf = io.StringIO()
    with Catalog.open(cat_dir, readonly=True) as cat:
        assert export_images(cat, buf) == 2
    img_rows = _rows(buf.getvalue())
    linked = [r for r in img_rows[1:] if r[2] == EVIL_ID]
    assert len(linked) == 1 and linked[0][1] == str(photos[0])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_feed_repeating_an_id_merges_instead_of_blanking(tmp_path, model):
    """A feed row repeating an id (duplicate GMC id) fills gaps and adds images; its empty fields
    never blank what the first row gave."""
    write_photos(tmp_path / "shop", 2)
    feed = tmp_path / "shop" / "feed.csv"
    feed.write_text(
        "id,title,brand,price,image_link,additional_image_link\n"
        "P1,Red mug,Acme,9.50 EUR,photo_000.jpg,https://cdn.example/p1-a.jpg\n"
        "P1,,,,photo_001.jpg,https://cdn.example/p1-b.jpg\n", encoding="utf-8")
    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, [feed])
        assert report.added == 2 and not report.failed
        p = cat.product("P1")
        assert (p["title"], p["brand"], p["price"]) == ("Red mug", "Acme", 9.5)
        assert sorted(p["remote_images"]) == ["https://cdn.example/p1-a.jpg", "https://cdn.example/p1-b.jpg"]
        assert {r["product_id"] for r in cat.iter_records()} == {"P1"}
