"""Kill -9 an import at several deterministic points (engine/faults.py hooks), then resume:
nothing committed is lost, the resumed import adds exactly what is missing (no duplicates), and
database and index agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import Catalog
from engine.consistency import check_catalog, repair_catalog
from engine.faults import FAULT_ENV

from .reliability_data import write_photos

ROOT = Path(__file__).resolve().parent.parent
BATCH = 8

_IMPORT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from engine.catalog import Catalog
from engine.ingest import ingest
from engine.model import load_model
with Catalog.open(sys.argv[2]) as cat:
    r = ingest(cat, load_model(), [sys.argv[3]], batch_size=int(sys.argv[4]), workers=2)
    print(json.dumps({"added": r.added, "updated": r.updated, "unchanged": r.unchanged,
                      "failed": len(r.failed), "images": cat.count_images()}))
"""


def _import(catalog: Path, folder: Path, fault: str | None = None) -> tuple[int, dict | None]:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    proc = subprocess.run([sys.executable, "-c", _IMPORT, str(ROOT), str(catalog), str(folder), str(BATCH)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, out


def _state(catalog: Path) -> tuple[int, set[str]]:
    with Catalog.open(catalog, create=False, readonly=True) as cat:
        paths = [r[0] for r in cat.db.conn.execute("SELECT path FROM images")]
        assert len(paths) == len(set(paths))
        return len(paths), set(paths)


def _assert_consistent(catalog: Path) -> None:
    with Catalog.open(catalog, create=False, readonly=True) as cat:
        report = check_catalog(cat)
        assert report.healthy, report.text()
        index = cat.vectors.index()
        db_ids = {r[0] for r in cat.db.conn.execute("SELECT id FROM images")}
        assert index.ids() == db_ids and len(index) == len(db_ids)


@pytest.mark.slow
def test_kill_9_at_every_stage_then_resume(tmp_path):
    folder = tmp_path / "photos"
    cat = tmp_path / "catalog"
    first = write_photos(folder, 40)

    # 1. killed right after the 2nd batch committed: exactly 2 batches are in, no index saved yet
    rc, _ = _import(cat, folder, "ingest-batch-committed:2:kill")
    assert rc == -signal.SIGKILL
    n, paths = _state(cat)
    assert n == 2 * BATCH and paths <= {str(p) for p in first}

    # 2. killed inside the 2nd batch's transaction, before COMMIT: that batch is rolled back
    rc, _ = _import(cat, folder, "put-images-before-commit:2:kill")
    assert rc == -signal.SIGKILL
    n2, paths2 = _state(cat)
    assert n2 == 3 * BATCH and paths <= paths2           # nothing committed before was lost

    # 3. killed in the final index save, between the index rename and its sidecar's
    rc, _ = _import(cat, folder, "index-save-between-renames:1:kill")
    assert rc == -signal.SIGKILL
    assert _state(cat)[0] == 40
    assert (cat / "index.bin").exists() and not (cat / "index.json").exists()

    # resume: nothing to add, no duplicates, index rebuilt and saved, consistent
    rc, out = _import(cat, folder)
    assert rc == 0 and out == {"added": 0, "updated": 0, "unchanged": 40, "failed": 0, "images": 40}
    _assert_consistent(cat)

    # 4. more photos and a removal, then killed between the renames again: now the new index file
    #    sits next to the OLD sidecar (40 elements) -- detected on open, rebuilt
    more = write_photos(folder, 32, start=40)
    with Catalog.open(cat) as c:
        gone = [r[0] for r in c.db.conn.execute("SELECT id FROM images ORDER BY id LIMIT 3")]
        gone_paths = [c.image_record(i)["path"] for i in gone]
        assert c.remove_images(gone) == 3
    for p in gone_paths:
        os.unlink(p)
    rc, _ = _import(cat, folder, "index-save-between-renames:1:kill")
    assert rc == -signal.SIGKILL
    assert _state(cat)[0] == 72 - 3
    # a reader opening the catalog now gets correct search results (index fixed in memory)
    with Catalog.open(cat, create=False, readonly=True) as c:
        index = c.vectors.index()
        assert len(index) == 69 and not (set(gone) & index.ids())
        rec = c.db.conn.execute("SELECT id FROM images WHERE path=?", (str(more[5]),)).fetchone()
        ids, sims = index.query(c.embeddings([rec[0]]), 1)
        assert ids[0, 0] == rec[0] and sims[0, 0] > 0.999
    rc, out = _import(cat, folder)
    assert rc == 0 and out["added"] == 0 and out["images"] == 69
    _assert_consistent(cat)

    # 5. killed before the index file is renamed into place: temporary files are left behind,
    #    the old index stays valid; the resume adds nothing twice; check --repair removes the debris
    write_photos(folder, 8, start=72)
    rc, _ = _import(cat, folder, "index-save-before-rename:1:kill")
    assert rc == -signal.SIGKILL
    assert list(cat.glob("index.*.tmp"))
    rc, out = _import(cat, folder)
    assert rc == 0 and out["added"] == 0 and out["images"] == 77
    with Catalog.open(cat) as c:
        before = check_catalog(c)
        assert before.healthy and before.find("temp-files") is not None
        after = repair_catalog(c)
        assert after.healthy and not list(cat.glob("*.tmp"))
    _assert_consistent(cat)

    # every photo on disk is in the catalog exactly once
    on_disk = {str(p) for p in folder.glob("*.jpg")}
    assert _state(cat)[1] == on_disk and len(on_disk) == 77


def test_index_crash_between_renames_in_process(tmp_path):
    """Unit level: an index file whose sidecar is older (different element count) is refused,
    and the catalog rebuilds it from the stored embeddings."""
    from engine.index import VectorIndex

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(30, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = VectorIndex.create(16)
    idx.add(range(1, 21), vecs[:20])
    idx.save(tmp_path / "index.bin")
    old_meta = (tmp_path / "index.json").read_text()
    idx.add(range(21, 31), vecs[20:])
    idx.remove([1, 2])
    idx.save(tmp_path / "index.bin")
    (tmp_path / "index.json").write_text(old_meta)        # the state a kill between the renames leaves
    with pytest.raises(Exception, match="do not match"):
        VectorIndex.load(tmp_path / "index.bin", 16)
    # same element count but an older deleted list: re-applied removals are counted again
    idx2 = VectorIndex.create(16)
    idx2.add(range(1, 11), vecs[:10])
    idx2.save(tmp_path / "b.bin")
    meta = (tmp_path / "b.json").read_text()
    idx2.remove([3])
    idx2.save(tmp_path / "b.bin")
    (tmp_path / "b.json").write_text(meta)
    with pytest.raises(Exception, match="do not match"):      # the file's checksum catches it
        VectorIndex.load(tmp_path / "b.bin", 16)
    # a sidecar written before the checksum: loaded, and re-applied removals are counted again
    legacy = {k: v for k, v in json.loads(meta).items() if k not in ("file_bytes", "file_crc32")}
    (tmp_path / "b.json").write_text(json.dumps(legacy))
    loaded = VectorIndex.load(tmp_path / "b.bin", 16)
    assert len(loaded) == 10                               # the sidecar does not know about 3
    assert loaded.remove([3]) == 1 and len(loaded) == 9 and 3 not in loaded.ids()
