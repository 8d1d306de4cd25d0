"""A catalog folder identifies itself, Lookalike touches only the files it made, an emptied
database is damage (never "healthy"), and nothing is written before the write lock is held
(issue 17, cases 1 to 3)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading

import cv2
import numpy as np
import pytest
from filelock import FileLock

from cli.main import main
from engine.catalog import Catalog
from engine.catalog_marker import MARKER_NAME, remove_catalog
from engine.errors import CatalogBusyError, CatalogError, EmptiedCatalogError, NotACatalogError
from engine.session import load_model_for


def _photo(path, seed=0, size=160):
    """A textured photo (random blocks), different per seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def _put(cat, path, seed=0):
    """A stored image with a synthetic (unit) embedding, no model needed."""
    digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    v = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    st = path.stat()
    return cat.put_images([{"path": str(path), "content_hash": digest, "file_size": st.st_size,
                            "mtime": st.st_mtime, "width": 160, "height": 160, "product_id": None,
                            "model_id": "m@1", "embedding": v / np.linalg.norm(v), "labels": []}])[0]


def _snapshot(folder):
    """Every file under ``folder`` -> its bytes (what a command must leave alone)."""
    out = {}
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = fh.read()
    return out


def _err_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[-1]


def _tables(db_path):
    conn = sqlite3.connect(db_path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


# ---------------------------------------------------------------------- case 1: identity
def test_a_new_catalog_has_a_marker_with_its_id(tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        marker = json.loads((tmp_path / "cat" / MARKER_NAME).read_text())
        assert marker["format"] == 1 and len(marker["catalog_id"]) == 32
        assert marker["created_at"].endswith("Z") and marker["app_version"]
        assert cat.catalog_id == marker["catalog_id"] == cat.meta("catalog_id")
    with Catalog.open(tmp_path / "cat", readonly=True) as cat:
        assert cat.catalog_id == marker["catalog_id"]
    with Catalog.open(tmp_path / "other") as other:
        assert other.catalog_id != marker["catalog_id"]


def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "thumbnails").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "index.bin").write_bytes(b"my own index")
    (folder / "index.json").write_text('{"mine": true}')
    (folder / "thumbnails" / "mydoc.txt").write_text("my document")
    before = _snapshot(folder)
    with pytest.raises(NotACatalogError, match="not a Lookalike catalog.*choose an empty or new folder"):
        Catalog.open(folder)
    photo = _photo(tmp_path / "photos" / "a.png")
    for argv in (["index", str(photo)], ["search", str(photo)], ["info"], ["check"], ["check", "--repair"]):
        assert main([*argv, "--catalog", str(folder)]) == 2, argv
        line = _err_line(capsys)
        assert line.startswith(f"lookalike: error: {folder}: ") and (
            "not a Lookalike catalog" in line or "no catalog here" in line), line
    assert _snapshot(folder) == before
    assert sorted(os.listdir(folder)) == ["index.bin", "index.json", "notes.txt", "thumbnails"]


def test_catalog_dot_in_a_project_folder_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "src").mkdir()
    photo = _photo(tmp_path / "src" / "a.png")
    monkeypatch.chdir(tmp_path)
    assert main(["index", str(photo), "--catalog", "."]) == 2
    assert "not a Lookalike catalog" in _err_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["pyproject.toml", "src"]


def test_a_folder_of_the_users_own_thumbnails_is_no_catalog(tmp_path):
    folder = tmp_path / "photos"
    (folder / "thumbnails").mkdir(parents=True)
    (folder / "thumbnails" / "beach.jpg").write_bytes(b"jpeg")
    with pytest.raises(NotACatalogError):
        Catalog.open(folder)
    assert _snapshot(folder) == {os.path.join("thumbnails", "beach.jpg"): b"jpeg"}


