"""The command line at its edges: Ctrl+C once and twice during an import, a closed stdout pipe,
export targets that are folders, missing folders or the catalog's own files, feeds that are
binary, and the links of the documentation. Real subprocesses where a signal or a pipe is the
point; in-process ``main`` elsewhere."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.common import CLOSED_PIPE, ERROR, INTERRUPTED
from cli.main import main
from engine.catalog import Catalog
from engine.consistency import check_catalog
from engine.faults import FAULT_ENV
from engine.ingest import ingest

from .reliability_data import write_photos

ROOT = Path(__file__).resolve().parent.parent
CLI_BATCH = 32          # engine.ingest.BATCH_SIZE, the batch the command uses


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, "LOOKALIKE_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------- Ctrl+C
class _Import:
    """``lookalike index`` in a subprocess that pauses after its first committed batch (the
    fault hook's gate), its stderr collected line by line by a thread."""

    def __init__(self, tmp_path: Path, photos: Path, pause: str = "ingest-batch-committed"):
        self.catalog = tmp_path / "cat"
        self.gate = tmp_path / "gate"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "index", str(photos), "--catalog", str(self.catalog), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=_env(**{FAULT_ENV: f"{pause}:1:wait={self.gate}"}), preexec_fn=_as_from_a_terminal)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, what, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert self.proc.poll() is None or what(), "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.02)

    def stderr_has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out = self.proc.stdout.read() if self.proc.stdout else ""
        rc = self.proc.wait(timeout=timeout)     # behaviour, not timing: it has exited
        self._reader.join(10)
        return rc, out, "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.gate.touch()

    def interrupt_at_pause(self) -> tuple[int, str, str]:
        """One Ctrl+C once the import reached its pause point, then let it go on: (rc, out, err)."""
        try:
            self.wait_for(lambda: Path(str(self.gate) + ".reached").exists())
            self.proc.send_signal(signal.SIGINT)
            self.wait_for(lambda: self.stderr_has("stopping after"))
            self.gate.touch()
            return self.finish()
        finally:
            self.kill()


def test_first_ctrl_c_stops_at_a_batch_and_keeps_what_was_committed(tmp_path, model):
    photos = write_photos(tmp_path / "photos", 80)
    run = _Import(tmp_path, tmp_path / "photos")
    rc, out, err = run.interrupt_at_pause()
    assert rc == INTERRUPTED, err
    assert "Traceback" not in err and "internal error" not in err
    assert "lookalike: interrupted" in err and "run the same command to resume" in err
    assert f"cancelled: {CLI_BATCH} added" in out
    with Catalog.open(run.catalog, create=False) as cat:
        assert cat.count_images() == CLI_BATCH
        assert check_catalog(cat).healthy
        rest = ingest(cat, model, [tmp_path / "photos"])     # resumes where it stopped
        assert rest.added == len(photos) - CLI_BATCH and rest.unchanged == CLI_BATCH
        assert cat.count_images() == len(photos)


def test_ctrl_c_in_the_feature_pass_leaves_searchable_images(tmp_path, capsys):
    """Ctrl+C after the local-feature pass's first batch: every image is in (searchable), the
    pass stops at that batch, and the message says the features are completed later; `check
    --repair` completes them."""
    from engine.feature_store import missing_count

    photos = write_photos(tmp_path / "photos", 80)
    run = _Import(tmp_path, tmp_path / "photos", pause="features-batch-committed")
    rc, out, err = run.interrupt_at_pause()
    assert rc == INTERRUPTED, err
    assert "Traceback" not in err and "internal error" not in err
    assert "the images are searchable" in err and "`lookalike index` or `lookalike check --repair`" in err
    assert "cancelled: 80 added" in out and "searchable after" in out
    with Catalog.open(run.catalog, create=False) as cat:
        assert cat.count_images() == len(photos) == len(cat.vectors.index())
        assert missing_count(cat) == len(photos) - 2 * CLI_BATCH      # one batch of features
    capsys.readouterr()
    assert main(["check", "--catalog", str(run.catalog), "--repair", "--no-files"]) == 0
    assert f"computed the local features of {len(photos) - 2 * CLI_BATCH} images" in capsys.readouterr().out


