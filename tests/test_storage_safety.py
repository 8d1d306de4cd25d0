"""The catalog's storage under hostile but realistic conditions: read commands never write, read-only
media, a full disk, and another catalog's index files (issue 17, cases 5, 6 and 8)."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cli.main import main
from engine import index as index_module
from engine.catalog import Catalog
from engine.catalog_storage import storage_error
from engine.consistency import check_catalog, repair_catalog
from engine.errors import CatalogError, CatalogReadOnlyError, DiskFullError
from engine.features import FEATURES_VERSION
from engine.index import VectorIndex
from engine.ingest import ingest

from .reliability_data import write_photos

ROOT = Path(__file__).resolve().parent.parent
READ_ONLY_HINT = "is read-only (permission denied); copy the catalog to a writable folder"


def _vecs(n, d=16, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(vectors, start=0, model_id="m@1"):
    return [{"path": f"/v/{start + i:05d}.jpg", "content_hash": f"h{start + i}", "file_size": 1,
             "mtime": 1.0, "width": 10, "height": 10, "product_id": None, "model_id": model_id,
             "embedding": v, "labels": []} for i, v in enumerate(vectors)]


def _synthetic_catalog(folder: Path, vectors: np.ndarray) -> Path:
    with Catalog.open(folder) as cat, cat.writer():
        cat.put_images(_rows(vectors))
        cat.vectors.save()
    return folder


def _index_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("index.*"))}


def _meta_rows(folder: Path) -> dict[str, str]:
    with Catalog.open(folder, create=False, readonly=True) as cat:
        return dict(cat.db.conn.execute("SELECT key, value FROM meta"))


def _own_files(folder: Path) -> list[str]:
    """The folder's files but SQLite's -wal/-shm (which a read-only connection may need to make)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "catalog.db-" not in p.name)


def _one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("catalog ")]
    assert len(lines) == 1, err
    assert "internal error" not in lines[0] and "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------- read commands never write
def test_a_reader_brings_a_stale_index_up_to_date_in_memory_only(tmp_path):
    x = _vecs(40)
    _synthetic_catalog(tmp_path, x[:20])
    saved = _index_files(tmp_path)
    with Catalog.open(tmp_path) as cat:                 # another writer adds, without saving
        cat.put_images(_rows(x[20:], 20))
    # a writable catalog object outside writer() (the desktop between imports) and a read-only
    # one (the CLI's search) both search all 40, and neither writes the index files
    for readonly in (False, True):
        with Catalog.open(tmp_path, readonly=readonly) as cat:
            ids, sims = cat.vectors.nearest(x[35], 1)
            assert len(cat.vectors.index()) == 40 and sims[0, 0] > 0.999
        assert _index_files(tmp_path) == saved and not list(tmp_path.glob("*.tmp"))
    # the writer (holding the lock) saves it
    with Catalog.open(tmp_path) as cat, cat.writer():
        cat.vectors.index()
    assert VectorIndex.load(tmp_path / "index.bin", 16).version == 2


def test_the_desktops_search_thread_never_saves_the_index(tmp_path):
    """The desktop shares one Catalog between its import and its searches: a search while the
    import holds the write lock syncs in memory; only the importing thread saves."""
    x = _vecs(30)
    _synthetic_catalog(tmp_path, x[:10])
    saved = _index_files(tmp_path)
    with Catalog.open(tmp_path) as cat:
        inside, release = threading.Event(), threading.Event()

        def importer():
            with cat.writer():
                cat.put_images(_rows(x[10:], 10))
                inside.set()
                release.wait(60)

        thread = threading.Thread(target=importer)
        thread.start()
        try:
            assert inside.wait(60)
            ids, sims = cat.vectors.nearest(x[25], 1)           # this thread searches
            assert len(cat.vectors.loaded()) == 30 and sims[0, 0] > 0.999
            assert _index_files(tmp_path) == saved
        finally:
            release.set()
            thread.join(60)
        with cat.writer():                                     # the writer's thread saves
            cat.vectors.save()
    assert _index_files(tmp_path) != saved


def test_a_read_only_catalog_cannot_write_its_database(tmp_path):
    _synthetic_catalog(tmp_path, _vecs(5))
    with Catalog.open(tmp_path, readonly=True) as cat:
        assert cat.count_images() == 5
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            cat.db.conn.execute("INSERT INTO meta VALUES ('x', 'y')")


