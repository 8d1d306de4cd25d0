"""Fuzzing a catalog's files (issue 17): seeded random damage to catalog.db, its -wal, index.bin,
index.json and a thumbnail (bytes flipped, overwritten or zeroed, a page header overwritten,
files truncated, swapped or deleted), then `info`, `check`, `search`, `check --repair` and
`check` again, in-process.

Whatever the damage: no internal error (exit 3) or traceback, every message on stderr is one
line, and after `check --repair` the catalog is healthy or the repair said in one line why not.
LOOKALIKE_FUZZ_N=500 runs more cases (the seeds are 0..N-1, so a failure is reproducible);
LOOKALIKE_FUZZ_SEED=K runs case K alone.

Each case runs in a forked child process (where the system has fork): a native crash (a damaged
file handed to a C library) fails that case with its signal instead of ending the test run."""

from __future__ import annotations

import os
import random
import shutil
import signal
import traceback
import warnings
from pathlib import Path

import pytest

from cli.main import main
from engine.catalog import Catalog

from .reliability_data import write_photos

N = int(os.environ.get("LOOKALIKE_FUZZ_N", "20"))
SEEDS = [int(os.environ["LOOKALIKE_FUZZ_SEED"])] if os.environ.get("LOOKALIKE_FUZZ_SEED") else range(N)
TARGETS = ("catalog.db", "catalog.db-wal", "index.bin", "index.json", "thumbnail")
DAMAGES = ("flip", "overwrite", "zero", "truncate", "swap", "delete", "page")
MESSAGE_PREFIXES = ("lookalike: error: ", "lookalike: warning: ", "warning: ")


@pytest.fixture(scope="module")
def base(tmp_path_factory, model):
    """(two copies of one catalog with thumbnails: one taken while it was open, its recent
    changes in catalog.db-wal, one after it was closed, everything in catalog.db; a query
    photo), built once."""
    from engine.ingest import ingest

    root = tmp_path_factory.mktemp("fuzz-base")
    photos = write_photos(root / "photos", 12)
    snapshot = root / "cat"
    with Catalog.open(root / "live") as cat:
        assert ingest(cat, model, photos).added == 12
        for image_id in cat.image_ids()[:4]:
            cat.thumbnails.get(image_id)
        cat.upsert_products([{"id": "P1", "title": "fuzz"}])
        cat.link_images([(str(photos[0]), "P1")])
        # a copy taken while the catalog is open keeps its write-ahead log, as a crash would
        shutil.copytree(root / "live", snapshot, ignore=shutil.ignore_patterns("write.lock"))
    assert (snapshot / "catalog.db-wal").stat().st_size > 0
    closed = root / "closed"
    shutil.copytree(root / "live", closed, ignore=shutil.ignore_patterns("write.lock"))
    assert not (closed / "catalog.db-wal").exists()
    return (snapshot, closed), photos[3]


def _target(cat: Path, name: str, rng: random.Random) -> Path:
    if name == "thumbnail":
        thumbs = sorted((cat / "thumbnails").rglob("*.jpg"))
        return rng.choice(thumbs) if thumbs else cat / "index.json"
    return cat / name


def damage(cat: Path, seed: int) -> str:
    """Damage one file of the catalog copy ``cat`` as ``seed`` says; returns what was done."""
    rng = random.Random(seed)
    path = _target(cat, rng.choice(TARGETS), rng)
    kind = rng.choice(DAMAGES)
    if not path.exists():
        return f"{path.name}: absent"
    data = bytearray(path.read_bytes())
    size = len(data)
    start = rng.randrange(size) if size else 0
    length = min(size - start, rng.choice((1, 8, 64, 512, 4096)))
    if kind == "page":              # 64 random bytes over the start of a 4 KiB page (its header)
        kind, start = "overwrite", start - start % 4096
        length = min(size - start, 64)
    if kind == "flip":
        for i in range(start, start + length):
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        data[start:start + length] = bytes(rng.randrange(256) for _ in range(length))
    elif kind == "zero":
        data[start:start + length] = bytes(length)
    elif kind == "truncate":
        del data[start:]
    elif kind == "swap":
        other = _target(cat, rng.choice([t for t in TARGETS if cat / t != path]), rng)
        if other.exists() and other != path:
            tmp = path.with_name(path.name + ".swap")
            path.rename(tmp)
            other.rename(path)
            tmp.rename(other)
            return f"swapped {path.name} and {other.name}"
        return f"{path.name}: nothing to swap with"
    elif kind == "delete":
        path.unlink()
        return f"deleted {path.name}"
    path.write_bytes(bytes(data))
    return f"{kind} {path.name} at {start} ({length} bytes of {size})"


def _run(capsys, what: str, argv: list[str]) -> tuple[int, str, str]:
    with warnings.catch_warnings(record=True) as caught:    # a user would see them on stderr
        warnings.simplefilter("always", RuntimeWarning)
        rc = main(argv)
    out, err = capsys.readouterr()
    where = f"{what}: lookalike {' '.join(argv[:2])}"
    runtime = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, f"{where}: warnings reach stderr: {runtime}"
    assert rc in (0, 1, 2), f"{where}: exit {rc}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, f"{where}\n{err}"
    for line in err.splitlines():
        assert line.startswith(MESSAGE_PREFIXES), f"{where}: not a one-line message: {line!r}\n{err}"
    return rc, out, err


def in_child(fn, what: str) -> None:
    """Run ``fn`` in a forked child; its assertion (or a crash) fails the calling test."""
    if not hasattr(os, "fork"):
        fn()
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: report, then leave at once
        os.close(read)
        code, text = 0, ""
        try:
            fn()
        except AssertionError as exc:
            code, text = 1, str(exc)
        except BaseException:
            code, text = 2, traceback.format_exc()
        with os.fdopen(write, "wb") as fh:
            fh.write(text.encode("utf-8", "replace"))
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        text = fh.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        pytest.fail(f"{what}: the process crashed ({signal.Signals(sig).name})", pytrace=False)
    if os.WEXITSTATUS(status):
        pytest.fail(text, pytrace=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_damaged_catalog_files(base, tmp_path, capsys, seed):
    snapshots, query = base
    cat = tmp_path / "cat"
    shutil.copytree(snapshots[seed % 2], cat)
    what = f"seed {seed}: " + damage(cat, seed)
    in_child(lambda: _commands(capsys, what, cat, query), what)


def _commands(capsys, what: str, cat: Path, query: Path) -> None:
    opts = ["--catalog", str(cat)]
    _run(capsys, what, ["info", *opts])
    _run(capsys, what, ["check", *opts])
    _run(capsys, what, ["search", str(query), *opts])
    rc, out, err = _run(capsys, what, ["check", "--repair", *opts])
    if rc == 2:
        assert len(err.strip().splitlines()) == 1, f"{what}\n{err}"
        return
    assert rc == 0, f"{what}: problems remain after --repair\n{out}"
    rc, out, _ = _run(capsys, what, ["check", *opts])
    assert rc == 0, f"{what}: check after a successful repair\n{out}"
    _run(capsys, what, ["search", str(query), *opts])