def test_second_ctrl_c_exits_at_once_without_a_traceback(tmp_path, model):
    """The second Ctrl+C comes while the decode threads are busy: the process ends with 130,
    no traceback from threading._shutdown, no abort; the catalog keeps the committed batch."""
    photos = write_photos(tmp_path / "photos", 160, size=(480, 360))
    run = _Import(tmp_path, tmp_path / "photos")
    try:
        run.wait_for(lambda: Path(str(run.gate) + ".reached").exists())
        run.gate.touch()                          # the import goes on, its threads decoding
        run.proc.send_signal(signal.SIGINT)
        run.wait_for(lambda: run.stderr_has("stopping after") or run.proc.poll() is not None)
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGINT)
        rc, out, err = run.finish()
    finally:
        run.kill()
    # 130, or ended by SIGINT itself when the second one lands after Python's finalisation has
    # put the default handler back (the import had already stopped): a shell reports 130 for both
    assert rc in (INTERRUPTED, -signal.SIGINT), err
    for bad in ("Traceback", "terminate called", "Fatal Python error", "Exception ignored", "internal error"):
        assert bad not in err, err
    assert "stopping after the current batch" in err and "lookalike: interrupted" in err
    with Catalog.open(run.catalog, create=False) as cat:
        n = cat.count_images()
        assert CLI_BATCH <= n < len(photos)
        ingest(cat, model, [tmp_path / "photos"])            # resumes: every photo exactly once
        assert cat.count_images() == len(photos) == len({r["path"] for r in cat.iter_records()})
        problems = {f.check for f in check_catalog(cat).problems}
        # a kill during an index save may leave its temporary file (check --repair removes it)
        assert problems <= {"temporary files"}, problems


class _CancelAfter:
    """A cancel token that reads as set from its n-th look on."""

    def __init__(self, n: int):
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def test_a_cancel_while_a_feed_is_read_keeps_the_written_products(tmp_path, model):
    """Ctrl+C while a large feed is read (before any image): its products are written 1000 per
    transaction, and the cancel stops between two of them, not after the whole feed."""
    write_photos(tmp_path / "photos", 2)
    feed = tmp_path / "photos" / "feed.csv"
    feed.write_text("id,title,image_link\n" + "".join(f"P{i},T{i},photo_{i % 2:03d}.jpg\n" for i in range(2500)))
    with Catalog.open(tmp_path / "cat") as cat:
        report = ingest(cat, model, [feed], cancel=_CancelAfter(2))   # looks: before the feed, after 1000
        assert report.cancelled and report.products == 1000 and report.added == 0
        assert cat.count_products() == 1000 and cat.count_images() == 0
        report = ingest(cat, model, [feed], cancel=_CancelAfter(1))
        assert report.cancelled and report.products == 0


# --------------------------------------------------------------------------- small catalog
@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory, model) -> Path:
    """A catalog of 6 photos, each a product of a small feed."""
    root = tmp_path_factory.mktemp("edges")
    write_photos(root / "photos", 6)
    feed = root / "photos" / "products.csv"
    feed.write_text("id,title,image_link,price\n" + "".join(
        f"P{i},Product {i},photo_{i:03d}.jpg,{i}.50 EUR\n" for i in range(6)), encoding="utf-8")
    with Catalog.open(root / "cat") as cat:
        report = ingest(cat, model, [feed])
        assert report.added == 6 and report.products == 6, report.summary()
    return root / "cat"


