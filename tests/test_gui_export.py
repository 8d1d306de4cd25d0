"""CSV export of search results (Qt-free): columns, encoding and formula-injection safety, and
the same quoting as the engine's exports."""

from __future__ import annotations

import csv
import io

from desktop.export import COLUMNS, export_results_csv
from engine.duplicates import DuplicateGroup, Member, write_groups_csv
from engine.export import safe_cell, write_csv
from engine.search import Match


def test_cells_a_spreadsheet_would_run_are_neutralised():
    for text in ('=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tindent", "\rreturn"):
        assert safe_cell(text) == "'" + text
    for text in ("Jacket", "a=b", "100% cotton", "", "O'Neill"):
        assert safe_cell(text) == text
    assert safe_cell(None) == ""
    assert safe_cell(0.5) == "0.5"
    assert safe_cell(12.0) == "12.0"
    assert safe_cell(-3.0) == "-3.0"  # a number, not a formula


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
    assert first["score"] == "0.97" and first["price"] == "52.0" and first["currency"] == "EUR"
    assert first["product_id"] == "MJ01" and first["image_id"] == "7"
    second = dict(zip(COLUMNS, rows[2]))
    assert (
        second["path"] == "/p/é b.jpg" and second["title"] == "" and second["strength"] == "similar"
    )



def test_export_refuses_folders_missing_folders_and_catalog_files(tmp_path):
    from engine.errors import OutputError

    match = Match(rank=1, image_id=7, path="/p/a.jpg", score=0.9, strength="similar", product={})
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / "catalog.db").write_bytes(b"live database")
    previous = tmp_path / "kept.csv"
    previous.write_text("the user's earlier export")
    for target, reason in ((tmp_path, "is a folder"), (tmp_path / "missing" / "r.csv", "does not exist"),
                           (catalog_dir / "catalog.db", "is a file of the catalog")):
        try:
            export_results_csv(target, "q.jpg", [match], catalog_dir=catalog_dir)
        except OutputError as exc:
            assert reason in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{target} was accepted")
    assert (catalog_dir / "catalog.db").read_bytes() == b"live database"
    assert not (tmp_path / "missing").exists()

    def failing():                     # the export fails half-way: the earlier file is kept
        yield match
        raise OSError(28, "No space left on device")

    try:
        export_results_csv(previous, "q.jpg", failing(), catalog_dir=catalog_dir)
    except OutputError as exc:
        assert "No space left" in str(exc)
    assert previous.read_text() == "the user's earlier export"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


TRICKY = [
    # title, brand, price
    ("=1+1", "Ac,me", 52.0),
    ('Mug "deluxe", 2 pcs', "O'Neill", -5.25),
    ("two\nlines", "+brand", 12),
    ("-2+3", "@cmd", None),
    ("\tindent", "plain", 0.1 + 0.2),
    ("Café crème", "", 1e21),
]


def test_results_and_duplicates_exports_quote_alike(tmp_path):
    """The app's results export and the engine's exports (here ``lookalike dupes --csv``) write
    the same values as the same CSV text: numbers, separators, quotes, newlines, formulas."""
    matches = [
        Match(rank=i + 1, image_id=i, path=f"/p/{i},x.jpg", score=0.5,
              product={"title": t, "brand": b, "price": p})
        for i, (t, b, p) in enumerate(TRICKY)
    ]  # fmt: skip
    out = tmp_path / "results.csv"
    export_results_csv(out, "q.jpg", matches)
    app_text = out.read_text(encoding="utf-8-sig")

    records = [{"path": f"/p/{i},x.jpg", "title": t, "brand": b, "price": p} for i, (t, b, p) in enumerate(TRICKY)]
    groups = [DuplicateGroup(1, Member(0, None, record=records[0]),
                             [Member(i, 0.5, record=r) for i, r in enumerate(records[1:], 1)])]  # fmt: skip
    engine_out = io.StringIO()
    write_groups_csv(groups, engine_out)
    engine_text = engine_out.getvalue()

    def columns(text: str, names: tuple[str, ...]) -> list[tuple[str, ...]]:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        return [tuple(r[n] for n in names) for r in rows]

    shared = ("path", "title", "brand", "price")
    assert columns(app_text, shared) == columns(engine_text, shared)
    for title, brand, price in TRICKY:  # the raw text of each cell, quoted alike
        for value in (title, brand, price):
            one = io.StringIO()
            write_csv(one, ["x"], [[value]])
            raw = one.getvalue().split("\r\n", 1)[1].rstrip("\r\n")
            if raw:
                assert raw in app_text and raw in engine_text, raw
    cells = dict(zip(shared, columns(app_text, shared)[0]))
    assert cells["title"] == "'=1+1" and cells["brand"] == "Ac,me" and cells["price"] == "52.0"
    assert columns(app_text, ("price",))[1] == ("-5.25",)  # a negative price stays a number
