"""No command modifies a file Lookalike did not create: every CLI command is run against a user's
photo folder (images, a product feed, a broken image, notes) and a catalog folder into which the
user later dropped files of their own, and every one of those files is byte-for-byte, mtime and
mode the same afterwards, with no file added to the user's folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cli.main import main
from tests.reliability_data import jpeg_bytes, photo, write_photos


def snapshot(folder: Path) -> dict[str, tuple[str, int, int]]:
    """relative path -> (sha256, mtime_ns, mode) of every file under ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                  st.st_mtime_ns, st.st_mode)
    return out


def run(*argv: str) -> int:
    return main(list(argv))


def test_no_command_changes_a_file_lookalike_did_not_create(tmp_path, capsys):
    photos = tmp_path / "photos"
    images = write_photos(photos, 6)
    (photos / "copy_of_0.jpg").write_bytes(images[0].read_bytes())       # a duplicate pair
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "notes.txt").write_text("the user's own notes\n")
    (photos / "feed.csv").write_text(
        "id,title,price,image_link\n" + "".join(f"P{i},Product {i},{i}.50,photo_{i:03d}.jpg\n" for i in range(6)))
    query = tmp_path / "query.jpg"
    query.write_bytes(jpeg_bytes(photo(3, 96, 72)))
    catalog = tmp_path / "catalog"
    out = tmp_path / "out"
    out.mkdir()

    assert run("index", str(photos), str(photos / "feed.csv"), "--catalog", str(catalog)) == 1  # broken.jpg
    # the user drops their own files into the catalog folder later
    (catalog / "notes.txt").write_text("do not touch\n")
    (catalog / "thumbnails").mkdir(exist_ok=True)
    (catalog / "thumbnails" / "mydoc.txt").write_text("mine\n")
    (catalog / "index.bin.backup").write_bytes(b"a user's backup copy")
    user_catalog_files = ("notes.txt", "thumbnails/mydoc.txt", "index.bin.backup")
    before_photos = snapshot(photos)
    before_query = snapshot(tmp_path / "out") | {"query": query.stat().st_mtime_ns}
    before_catalog = {k: v for k, v in snapshot(catalog).items() if k in user_catalog_files}
    assert len(before_catalog) == 3

    commands = [
        ("index", str(photos), str(photos / "feed.csv"), "--catalog", str(catalog)),  # re-run
        ("search", str(query), "--catalog", str(catalog)),
        ("search", "--json", str(query), "--catalog", str(catalog)),
        ("info", "--catalog", str(catalog)),
        ("export", "products", "-o", str(out / "products.csv"), "--catalog", str(catalog)),
        ("export", "images", "-o", str(out / "images.csv"), "--catalog", str(catalog)),
        ("export", "images", "-o", str(catalog / "catalog.db"), "--catalog", str(catalog)),   # refused
        ("export", "images", "-o", str(catalog / "notes.txt"), "--catalog", str(catalog)),    # refused
        ("dupes", "--catalog", str(catalog), "--csv", str(out / "dupes.csv")),
        ("dupes", "--catalog", str(catalog), "--not-duplicate", str(images[1]), str(images[2])),
        ("dupes", "--catalog", str(catalog), "--decisions"),
        ("check", "--catalog", str(catalog)),
        ("check", "--repair", "--catalog", str(catalog)),
        ("remove", str(images[5]), "--catalog", str(catalog)),
        ("remove", "--missing", "--catalog", str(catalog)),
        ("check", "--repair", "--forget-missing", "--catalog", str(catalog)),
        ("index", str(photos), "--catalog", str(tmp_path / "photos")),       # refused: not a catalog
        ("index", str(photos), "--catalog", str(out)),                       # refused: user files
    ]
    for argv in commands:
        rc = run(*argv)
        err = capsys.readouterr().err
        assert rc in (0, 1, 2), (argv, rc, err)
        assert "internal error" not in err and "Traceback" not in err, (argv, err)

    assert snapshot(photos) == before_photos                     # no file changed, none added
    assert {k: v for k, v in snapshot(catalog).items() if k in user_catalog_files} == before_catalog
    assert query.stat().st_mtime_ns == before_query["query"]
    assert images[5].exists()                                    # "remove" forgets, never deletes
    assert len((out / "products.csv").read_text(encoding="utf-8-sig").splitlines()) == 1 + 6
    assert sorted(os.listdir(out)) == ["dupes.csv", "images.csv", "products.csv"]