def test_ctrl_c_stops_a_duplicate_scan(capfd, catalog_dir, monkeypatch):
    """``lookalike dupes``: Ctrl+C sets the scan's cancel (it stops between chunks), the command
    says "interrupted" with 130, and Python's own Ctrl+C handler is back afterwards."""
    import engine.duplicates as duplicates

    # as in a Python started from a terminal (the test run itself may be a background job)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)

    def scan_until_cancelled(catalog, *, cancel, **kw):
        os.kill(os.getpid(), signal.SIGINT)          # as a Ctrl+C in the terminal
        deadline = time.monotonic() + 30
        while not cancel.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cancel.is_set(), "Ctrl+C did not cancel the scan"
        raise duplicates.ScanCancelled()

    monkeypatch.setattr(duplicates, "scan", scan_until_cancelled)
    try:
        rc = main(["dupes", "--catalog", str(catalog_dir), "--quiet"])
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    err = capfd.readouterr().err
    assert rc == INTERRUPTED, err
    assert "stopping after the current step" in err and "lookalike: interrupted" in err
    assert after is signal.default_int_handler


def test_a_job_started_with_ctrl_c_ignored_keeps_ignoring_it():
    """A shell starts background jobs (``cmd &``, ``nohup``) with Ctrl+C ignored: a Ctrl+C in the
    terminal is not for them, and the commands do not take it over."""
    import threading

    from cli.common import cancel_on_interrupt

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cancel = threading.Event()
        with cancel_on_interrupt(cancel):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert not cancel.is_set() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def _as_from_a_terminal() -> None:
    """In a child process before it runs: Ctrl+C as a terminal delivers it (the test run may be
    a background job, whose children inherit Ctrl+C ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ---------------------------------------------------------------------------- closed pipes
def _with_closed_stdout(*args) -> subprocess.CompletedProcess:
    """The command with a stdout pipe whose reader has gone (as after ``| head -1``)."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "cli", *map(str, args)], stdout=w,
                              stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT, timeout=120)
    finally:
        os.close(w)
    return proc