def test_an_empty_folder_or_one_with_only_os_litter_becomes_a_catalog(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "litter").mkdir()
    (tmp_path / "litter" / ".DS_Store").write_bytes(b"\0")
    for name in ("empty", "litter"):
        with Catalog.open(tmp_path / name) as cat:
            assert cat.catalog_id and (tmp_path / name / MARKER_NAME).is_file()


def _make_legacy(folder):
    """A catalog as made before the marker: no marker file, no meta.catalog_id."""
    with Catalog.open(folder):
        pass
    (folder / MARKER_NAME).unlink()
    conn = sqlite3.connect(folder / "catalog.db")
    with conn:
        conn.execute("DELETE FROM meta WHERE key='catalog_id'")
    conn.close()


def test_a_catalog_made_before_the_marker_gets_it_on_its_next_write_only(tmp_path, capsys):
    folder = tmp_path / "old"
    _make_legacy(folder)
    (folder / "user-notes.txt").write_text("kept")       # a catalog is no empty folder any more
    with Catalog.open(folder, readonly=True) as cat:     # a reader: recognised, nothing written
        assert cat.catalog_id is None and cat.count_images() == 0
    assert main(["info", "--catalog", str(folder)]) == 0
    assert main(["check", "--catalog", str(folder)]) == 0
    capsys.readouterr()
    with Catalog.open(folder, create=False) as cat:      # opened for writing, nothing written yet
        assert not (folder / MARKER_NAME).exists()
        with cat.writer():                               # the next write adds the identity
            pass
        marker = json.loads((folder / MARKER_NAME).read_text())
        assert cat.meta("catalog_id") == marker["catalog_id"] == cat.catalog_id
    with Catalog.open(folder, create=True) as cat:       # and keeps it
        assert cat.catalog_id == marker["catalog_id"]


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not a valid catalog marker"),
    ("[1, 2]", "not a valid catalog marker"),
    ('{"format": 1, "catalog_id": "../../etc"}', "not a valid catalog marker"),
    ('{"format": "1", "catalog_id": "' + "a" * 32 + '"}', "not a valid catalog marker"),
    ('{"format": 99, "catalog_id": "' + "a" * 32 + '"}', "made by a newer Lookalike"),
    (b"\xff\xfe\x00garbage", "not a valid catalog marker"),
    ("[" * 100000 + "]" * 100000, "not a valid catalog marker"),
], ids=["bad-json", "not-object", "bad-id", "format-text", "newer-format", "binary", "deeply-nested"])
def test_a_bad_marker_is_one_line_error(tmp_path, capsys, text, reason):
    folder = tmp_path / "cat"
    with Catalog.open(folder):
        pass
    marker = folder / MARKER_NAME
    if isinstance(text, bytes):
        marker.write_bytes(text)
    else:
        marker.write_text(text)
    with pytest.raises(CatalogError, match=reason):
        Catalog.open(folder)
    for argv in (["info"], ["check"], ["index", str(_photo(tmp_path / "a.png"))]):
        assert main([*argv, "--catalog", str(folder)]) == 2
        line = _err_line(capsys)
        assert line.startswith(f"lookalike: error: {marker}: ") and reason in line, line


def test_a_marker_that_is_no_file_is_one_line_error(tmp_path, capsys):
    for kind in ("folder", "dangling link"):
        folder = tmp_path / kind
        with Catalog.open(folder):
            pass
        marker = folder / MARKER_NAME
        marker.unlink()
        marker.mkdir() if kind == "folder" else marker.symlink_to(tmp_path / "nowhere")
        assert main(["info", "--catalog", str(folder)]) == 2
        assert "not a valid catalog marker (not a small file)" in _err_line(capsys)


def test_the_database_of_another_catalog_is_refused(tmp_path, capsys):
    with Catalog.open(tmp_path / "a"), Catalog.open(tmp_path / "b"):
        pass
    (tmp_path / "a" / "catalog.db").write_bytes((tmp_path / "b" / "catalog.db").read_bytes())
    with pytest.raises(CatalogError, match="the database of another catalog"):
        Catalog.open(tmp_path / "a", readonly=True)
    assert main(["info", "--catalog", str(tmp_path / "a")]) == 2
    assert "another catalog" in _err_line(capsys)


