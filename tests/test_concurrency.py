"""Searching while an import runs (threads of one process, as in the GUI, and separate
processes), and two processes importing into one catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


from engine.catalog import Catalog
from engine.consistency import check_catalog
from engine.faults import FAULT_ENV
from engine.ingest import ingest
from engine.search import Searcher

from .reliability_data import write_photos

ROOT = Path(__file__).resolve().parent.parent


def test_search_threads_during_ingest_thread(tmp_path, model):
    """GUI situation: one Catalog object, an import in a worker thread, searches in two others.
    Every search returns correct results (a query image finds itself first) and never raises."""
    first = write_photos(tmp_path / "a", 16)
    later = write_photos(tmp_path / "b", 48, start=100)
    with Catalog.open(tmp_path / "cat") as cat:
        assert ingest(cat, model, [tmp_path / "a"]).added == 16
        searcher = Searcher(cat, model)
        done = threading.Event()
        errors: list[BaseException] = []
        searches = [0, 0]
        report = {}

        def importer():
            try:
                report["r"] = ingest(cat, model, [tmp_path / "b"], batch_size=4)
            except BaseException as exc:   # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                done.set()

        def search_loop(slot: int):
            i = 0
            try:
                while not done.is_set() or i < 4:
                    q = first[(i * 5 + slot) % len(first)]
                    res = searcher.search_path(q, k=5)
                    assert res.error is None, res.error
                    assert res.results[0].path == str(q) and res.results[0].score > 0.99
                    ids = [m.image_id for m in res.results]
                    assert len(ids) == len(set(ids))
                    i += 1
                    searches[slot] += 1
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=importer)] + [
            threading.Thread(target=search_loop, args=(s,)) for s in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert report["r"].added == 48 and not report["r"].failed
        assert min(searches) >= 4
        # after the import: the new images are found too, and the catalog is consistent
        for q in later[::12]:
            res = searcher.search_path(q, k=1)
            assert res.results[0].path == str(q)
        assert check_catalog(cat).healthy


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, "LOOKALIKE_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _cli(*args, timeout=120, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], capture_output=True,
                          text=True, env=_env(**env), cwd=ROOT, timeout=timeout)


def test_reader_and_second_writer_while_another_process_imports(tmp_path):
    photos = write_photos(tmp_path / "photos", 24)
    cat = tmp_path / "cat"
    gate = tmp_path / "gate"
    # process A imports and stops (holding the write lock) right after its first committed batch
    a = subprocess.Popen([sys.executable, "-m", "cli", "index", str(tmp_path / "photos"),
                          "--catalog", str(cat), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env(**{FAULT_ENV: f"ingest-batch-committed:1:wait={gate}"}), cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        while not Path(str(gate) + ".reached").exists():
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline, "the importer never reached its first batch"
            time.sleep(0.05)

        # a second importer gets one clear line and exit status 2
        b = _cli("index", tmp_path / "photos", "--catalog", cat, "--quiet")
        assert b.returncode == 2, (b.stdout, b.stderr)
        lines = [l for l in b.stderr.splitlines() if l.strip() and not l.startswith("catalog ")]
        assert len(lines) == 1 and "catalog is busy" in lines[0], b.stderr
        assert "Traceback" not in b.stderr

        # a reader works: the first batch (all 24: the CLI's batch is 32) is searchable
        s = _cli("search", photos[0], "--catalog", cat, "--json", "-k", "3")
        assert s.returncode == 0, s.stderr
        hit = json.loads(s.stdout)
        assert hit["error"] is None and hit["results"][0]["path"] == str(photos[0])
        # the reader built the index in memory but did not write the writer's index files
        assert not (cat / "index.bin").exists() and not list(cat.glob("index.*.tmp"))
        c = _cli("check", "--catalog", cat)
        assert c.returncode == 0, c.stdout + c.stderr
    finally:
        gate.touch()
        out, err = a.communicate(timeout=120)
    assert a.returncode == 0, err
    assert "24 added" in out
    with Catalog.open(cat, create=False, readonly=True) as c:
        assert c.count_images() == 24
        assert check_catalog(c).healthy


def test_two_simultaneous_imports(tmp_path):
    """Two imports started together: each either works or says the catalog is busy; the catalog
    ends with every photo exactly once and consistent."""
    write_photos(tmp_path / "photos", 20)
    cat = tmp_path / "cat"
    procs = [subprocess.Popen([sys.executable, "-m", "cli", "index", str(tmp_path / "photos"),
                               "--catalog", str(cat), "--quiet"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT) for _ in range(2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    for out, err, rc in results:
        assert "Traceback" not in err
        assert rc in (0, 2), err
        if rc == 2:
            assert "catalog is busy" in err
    assert any(rc == 0 for *_, rc in results)
    with Catalog.open(cat, create=False, readonly=True) as c:
        assert c.count_images() == 20
        assert check_catalog(c).healthy