def test_an_older_catalog_opened_read_only_is_not_migrated(tmp_path):
    """A read-only opening never writes: an older catalog (lacking later tables) is not migrated,
    an empty database is refused and stays empty."""
    _synthetic_catalog(tmp_path / "old", _vecs(4))
    with sqlite3.connect(tmp_path / "old" / "catalog.db") as conn:
        conn.execute("DROP TABLE image_text")
        conn.execute("DROP TABLE learned_metric")
    try:
        with Catalog.open(tmp_path / "old", create=False, readonly=True) as cat:
            assert cat.count_images() == 4
    except CatalogError as exc:
        assert "\n" not in str(exc)
    with sqlite3.connect(tmp_path / "old" / "catalog.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "image_text" not in tables and "learned_metric" not in tables
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "catalog.db").touch()
    with pytest.raises(CatalogError):
        Catalog.open(tmp_path / "empty", create=False, readonly=True)
    assert (tmp_path / "empty" / "catalog.db").stat().st_size == 0


def test_cli_search_and_dupes_do_not_write_the_catalog(tmp_path, model, capsys):
    photos = write_photos(tmp_path / "photos", 6)
    cat = tmp_path / "cat"
    with Catalog.open(cat) as c:
        assert ingest(c, model, [tmp_path / "photos"]).added == 6
        # a change the index files do not hold yet (as left by a killed import)
        c.put_images([{**_rows([np.ones(model.embedding_dim, np.float32) / np.sqrt(model.embedding_dim)],
                                model_id=model.model_id)[0], "path": str(tmp_path / "extra.jpg")}])
    saved = _index_files(cat)
    meta = _meta_rows(cat)
    assert main(["search", str(photos[2]), "--catalog", str(cat), "--json", "-k", "2"]) == 0
    assert f'"path": "{photos[2]}"' in capsys.readouterr().out
    assert main(["dupes", "--catalog", str(cat), "--json", "--quiet"]) == 0
    assert _index_files(cat) == saved and not list(cat.glob("*.tmp"))
    assert _meta_rows(cat) == meta                          # the listing recorded nothing either


# ---------------------------------------------------------------------- read-only media
def _unprivileged() -> list[str] | None:
    """A command prefix under which the catalog's file permissions really apply: nothing for a
    normal user; for root, the capabilities that ignore them dropped (setpriv), if possible."""
    if os.name != "posix":
        return None
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os; print(os.access('/proc/1/root', os.W_OK))"],
                           capture_output=True, text=True)
    return prefix if probe.returncode == 0 else None