def test_another_programs_database_named_catalog_db_is_refused(tmp_path, capsys):
    folder = tmp_path / "x"
    folder.mkdir()
    conn = sqlite3.connect(folder / "catalog.db")
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.commit()
    conn.close()
    before = _snapshot(folder)
    with pytest.raises(NotACatalogError):
        Catalog.open(folder)
    assert main(["index", str(_photo(tmp_path / "a.png")), "--catalog", str(folder)]) == 2
    assert "not a Lookalike catalog" in _err_line(capsys)
    assert _snapshot(folder) == before


# ---------------------------------------------------------------------- case 1: own files only
def test_check_and_repair_touch_only_the_files_lookalike_made(tmp_path, capsys):
    folder = tmp_path / "cat"
    photo = _photo(tmp_path / "photos" / "a.png")
    with Catalog.open(folder) as cat:
        _put(cat, photo)
        cat.vectors.rebuild()
        own_thumb = cat.thumbnails.get(1)
    thumbs = folder / "thumbnails"
    orphan = thumbs / "ab" / f"{'ab' * 16}-256.jpg"
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"\xff\xd8\xff orphan")
    own_temp = thumbs / "ab" / f"{'ab' * 16}-256.123.456.tmp"
    own_temp.write_bytes(b"half")
    own_index_temp = folder / "index.bin.123-456.tmp"
    own_index_temp.write_bytes(b"half")
    strangers = [thumbs / "mydoc.txt", thumbs / "ab" / "mydoc.jpg", thumbs / "cd" / f"{'ab' * 16}-256.jpg",
                 thumbs / "holiday" / "x.tmp", folder / "notes.tmp", folder / "my.tmp"]
    for p in strangers:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"the user's")
    assert main(["check", "--catalog", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "thumbnail cache: 2 orphan or leftover and 0 damaged files of 3" in out, out
    assert "mydoc" not in out and "notes.tmp" not in out and "my.tmp" not in out
    assert "1 temporary files" in out
    assert main(["check", "--repair", "--catalog", str(folder)]) == 0
    assert not orphan.exists() and not own_temp.exists() and not own_index_temp.exists()
    assert own_thumb.exists()
    for p in strangers:
        assert p.read_bytes() == b"the user's", p


def test_remove_catalog_deletes_only_what_lookalike_made(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    with pytest.raises(NotACatalogError):
        remove_catalog(mine)
    assert (mine / "notes.txt").read_text() == "x"
    folder = tmp_path / "cat"
    with Catalog.open(folder) as cat:
        _put(cat, _photo(tmp_path / "a.png"))
        cat.vectors.rebuild()
        cat.thumbnails.get(1)
    (folder / "thumbnails" / "mydoc.txt").write_text("y")
    remove_catalog(folder)
    assert _snapshot(folder) == {os.path.join("thumbnails", "mydoc.txt"): b"y"}
    (folder / "thumbnails" / "mydoc.txt").unlink()
    remove_catalog(folder)
    assert not folder.exists()
    remove_catalog(folder)                               # a missing folder is fine


# ---------------------------------------------------------------------- case 2: emptied database
def _catalog_with_images(tmp_path, n=3):
    folder = tmp_path / "cat"
    photos = [_photo(tmp_path / "photos" / f"{i}.png", seed=i) for i in range(n)]
    with Catalog.open(folder) as cat:
        for i, p in enumerate(photos):
            _put(cat, p, seed=i)
        cat.vectors.rebuild()
        catalog_id = cat.catalog_id
    assert (folder / "index.bin").exists() and (folder / "index.json").exists()
    return folder, photos, catalog_id


def _empty_the_database(folder, how):
    db = folder / "catalog.db"
    if how == "truncated":
        db.write_bytes(b"")                              # : > catalog.db
    elif how == "no-tables":
        db.unlink()
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA user_version=7")            # a valid SQLite file without tables
        conn.close()
    elif how == "missing":
        db.unlink()
    elif how == "truncated-no-marker":                   # a catalog made before the marker
        db.write_bytes(b"")
        (folder / MARKER_NAME).unlink()


@pytest.mark.parametrize("how", ["truncated", "no-tables", "missing", "truncated-no-marker"])
def test_an_emptied_database_is_damage_never_healthy(tmp_path, capsys, how):
    folder, photos, catalog_id = _catalog_with_images(tmp_path)
    _empty_the_database(folder, how)
    before = _snapshot(folder)
    for readonly in (True, False):
        with pytest.raises(EmptiedCatalogError, match="empty or missing.*check --repair"):
            Catalog.open(folder, readonly=readonly, create=True)
    # reading commands and an import refuse it with one line; nothing is written
    for argv in (["search", str(photos[0])], ["info"], ["index", str(photos[0])], ["dupes"],
                 ["export", "products", "-o", str(tmp_path / "out.csv")]):
        assert main([*argv, "--catalog", str(folder)]) == 2, argv
        line = _err_line(capsys)
        assert "empty or missing" in line and "check --repair" in line, line
        assert "no matches" not in line
    # check reports the loss (exit 1) and writes nothing
    assert main(["check", "--catalog", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "every record" in out and "healthy" not in out.splitlines()[-1]
    assert "(database unreadable)" in out.splitlines()[0] and "0 images" not in out
    assert main(["check", "--json", "--catalog", str(folder)]) == 1
    assert json.loads(capsys.readouterr().out)["healthy"] is False
    assert _snapshot(folder) == before
    # check --repair says what was lost, starts the database again empty and drops the stale index
    assert main(["check", "--repair", "--catalog", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "FIXED" in out and "every record" in out and "started the emptied database again" in out, out
    assert not (folder / "index.bin").exists() and not (folder / "index.json").exists()
    with Catalog.open(folder, readonly=True) as cat:
        assert cat.count_images() == 0
        if how != "truncated-no-marker":
            assert cat.catalog_id == catalog_id == json.loads((folder / MARKER_NAME).read_text())["catalog_id"]
        assert cat.meta("catalog_id") == json.loads((folder / MARKER_NAME).read_text())["catalog_id"]
    assert main(["check", "--catalog", str(folder)]) == 0
    capsys.readouterr()


def test_check_and_info_leave_a_healthy_catalog_as_it_was(tmp_path, capsys):
    folder, _photos, _id = _catalog_with_images(tmp_path)
    before = _snapshot(folder)
    assert main(["check", "--catalog", str(folder)]) == 0
    assert main(["info", "--catalog", str(folder)]) == 0
    capsys.readouterr()
    assert _snapshot(folder) == before


def test_read_only_opening_checks_the_schema_and_never_creates_it(tmp_path, capsys):
    folder = tmp_path / "cat"
    with Catalog.open(folder) as cat:
        _put(cat, _photo(tmp_path / "a.png"))
    conn = sqlite3.connect(folder / "catalog.db")
    conn.execute("DROP TABLE learned_metric")           # a catalog of an older Lookalike
    conn.execute("DROP TABLE image_text")
    conn.commit()
    conn.close()
    # read as it is (on read-only media it could not be brought up to date): empty temporary
    # tables stand in for the missing ones, in every thread's connection
    with Catalog.open(folder, readonly=True) as cat:
        assert cat.count_images() == 1
        assert cat.stored_learned_metric() is None and cat.image_texts.get(cat.image_ids()) == {}
        other = []
        thread = threading.Thread(target=lambda: other.append(cat.image_texts.get(cat.image_ids())))
        thread.start()
        thread.join()
        assert other == [{}]
    assert main(["check", "--catalog", str(folder)]) == 0
    capsys.readouterr()
    assert not {"learned_metric", "image_text"} & _tables(folder / "catalog.db")   # nothing written
    # opening for writing migrates it, holding the write lock
    with FileLock(str(folder / "write.lock")):
        with pytest.raises(CatalogBusyError):
            Catalog.open(folder, create=False)
    assert "learned_metric" not in _tables(folder / "catalog.db")
    with Catalog.open(folder, create=False) as cat:
        assert cat.count_images() == 1
    assert "learned_metric" in _tables(folder / "catalog.db")
    with Catalog.open(folder, readonly=True) as cat:
        assert cat.count_images() == 1
    # a database without one of the core tables is no catalog, read-only or not
    conn = sqlite3.connect(folder / "catalog.db")
    conn.execute("DROP TABLE images")
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="not a usable catalog database.*no images table"):
        Catalog.open(folder, readonly=True)


# ---------------------------------------------------------------------- case 3: the write lock first
def test_creating_a_catalog_holds_the_write_lock(tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    with FileLock(str(folder / "write.lock")):          # another process is creating it
        with pytest.raises(CatalogBusyError, match="catalog is busy"):
            Catalog.open(folder)
        assert sorted(os.listdir(folder)) == ["write.lock"]            # nothing written
    with Catalog.open(folder) as cat:
        assert cat.catalog_id and cat.count_images() == 0


def test_choosing_a_model_writes_nothing(tmp_path, model):
    with Catalog.open(tmp_path / "cat") as cat:
        assert load_model_for(cat).name == model.name
        assert cat.meta("model_pack") is None           # a search records nothing
        from engine.ingest import ingest

        ingest(cat, model, [_photo(tmp_path / "a.png")])
        assert cat.meta("model_pack") == model.name     # the import does, under the lock


def test_an_import_refused_as_busy_changes_nothing(tmp_path, model, capsys):
    from engine.ingest import ingest

    folder = tmp_path / "cat"
    photos = [_photo(tmp_path / "photos" / f"{i}.png", seed=i) for i in range(3)]
    with Catalog.open(folder) as holder:
        with holder.writer():                            # an import with the catalog's pack runs
            holder.set_meta("model_pack", model.name)
            assert model.name != "efficientnet-lite0"
            rc = main(["index", str(photos[0]), "--catalog", str(folder), "--model", "efficientnet-lite0",
                       "--quiet"])
            assert rc == 2
            assert "catalog is busy" in _err_line(capsys)
            assert holder.meta("model_pack") == model.name
        ingest(holder, model, photos)                     # the first import goes on
        assert holder.meta("model_pack") == model.name
    assert main(["search", str(photos[1]), "--catalog", str(folder), "--json", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[0])["results"][0]["path"] == str(photos[1])


def test_the_duplicate_scan_notes_its_version_only_when_the_lock_is_free(tmp_path):
    from engine.duplicates import SCANNED_VERSION_KEY
    from engine.duplicates.scan import remember_scan

    with Catalog.open(tmp_path / "cat") as holder, Catalog.open(tmp_path / "cat") as other:
        with holder.writer():
            remember_scan(other, 5)
            assert other.meta(SCANNED_VERSION_KEY) is None
        remember_scan(other, 5)
        assert other.meta(SCANNED_VERSION_KEY) == "5"


def test_a_thumbnail_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    with Catalog.open(tmp_path / "cat") as cat:
        image_id = _put(cat, _photo(tmp_path / "a.png"))
        real = Path.write_bytes

        def full(self, data):
            real(self, data[:10])                        # part of it made it to disk
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(Path, "write_bytes", full)
        with pytest.raises(CatalogError, match="disk full: no space left on device; free space on"):
            cat.thumbnails.get(image_id)
        monkeypatch.undo()
        assert [p for p in cat.thumbnails.files()] == []
