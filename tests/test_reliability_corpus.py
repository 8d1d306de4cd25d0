"""Every odd kind of input file, through the real import (API and CLI): valid images indexed
correctly, each broken one reported once with a reason and recorded, the run goes on, a re-run
is incremental, a decompression bomb is refused from its header with memory bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.catalog import Catalog
from engine.consistency import check_catalog
from engine.ingest import ingest

from .reliability_data import build_corpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "odd inputs")


def test_every_odd_input_through_ingest(corpus, model, tmp_path):
    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, [corpus.root], batch_size=8)
        # the run went on past every broken file: all valid ones are in
        assert report.added == len(corpus.valid), report.summary()
        assert cat.count_images() == len(corpus.valid)
        stored = {r["path"]: r for r in cat.iter_records()}
        assert set(stored) == set(corpus.valid)
        for path, want in corpus.valid.items():
            rec = stored[path]
            assert (rec["width"], rec["height"]) == (want["width"], want["height"]), path
            assert rec["labels"], path                      # the model ran on it
        # EXIF orientation 6: stored 200x100 JPEG is displayed (and indexed) 100 wide, 200 high
        assert (stored[str(corpus.root / "exif_rotated.jpg")]["width"],
                stored[str(corpus.root / "exif_rotated.jpg")]["height"]) == (100, 200)

        # each broken file: exactly once in the report, with a reason naming the problem
        failed_paths = [p for p, _ in report.failed]
        assert len(failed_paths) == len(set(failed_paths)), failed_paths
        assert set(failed_paths) == set(corpus.broken), set(failed_paths) ^ set(corpus.broken)
        for path, reason in report.failed:
            assert corpus.broken[path].lower() in reason.lower(), (path, reason)
            assert "\n" not in reason and "Traceback" not in reason
        # ... and recorded in the catalog
        recorded = {e["path"]: e["reason"] for e in cat.errors()}
        assert recorded == dict(report.failed)

        # the catalog is consistent (database, index, files)
        check = check_catalog(cat)
        assert check.healthy, check.text()

        # a re-run is incremental: nothing added, the same failures once more, no duplicates
        again = ingest(cat, model, [corpus.root])
        assert (again.added, again.updated, again.unchanged) == (0, 0, len(corpus.valid))
        assert sorted(p for p, _ in again.failed) == sorted(failed_paths)
        assert cat.count_images() == len(corpus.valid)
        assert len(cat.errors()) == len(corpus.broken)

        # the images can be searched for: each valid image finds itself first
        from engine.search import Searcher

        searcher = Searcher(cat, model)
        for path in [str(corpus.root / "cmyk.jpg"), str(corpus.root / "alpha.png"),
                     str(corpus.root / "exif_rotated.jpg")]:
            res = searcher.search_path(path, k=1)
            assert res.error is None and res.results[0].path == path and res.results[0].score > 0.99


def test_cli_index_reports_one_line_per_broken_file(corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOOKALIKE_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "cli", "index", str(corpus.root), "--catalog",
                           str(tmp_path / "cat"), "--quiet"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 1                           # some files failed; the run completed
    assert "Traceback" not in proc.stderr and "libpng" not in proc.stderr, proc.stderr
    error_lines = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(error_lines) == len(corpus.broken), proc.stderr
    for path in corpus.broken:
        assert sum(l.startswith(f"error: {path}: ") for l in error_lines) == 1, path
    assert f"{len(corpus.valid)} added" in proc.stdout
    # every stderr line is an error line, the catalog banner, or nothing
    others = [l for l in proc.stderr.splitlines() if not l.startswith(("error: ", "catalog "))]
    assert others == [], others

    info = subprocess.run([sys.executable, "-m", "cli", "check", "--catalog", str(tmp_path / "cat"),
                           "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert info.returncode == 0, info.stdout + info.stderr
    assert json.loads(info.stdout)["healthy"] is True


_BOMB_SCRIPT = r"""
import resource, sys, zlib, struct
sys.path.insert(0, sys.argv[1])
from engine.imaging import load_image
from engine.errors import ImageError

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

# 12000 x 12000 8-bit grey = 144 megapixels (limit: 100), a COMPLETE zero-filled image stream:
# 144 MB of pixels from a ~140 kB file
w = h = 12000
comp = zlib.compressobj(9)
row = b"\0" * (w + 1)
idat = b"".join(comp.compress(row * 500) for _ in range(h // 500)) + comp.flush()
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
       + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
open(sys.argv[2], "wb").write(png)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_image(sys.argv[2])
    print("DECODED")
except ImageError as e:
    print("REFUSED", e.reason)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("GROWTH_KB", after - before, "FILE", len(png))
"""


def test_bomb_refused_from_header_with_bounded_memory(tmp_path):
    """A complete 144-megapixel zero PNG (a real bomb, ~140 kB on disk) is refused from its
    header: the process's peak RSS grows by less than 16 MB (decoding it would take 144 MB)."""
    proc = subprocess.run([sys.executable, "-c", _BOMB_SCRIPT, str(ROOT), str(tmp_path / "bomb.png")],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout.split()
    assert proc.returncode == 0, proc.stderr
    assert out[0] == "REFUSED" and "megapixel" in proc.stdout, proc.stdout
    growth_kb = int(out[out.index("GROWTH_KB") + 1])
    assert int(out[out.index("FILE") + 1]) < 1_000_000
    assert growth_kb < 16 * 1024, proc.stdout