@pytest.mark.parametrize("command", ["export products", "export images", "search --json -k 3"])
def test_a_closed_pipe_ends_quietly_with_141(catalog_dir, command):
    args = command.split()
    if args[0] == "search":
        args.append(catalog_dir.parent / "photos" / "photo_000.jpg")
    proc = _with_closed_stdout(*args, "--catalog", catalog_dir)
    assert proc.returncode == CLOSED_PIPE, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_export_into_head_gets_the_header(catalog_dir):
    proc = subprocess.run(f"{sys.executable} -m cli export images --catalog '{catalog_dir}' | head -1",
                          shell=True, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert proc.stdout.lstrip("\ufeff").startswith("image_id,path,")
    assert "error" not in proc.stderr, proc.stderr


# -------------------------------------------------------------------------- export targets
def _export(capsys, catalog_dir, output) -> tuple[int, str]:
    rc = main(["export", "products", "--catalog", str(catalog_dir), "-o", str(output)])
    err = capsys.readouterr().err
    return rc, err


def test_export_to_a_folder_is_refused(tmp_path, capsys, catalog_dir):
    rc, err = _export(capsys, catalog_dir, tmp_path)
    assert rc == ERROR
    assert err.strip() == f"lookalike: error: {tmp_path}: is a folder; give a file name"


def test_export_never_creates_a_missing_folder(tmp_path, capsys, catalog_dir):
    target = tmp_path / "missing" / "dir" / "x.csv"
    rc, err = _export(capsys, catalog_dir, target)
    assert rc == ERROR
    assert err.strip().startswith(f"lookalike: error: {target.parent}: folder does not exist")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("name, says", [
    ("catalog.db", "is a file of the catalog"), ("index.bin", "is a file of the catalog"),
    ("new.csv", "is a file of the catalog"), ("thumbnails/x.csv", ""), (".", "is a folder")])
def test_export_never_writes_into_the_catalog(tmp_path, capsys, catalog_dir, name, says):
    (catalog_dir / "thumbnails").mkdir(exist_ok=True)
    before = {p: _sha(p) for p in catalog_dir.rglob("*") if p.is_file() and p.name != "write.lock"}
    rc, err = _export(capsys, catalog_dir, catalog_dir / name)
    assert rc == ERROR, err
    assert len(err.strip().splitlines()) == 1 and says in err, err
    after = {p: _sha(p) for p in catalog_dir.rglob("*") if p.is_file() and p.name != "write.lock"}
    assert {p: h for p, h in after.items() if p in before} == before
    assert not [p for p in after if p not in before and not p.name.endswith(("-wal", "-shm"))]
    with Catalog.open(catalog_dir, create=False, readonly=True) as cat:
        assert cat.count_images() == 6


def test_export_through_a_link_into_the_catalog_is_refused(tmp_path, capsys, catalog_dir):
    db = catalog_dir / "catalog.db"
    digest = _sha(db)
    (tmp_path / "soft.csv").symlink_to(db)
    os.link(db, tmp_path / "hard.csv")
    for name in ("soft.csv", "hard.csv"):
        rc, err = _export(capsys, catalog_dir, tmp_path / name)
        assert rc == ERROR and "is a file of the catalog" in err, err
    assert _sha(db) == digest


def test_export_replaces_the_file_only_when_complete(tmp_path, capsys, catalog_dir, monkeypatch):
    target = tmp_path / "products.csv"
    target.write_text("the user's previous export\n")
    os.chmod(target, 0o640)
    assert _export(capsys, catalog_dir, target)[0] == 0
    text = target.read_text(encoding="utf-8-sig")
    assert text.startswith("id,title,") and text.count("\n") == 7
    assert oct(target.stat().st_mode & 0o777) == oct(0o640)

    # a write that fails half-way (disk full): one line, the previous file as it was, no temp left
    import engine.export as export

    def half_then_full(catalog, out):
        out.write("id,title\n" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "export_products", half_then_full)
    rc, err = _export(capsys, catalog_dir, target)
    assert rc == ERROR
    assert err.strip() == (f"lookalike: error: {target}: cannot write (No space left on device); "
                           "the previous file is unchanged")
    assert target.read_text(encoding="utf-8-sig") == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products.csv"]


def test_export_to_a_device_writes_in_place(capsys, catalog_dir):
    assert _export(capsys, catalog_dir, os.devnull)[0] == 0
    assert Path(os.devnull).is_char_device()


# ------------------------------------------------------------------------------ feed files
def test_a_binary_file_named_csv_is_not_a_text_feed(tmp_path, capsys):
    junk = tmp_path / "data.csv"
    junk.write_bytes(bytes(range(256)) * 40)
    rc = main(["index", str(junk), "--catalog", str(tmp_path / "cat"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"error: {junk}: not a text feed (binary data at byte 0)" in err
    assert "not an image" not in err and "internal error" not in err


def test_a_feed_with_a_garbage_body_imports_nothing(tmp_path, capsys):
    feed = tmp_path / "feed.csv"
    rng = random.Random(7)
    feed.write_bytes(b"id,title,price,link,image_link,brand\n" + rng.randbytes(200_000))
    cat = tmp_path / "cat"
    rc = main(["index", str(feed), "--catalog", str(cat), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert re.search(rf"error: {re.escape(str(feed))}: not a text feed \(binary data at byte \d+\)", err), err
    with Catalog.open(cat, create=False, readonly=True) as c:
        assert c.count_products() == 0 and c.count_images() == 0


def test_a_photo_named_csv_is_still_indexed(tmp_path, capsys, catalog_dir):
    src = catalog_dir.parent / "photos" / "photo_001.jpg"
    renamed = tmp_path / "photo.csv"
    renamed.write_bytes(src.read_bytes())
    rc = main(["index", str(renamed), "--catalog", str(tmp_path / "cat"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "1 added" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ docs
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def _relative_links(md: Path):
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)                  # code spans are not links
    for m in _LINK.finditer(text):
        link = m.group(1) or m.group(2)
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", link) and not link.startswith("#"):
            yield link


def test_every_relative_link_in_the_docs_points_to_a_file():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    links = [(md, link) for md in pages for link in _relative_links(md)]
    assert any(link == "docs/feeds.md" for _, link in links)
    broken = [f"{md.relative_to(ROOT)}: {link}" for md, link in links
              if not (md.parent / link.split("#")[0]).exists()]
    assert not broken, broken
