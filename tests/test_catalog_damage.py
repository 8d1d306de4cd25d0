"""A catalog database with damaged pages (issue 17, case 4): every command ends with one line
naming catalog.db and `lookalike check --repair` (exit 2), `check` reports the damage without
writing (exit 1), and `check --repair` recovers every readable row, keeps the damaged file,
rebuilds the index and says what was lost."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from cli.main import main
from engine.catalog import Catalog
from engine.errors import CatalogDamagedError

from .catalog_damage import corrupt_header, corrupt_page, corrupt_table, table_pages
from .reliability_data import write_photos

N = 24


@pytest.fixture(scope="module")
def base(tmp_path_factory, model):
    """(catalog folder, photo folder): a real catalog of N generated photos, built once."""
    from engine.ingest import ingest

    root = tmp_path_factory.mktemp("damage-base")
    photos = write_photos(root / "photos", N)
    with Catalog.open(root / "cat") as cat:
        report = ingest(cat, model, photos)
        assert report.added == N and not report.failed
        cat.upsert_products([{"id": "P1", "title": "first"}])
        cat.link_images([(str(photos[0]), "P1")])
    return root / "cat", root / "photos"


@pytest.fixture
def cat(base, tmp_path) -> Path:
    dst = tmp_path / "cat"
    shutil.copytree(base[0], dst, ignore=shutil.ignore_patterns("write.lock"))
    return dst


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != "write.lock"}


def assert_one_damage_line(err: str, db: Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(db) in lines[0] and "damaged" in lines[0] and "lookalike check --repair" in lines[0], err
    assert "internal error" not in err and "Traceback" not in err


def count_images(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM images NOT INDEXED").fetchone()[0]


def test_table_pages_finds_the_pages_of_a_table(cat):
    page_size, pages = table_pages(cat / "catalog.db", "images")
    assert page_size >= 512 and len(pages) > 1
    with sqlite3.connect(cat / "catalog.db") as con:
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name='images'").fetchone()[0]
    assert root in pages


@pytest.mark.parametrize("where", ["images-root", "header"])
def test_every_command_names_the_damage_in_one_line(cat, base, capsys, where):
    db = cat / "catalog.db"
    if where == "header":
        corrupt_header(db)
    else:
        corrupt_table(db, "images", leaf=False)
    photo = str(base[1] / "photo_001.jpg")
    for argv in (["info"], ["search", photo], ["index", str(base[1])], ["remove", photo],
                 ["export", "images", "-o", str(cat.parent / "out.csv")]):
        rc, _, err = run(capsys, *argv, "--catalog", str(cat))
        assert rc == 2, (argv, err)
        assert_one_damage_line(err, db)


def test_check_reports_page_damage_and_never_writes(cat, capsys):
    corrupt_table(cat / "catalog.db", "images", leaf=False)
    before = digest(cat)
    rc, out, err = run(capsys, "check", "--catalog", str(cat))
    assert rc == 1 and not err, err
    assert "PROBLEM database damaged (tables images)" in out and "--repair" in out
    assert digest(cat) == before
    rc, out, _ = run(capsys, "check", "--json", "--catalog", str(cat))
    assert rc == 1 and '"healthy": false' in out


def test_check_reports_an_unopenable_database(cat, capsys):
    corrupt_header(cat / "catalog.db")
    before = digest(cat)
    rc, out, err = run(capsys, "check", "--catalog", str(cat))
    assert rc == 1 and not err
    assert "PROBLEM database unreadable: file is not a database" in out
    assert digest(cat) == before


def test_repair_recovers_readable_rows_and_keeps_the_damaged_file(cat, base, capsys):
    db = cat / "catalog.db"
    corrupt_table(db, "images", leaf=True, seed=3)
    damaged = db.read_bytes()
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 0 and not err, out + err
    assert "recovered " in out and f"of {N} images" in out
    kept = sorted(cat.glob("catalog.db.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged       # the user's file, untouched
    assert not list(cat.glob("*.recovering-*")) and not list(cat.glob("*.reading-*"))
    # lost images whose files are present are indexed again: nothing is missing in the end
    assert count_images(db) == N
    rc, out, _ = run(capsys, "check", "--catalog", str(cat))
    assert rc == 0 and "healthy" in out, out
    rc, out, _ = run(capsys, "search", str(base[1] / "photo_005.jpg"), "--catalog", str(cat))
    assert rc == 0 and "photo_005.jpg" in out


def test_work_files_of_a_recovery_cut_short_are_cleaned_and_the_set_aside_copy_kept(cat, capsys):
    left = [cat / "catalog.db.recovering-20261207T090102Z", cat / "catalog.db.reading-20261207T090102Z-wal"]
    kept = cat / "catalog.db.damaged-20261207T090102Z"
    mine = cat / "catalog.db.recovering-notes.txt"              # a name only like recovery's
    for path in (*left, kept, mine):
        path.write_bytes(b"x" * 100)
    rc, out, _ = run(capsys, "check", "--catalog", str(cat))
    assert "2 temporary files left by an interrupted save or recovery" in out
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 0 and not err, out + err
    assert not any(p.exists() for p in left) and kept.exists() and mine.exists()


def test_repair_of_a_damaged_root_page(cat, base, capsys):
    """Every row of the images table is out of reach: they are re-indexed from their files (the
    paths and product links come from SQLite's own indexes, which are intact)."""
    corrupt_table(cat / "catalog.db", "images", leaf=False)
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 0, out + err
    assert f"recovered 0 of {N} images; {N} lost" in out and f"re-indexed {N} files" in out
    with Catalog.open(cat) as c:
        assert c.count_images() == N and c.product("P1")["title"] == "first"
        assert [r["product_id"] for r in c.iter_records() if r["path"].endswith("photo_000.jpg")] == ["P1"]
    assert run(capsys, "check", "--catalog", str(cat))[0] == 0


def test_repair_of_a_damaged_header(cat, capsys):
    corrupt_header(cat / "catalog.db")
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 0 and not err, out + err
    assert "FIXED   database unreadable" in out and f"recovered {N} of {N} images" in out
    assert count_images(cat / "catalog.db") == N
    assert run(capsys, "check", "--catalog", str(cat))[0] == 0


def test_repair_of_a_truncated_database(cat, capsys):
    """A copy cut short (a full disk, an interrupted transfer): shorter than its header says."""
    db = cat / "catalog.db"
    with open(db, "r+b") as fh:
        fh.truncate(db.stat().st_size // 2 + 1000)
    rc, out, err = run(capsys, "info", "--catalog", str(cat))
    assert rc == 2 and "check --repair" in err
    assert run(capsys, "check", "--catalog", str(cat))[0] == 1
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 0 and "recovered " in out and f"of {N} images" in out, out + err
    assert count_images(db) == N
    assert run(capsys, "check", "--catalog", str(cat))[0] == 0


def test_repair_of_a_damaged_sqlite_index_loses_nothing(cat, capsys):
    """Only an index of the images table is damaged: the tables are whole. (SQLite cannot REINDEX
    an index whose page header is damaged, so its rows are copied into a new database.)"""
    corrupt_table(cat / "catalog.db", "images_version")
    rc, out, _ = run(capsys, "check", "--catalog", str(cat))
    assert rc == 1 and "(indexes images_version)" in out and "REINDEX" in out
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 0, out + err
    assert "REINDEX of the database" in out or f"recovered {N} of {N} images" in out
    assert count_images(cat / "catalog.db") == N
    assert run(capsys, "check", "--catalog", str(cat))[0] == 0


def test_repair_says_in_one_line_when_nothing_can_be_read(cat, capsys):
    db = cat / "catalog.db"
    corrupt_header(db)
    corrupt_page(db, 1, 4096, offset=100, n=4096 - 100, seed=1)     # the table of contents too
    before = digest(cat)
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 2 and len(err.strip().splitlines()) == 1, out + err
    assert "beyond recovery" in err and str(db) in err
    assert digest(cat) == before


def test_the_engine_raises_catalog_damaged_error(cat):
    corrupt_table(cat / "catalog.db", "images", leaf=False)
    with Catalog.open(cat) as c:
        with pytest.raises(CatalogDamagedError) as info:
            list(c.iter_records())
    assert str(cat / "catalog.db") in str(info.value) and "check --repair" in str(info.value)
    corrupt_header(cat / "catalog.db")
    with pytest.raises(CatalogDamagedError):
        Catalog.open(cat)


def test_run_handler_turns_a_raw_sqlite_error_into_one_line(capsys):
    from cli.common import run_handler

    def damaged(_):
        raise sqlite3.DatabaseError("database disk image is malformed")

    def other(_):
        raise sqlite3.OperationalError("no such table: images\nsecond line")

    assert run_handler(damaged, None) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged" in err and "check --repair" in err
    assert run_handler(other, None) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err


def test_desktop_shows_the_same_message():
    pytest.importorskip("PySide6")
    from desktop.workers import describe_error

    text = describe_error(sqlite3.DatabaseError("database disk image is malformed"))
    assert "damaged" in text and "lookalike check --repair" in text
    exc = CatalogDamagedError("/x/catalog.db", "file is not a database")
    assert describe_error(exc) == str(exc)


def test_check_of_damaged_embedding_bytes_prints_no_warning(cat, capsys):
    """Bytes of a stored embedding overwritten with huge floats: a finding, no numpy warning."""
    db = cat / "catalog.db"
    page_size, pages = table_pages(db, "images", overflow=True)
    leaf_or_root = set(table_pages(db, "images")[1])
    overflow = [p for p in pages if p not in leaf_or_root]
    with open(db, "r+b") as fh:
        fh.seek((overflow[len(overflow) // 2] - 1) * page_size + 64)
        fh.write(b"\xff\xff\x7f\x7f" * 64)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rc, out, err = run(capsys, "check", "--catalog", str(cat))
        assert rc == 1 and not err and "stored embeddings are damaged" in out, out + err
        rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
        assert rc == 0 and not err, out + err


def test_damaged_local_feature_blobs_are_reported_and_computed_again(cat, base, capsys):
    """Blob contents have no SQLite checksum: bytes changed inside a feature blob read back
    without an error. Blobs whose lengths contradict their layout are skipped by the scan,
    computed again on use by verification, reported by check and recomputed by --repair."""
    db = cat / "catalog.db"
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT image_id, length(keypoints), length(descriptors) FROM local_features "
                           "ORDER BY image_id").fetchall()
        broken = [rows[0][0], rows[1][0], rows[2][0], rows[3][0]]
        con.execute("UPDATE local_features SET descriptors=? WHERE image_id=?", (b"\x01" * (rows[0][2] + 7), broken[0]))
        con.execute("UPDATE local_features SET keypoints=?, descriptors=? WHERE image_id=?", (b"", b"\x02" * 5, broken[1]))
        con.execute("UPDATE local_features SET mirrored=? WHERE image_id=?", (b"\x03" * 13, broken[2]))
        con.execute("UPDATE local_features SET dense=? WHERE image_id=?", (b"\x04" * 37, broken[3]))
    for argv in (("dupes", "--catalog", str(cat)), ("search", str(base[1] / "photo_000.jpg"), "--catalog", str(cat))):
        rc, out, err = run(capsys, *argv)
        assert rc == 0 and "internal error" not in err, (argv, err)
    rc, out, _ = run(capsys, "check", "--catalog", str(cat))
    assert rc == 1 and "4 images have damaged stored local features" in out
    rc, out, err = run(capsys, "check", "--repair", "--catalog", str(cat))
    assert rc == 0 and "computed the local features of 4 images" in out, out + err
    rc, out, _ = run(capsys, "check", "--catalog", str(cat))
    assert rc == 0 and "healthy" in out