def _cli(prefix: list[str], *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_TEST_FAULT", "LOOKALIKE_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([*prefix, sys.executable, "-m", "cli", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=180)


def _make_read_only(folder: Path) -> None:
    for p in [*folder.rglob("*"), folder]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_read_only_media_is_searched_and_writes_are_one_line(tmp_path, model):
    """A catalog on read-only media (no -wal/-shm files, a folder nobody may write), with the
    file permissions really enforced (as root: without the capabilities that bypass them)."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("cannot run a process that is subject to file permissions here")
    photos = write_photos(tmp_path / "photos", 6)
    more = write_photos(tmp_path / "more", 2, start=50)
    cat = tmp_path / "cat"
    with Catalog.open(cat) as c:
        assert ingest(c, model, [tmp_path / "photos"]).added == 6
    assert not list(cat.glob("catalog.db-*"))              # closed cleanly: no -wal, no -shm
    _make_read_only(cat)
    before = sorted(p.name for p in cat.rglob("*"))
    try:
        s = _cli(prefix, "search", photos[3], "--catalog", cat, "--json", "-k", "1")
        assert s.returncode == 0 and f'"path": "{photos[3]}"' in s.stdout, s.stderr
        for args in (("check",), ("info",), ("export", "images"), ("dupes", "--quiet")):
            r = _cli(prefix, *args, "--catalog", cat)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        for args in (("index", more[0]), ("remove", photos[0]), ("check", "--repair")):
            r = _cli(prefix, *args, "--catalog", cat)
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert _one_error_line(r.stderr) == f"lookalike: error: {cat} {READ_ONLY_HINT}"
        assert sorted(p.name for p in cat.rglob("*")) == before      # nothing was created
    finally:
        for p in [cat, *cat.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_read_only_media_with_the_files_of_a_live_catalog(tmp_path):
    """Copied while another process had it open: with its -wal and -shm the catalog is read as
    committed (the second commit is only in the -wal); a -wal without its -shm cannot be read
    without losing commits, and is one line instead."""
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("cannot run a process that is subject to file permissions here")
    x = _vecs(20)
    live = Catalog.open(tmp_path / "live")
    try:
        with live.writer():
            live.put_images(_rows(x[:10]))
            live.vectors.save()
            live.put_images(_rows(x[10:], 10))
        shutil.copytree(tmp_path / "live", tmp_path / "both")
        shutil.copytree(tmp_path / "live", tmp_path / "no-shm")
    finally:
        live.close()
    (tmp_path / "no-shm" / "catalog.db-shm").unlink()
    assert (tmp_path / "both" / "catalog.db-wal").stat().st_size > 0
    for folder in ("both", "no-shm"):
        _make_read_only(tmp_path / folder)
    code = ("import sys\nfrom engine.catalog import Catalog\nfrom engine.errors import CatalogError\n"
            "for d in sys.argv[1:]:\n"
            "    try:\n"
            "        with Catalog.open(d, create=False, readonly=True) as c:\n"
            "            print(c.count_images(), len(c.vectors.index()))\n"
            "    except CatalogError as exc:\n"
            "        print(exc)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        r = subprocess.run([*prefix, sys.executable, "-c", code, tmp_path / "both", tmp_path / "no-shm"],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    finally:
        for p in [*tmp_path.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "20 20", f"{tmp_path / 'no-shm'} is read-only (catalog.db-wal holds changes not merged into "
        "catalog.db); copy the catalog to a writable folder"]


def test_a_folder_that_refuses_writes_is_one_line_in_process(tmp_path, monkeypatch, capsys):
    """The same on any user (root ignores chmod): the folder reports itself unwritable and the
    lock file cannot be made, as on a read-only mount."""
    _synthetic_catalog(tmp_path / "cat", _vecs(12))
    cat = tmp_path / "cat"
    for name in ("catalog.db-wal", "catalog.db-shm"):
        assert not (cat / name).exists()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if (mode & os.W_OK and Path(p) in
                                                                   (cat, cat / "catalog.db")) else real_access(p, mode, **kw))
    with Catalog.open(cat, create=False, readonly=True) as c:       # opened immutable
        assert c.count_images() == 12 and len(c.vectors.index()) == 12
        assert check_catalog(c, files=False).healthy
    with pytest.raises(CatalogReadOnlyError, match=READ_ONLY_HINT.replace("(", r"\(").replace(")", r"\)")):
        Catalog.open(cat, create=False)
    assert main(["remove", "/v/00001.jpg", "--catalog", str(cat)]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"lookalike: error: {cat} {READ_ONLY_HINT}"

    # the desktop opens it read-only (searched, never written)
    from desktop.workers import open_catalog_job

    info = open_catalog_job(cat, create=True)
    try:
        assert info.catalog.readonly and info.images == 12
    finally:
        info.catalog.close()

    # a lock file that cannot be created (a read-only mount) is the same one line
    monkeypatch.setattr(os, "access", real_access)

    def refuse(self, *a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(cat / "write.lock"))

    monkeypatch.setattr("filelock.BaseFileLock.acquire", refuse)
    with Catalog.open(cat, create=False) as c:
        with pytest.raises(CatalogReadOnlyError) as exc:
            repair_catalog(c)
    assert str(exc.value) == f"{cat} {READ_ONLY_HINT}"


# ---------------------------------------------------------------------- a full disk
def test_storage_errors_map_to_one_line_errors(tmp_path):
    full = storage_error(sqlite3.OperationalError("database or disk is full"), tmp_path)
    assert isinstance(full, DiskFullError)
    assert str(full).startswith("disk full:") and f"free space on {tmp_path} and run the command again" in str(full)
    assert isinstance(storage_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path), DiskFullError)
    assert isinstance(storage_error(OSError(errno.EDQUOT, "Disk quota exceeded"), tmp_path), DiskFullError)
    rofs = storage_error(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert str(rofs) == f"{tmp_path} is read-only (read-only file system); copy the catalog to a writable folder"
    assert storage_error(OSError(errno.ENOENT, "gone"), tmp_path) is None
    assert storage_error(sqlite3.OperationalError("no such table: x"), tmp_path) is None


def test_a_database_that_fills_up_is_one_line_and_keeps_what_was_committed(tmp_path):
    """SQLite's own SQLITE_FULL (a page limit stands in for the disk)."""
    x = _vecs(400, d=256)
    with Catalog.open(tmp_path) as cat, cat.writer():
        cat.put_images(_rows(x[:10]))
        pages = cat.db.conn.execute("PRAGMA page_count").fetchone()[0]
        cat.db.conn.execute(f"PRAGMA max_page_count={pages + 2}")
        with pytest.raises(DiskFullError, match=f"free space on {tmp_path}"):
            cat.put_images(_rows(x[10:], 10))
        assert cat.count_images() == 10
        assert not cat.db.conn.in_transaction


def test_a_failed_index_save_leaves_no_temporary_files(tmp_path, monkeypatch, capsys):
    _synthetic_catalog(tmp_path, _vecs(30))
    saved = _index_files(tmp_path)
    with Catalog.open(tmp_path) as cat:
        cat.put_images(_rows(_vecs(5, seed=3), 30))

    def no_space(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(index_module, "_fsync", no_space)
    with Catalog.open(tmp_path) as cat:
        with pytest.raises(DiskFullError):
            cat.vectors.save()
    assert not list(tmp_path.glob("*.tmp")) and _index_files(tmp_path) == saved
    assert main(["check", "--repair", "--no-files", "--catalog", str(tmp_path)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("lookalike: error: disk full:") and f"free space on {tmp_path}" in line
    assert not list(tmp_path.glob("*.tmp"))


def test_a_short_index_file_is_refused_as_a_full_disk(tmp_path, monkeypatch):
    """hnswlib ignores write errors: a file shorter than its header says is a full disk."""
    index = VectorIndex.create(16)
    index.add(list(range(1, 51)), _vecs(50))
    real_save = index._index.save_index

    def truncated(path):
        real_save(path)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)

    monkeypatch.setattr(index, "_index", _Proxy(index._index, save_index=truncated))
    with pytest.raises(OSError) as exc:
        index.save(tmp_path / "index.bin")
    assert exc.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


class _Proxy:
    def __init__(self, target, **overrides):
        self._target, self._overrides = target, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._target, name)


@pytest.fixture
def small_disk(tmp_path):
    """A real 1.5 MB file system (tmpfs), where mounting is possible (root on Linux)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small file system here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_an_import_that_fills_the_disk_ends_in_one_line_and_resumes(tmp_path, small_disk, model, capsys):
    photos = write_photos(tmp_path / "photos", 160)
    cat = small_disk / "cat"
    rc = main(["index", str(tmp_path / "photos"), "--catalog", str(cat), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = _one_error_line(err)
    assert line.startswith("lookalike: error: disk full:") and f"free space on {cat} and run the command again" in line
    assert not list(cat.rglob("*.tmp"))
    with Catalog.open(cat, create=False, readonly=True) as c:
        kept = c.count_images()
        featured = kept - len(c.images_without_local_features(FEATURES_VERSION))
    # the disk filled during the embedding pass, or (embeddings are small) during the local
    # features' pass after every image was searchable: either way some work is left
    assert 0 < kept <= 160 and featured < 160
    # a search still works on the full disk (it writes nothing)
    assert main(["search", str(photos[0]), "--catalog", str(cat), "--json", "-k", "1"]) == 0
    assert f'"path": "{photos[0]}"' in capsys.readouterr().out
    # space freed: the same command resumes where it stopped
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert main(["index", str(tmp_path / "photos"), "--catalog", str(cat), "--quiet"]) == 0
    assert f"{160 - kept} added" in capsys.readouterr().out
    with Catalog.open(cat, create=False, readonly=True) as c:
        assert c.count_images() == 160 and check_catalog(c, files=False).healthy
        assert c.images_without_local_features(FEATURES_VERSION) == []


# ---------------------------------------------------------------------- another catalog's index
def _exact_top(cat: Catalog, q: np.ndarray, k: int):
    ids = np.array(cat.image_ids())
    sims = cat.embeddings(ids.tolist()) @ q
    order = np.argsort(-sims, kind="stable")[:k]
    return ids[order].tolist(), sims[order]


@pytest.mark.parametrize("projected", [False, True])
@pytest.mark.parametrize("copied", [False, True])
def test_another_catalogs_index_is_detected_and_rebuilt(tmp_path, caplog, projected, copied):
    """Catalog B's index files put in catalog A (same count and version): another catalog's (its
    id differs), or a copy of A's folder that went its own way (the same id: only the vectors
    tell). Searches return the exact scores of A's own embeddings."""
    d = 256 if projected else 32
    a, b = tmp_path / "a", tmp_path / "b"
    Catalog.open(a).close()
    if copied:
        shutil.copytree(a, b)
    _synthetic_catalog(a, _vecs(300, d=d, seed=1))
    _synthetic_catalog(b, _vecs(300, d=d, seed=2))
    with Catalog.open(a) as ca, Catalog.open(b) as cb:
        a_id = ca.meta("catalog_id")
        assert a_id and (cb.meta("catalog_id") == a_id) == copied
    if projected:       # one projection for both (a copied catalog that went its own way)
        with Catalog.open(a) as ca:
            fitted = ca.vectors.fit_projection(dim=192)
            data = ca.stored_projection()
        with Catalog.open(b) as cb, cb.writer():
            cb.store_projection(fitted.key, data, fitted.fitted_on)
            cb.vectors.rebuild()
    with Catalog.open(a) as ca, Catalog.open(b) as cb:      # the same count and version
        assert ca.version == cb.version and ca.count_images() == cb.count_images()
    for name in ("index.bin", "index.json", "index.side.npz"):
        if (b / name).exists():
            shutil.copy(b / name, a / name)
    q = _vecs(3, d=d, seed=9)
    with caplog.at_level(logging.WARNING, logger="engine.vector_store"):
        with Catalog.open(a, readonly=True) as cat:
            report = check_catalog(cat, files=False)
            assert not report.healthy
            assert report.find("index-vectors" if copied else "index-identity")
            for row in q:
                ids, sims = cat.vectors.nearest(row, 5)
                want_ids, want_sims = _exact_top(cat, row, 5)
                assert ids[0].tolist() == want_ids
                np.testing.assert_allclose(sims[0], want_sims, atol=1e-5)
    assert any("rebuilding it from the stored embeddings" in r.getMessage() for r in caplog.records)
    # the reader rebuilt it in memory only; the writer saves it, and then it is trusted
    with Catalog.open(a) as cat, cat.writer():
        cat.vectors.index()
    assert json.loads((a / "index.json").read_text())["catalog_id"] == a_id
    with Catalog.open(a, readonly=True) as cat:
        assert check_catalog(cat, files=False).healthy


# ---------------------------------------------------------------------- thumbnails
def _photo_catalog(tmp_path: Path) -> tuple[Path, int]:
    photo = write_photos(tmp_path / "photos", 1)[0]
    folder = tmp_path / "cat"
    with Catalog.open(folder) as cat, cat.writer():
        (image_id,) = cat.put_images([{**_rows(_vecs(1))[0], "path": str(photo)}])
    return folder, image_id


def test_a_read_only_catalog_makes_its_thumbnails_in_the_user_cache(tmp_path, monkeypatch):
    folder, image_id = _photo_catalog(tmp_path)
    monkeypatch.setattr("platformdirs.user_cache_dir", lambda *a, **kw: str(tmp_path / "cache"))
    before = _own_files(folder)
    with Catalog.open(folder, create=False, readonly=True) as cat:
        thumb = cat.thumbnails.get(image_id)
        assert thumb.is_file() and (tmp_path / "cache") in thumb.parents
        assert cat.thumbnails.get(image_id) == thumb                 # made once
    assert _own_files(folder) == before


def test_a_thumbnail_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    folder, image_id = _photo_catalog(tmp_path)

    def no_space(self, data):
        with open(self, "wb") as f:
            f.write(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with Catalog.open(folder) as cat:
        with pytest.raises(DiskFullError, match=f"free space on {folder}"):
            cat.thumbnails.get(image_id)
        assert [p for p in cat.thumbnails.files()] == []
