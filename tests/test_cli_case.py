"""`lookalike case`: check offers into a case, decide, list, and write the evidence report as HTML
and PDF (the PDF rendered to check it is not blank)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from tests.test_cases import _copy_of


@pytest.fixture
def shop_dir(small_luma_catalog, catalog_copy):
    return catalog_copy(small_luma_catalog)


@pytest.fixture
def offers_csv(tmp_path, luma_images):
    from skimage import data

    folder = tmp_path / "downloads"
    folder.mkdir()
    _copy_of(luma_images[::18][3], folder / "o1.jpg")
    _copy_of(luma_images[::18][7], folder / "o2.jpg", mirror=False)
    Image.fromarray(data.astronaut()).save(folder / "o3.jpg")
    path = tmp_path / "offers.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["offer_url", "seller", "marketplace", "image_file"])
        w.writerow(["https://m.example/a", "Шоп «Север»", "M1", "downloads/o1.jpg"])
        w.writerow(["https://m.example/b", "Cheap & Co <b>", "M2", "downloads/o2.jpg"])
        w.writerow(["https://m.example/c", "Honest Ltd", "M1", "downloads/o3.jpg"])
    return path


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_check_decide_and_report(shop_dir, offers_csv, tmp_path, capsys, luma_images):
    assert main(["case", "check", "--catalog", str(shop_dir), "-q", "--json", "sweep", str(offers_csv)]) == 0
    out = _json_lines(capsys.readouterr().out)
    assert [o["offer"] for o in out] == ["https://m.example/a", "https://m.example/b", "https://m.example/c"]
    first = out[0]
    assert first["matches"][0]["path"] == str(luma_images[::18][3])
    assert first["strength"].endswith("copy") and "mirrored" in first["edits"]
    assert first["fields"]["seller"] == "Шоп «Север»" and len(first["sha256"]) == 64
    assert not out[2]["strength"].endswith("copy")

    # run again: nothing new
    assert main(["case", "check", "--catalog", str(shop_dir), "-q", "sweep", str(offers_csv)]) == 0
    assert "0 offers checked" in capsys.readouterr().err

    # a report needs a decision first
    assert main(["case", "report", "--catalog", str(shop_dir), "-q", "sweep", "-o", str(tmp_path / "r.html")]) == 2
    assert "no offer decided infringing" in capsys.readouterr().err
    assert main(["case", "decide", "--catalog", str(shop_dir), "sweep", "https://m.example/a", "infringing",
                 "--note", "listing copies our hero shot"]) == 0
    assert main(["case", "decide", "--catalog", str(shop_dir), "sweep", "o2.jpg", "infringing"]) == 0
    assert main(["case", "decide", "--catalog", str(shop_dir), "sweep", "3", "not"]) == 0
    assert main(["case", "decide", "--catalog", str(shop_dir), "sweep", "3", "perhaps"]) == 2
    capsys.readouterr()

    assert main(["case", "report", "--catalog", str(shop_dir), "-q", "sweep", "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "listing copies our hero shot" in html and "Шоп «Север»" in html
    assert "Cheap &amp; Co &lt;b&gt;" in html and "<b>" not in html.split("<body>")[1].replace("<b>Edits", "")
    assert "Honest Ltd" not in html                                  # decided not infringing
    assert len(re.findall(r'src="data:image/jpeg;base64,', html)) >= 6   # 2 offers x offer, match, aligned...
    assert not re.search(r'(src|href)="(https?:)?//', html)             # nothing fetched from a network
    sha = __import__("hashlib").sha256((tmp_path / "downloads" / "o1.jpg").read_bytes()).hexdigest()
    assert sha in html

    pdf = tmp_path / "r.pdf"
    assert main(["case", "report", "--catalog", str(shop_dir), "-q", "sweep", "-o", str(pdf),
                 "--min-score", "0"]) == 0
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    assert len(doc) == 1 + 3                      # summary, then a page per offer
    page = np.asarray(doc[1].render(scale=1).to_pil().convert("L"))
    assert (page < 128).mean() > 0.02             # text and images, not a blank page
    text = doc[1].get_textpage().get_text_range()
    assert sha[:32] in text.replace("\n", "").replace("\r", "")


def test_show_and_list_cases(shop_dir, offers_csv, capsys, tmp_path):
    assert main(["case", "list", "--catalog", str(shop_dir)]) == 0
    assert "no cases yet" in capsys.readouterr().out
    assert main(["case", "check", "--catalog", str(shop_dir), "-q", "sweep", str(offers_csv)]) == 0
    capsys.readouterr()
    assert main(["case", "show", "--catalog", str(shop_dir), "sweep"]) == 0
    out = capsys.readouterr().out
    assert "o1.jpg" in out and "case 'sweep': 3 offers, 3 checked, 0 failed" in out
    csv_out = tmp_path / "offers-out.csv"
    assert main(["case", "show", "--catalog", str(shop_dir), "sweep", "--csv", str(csv_out)]) == 0
    rows = list(csv.DictReader(open(csv_out, encoding="utf-8-sig", newline="")))
    assert [r["offer"] for r in rows][0] == "https://m.example/a" and len(rows) == 3
    assert rows[0]["seller"] == "Шоп «Север»" and rows[0]["marketplace"] == "M1"
    assert "mirrored" in rows[0]["edits"] and rows[0]["catalog_image"].endswith(".jpg")
    assert main(["case", "show", "--catalog", str(shop_dir), "nope"]) == 2
    assert "no case named 'nope'" in capsys.readouterr().err
    assert main(["case", "delete", "--catalog", str(shop_dir), "sweep"]) == 0
    assert "its 3 offers" in capsys.readouterr().out


def test_bad_inputs_are_one_line_each_and_checked_offers_are_kept(shop_dir, tmp_path, capsys, luma_images):
    folder = tmp_path / "offers"
    folder.mkdir()
    _copy_of(luma_images[0], folder / "fine.jpg")
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff")
    code = main(["case", "check", "--catalog", str(shop_dir), "-q", "c", str(folder), str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"error: .*missing: no such file or folder", err)
    assert re.search(r"error: .*truncated\.jpg: ", err)
    assert main(["case", "show", "--catalog", str(shop_dir), "c", "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 2


def test_check_watch_prints_new_offers_until_ctrl_c(shop_dir, tmp_path, luma_images):
    """`case check --watch`: the folder is checked, then each image dropped in is checked and
    printed as it arrives; Ctrl+C ends the watch with status 130, keeping what was checked."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from engine.catalog import Catalog

    def lines_of(stream) -> queue.Queue:          # read without blocking the test
        q: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [q.put(line) for line in stream], daemon=True).start()
        return q

    def wait_for(q: queue.Queue, text: str) -> str:
        while True:
            line = q.get(timeout=120)             # queue.Empty fails the test instead of hanging
            if text in line:
                return line

    root = Path(__file__).resolve().parent.parent
    folder = tmp_path / "incoming"
    folder.mkdir()
    _copy_of(luma_images[::18][1], folder / "first.jpg")
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_DEBUG"}
    env["PYTHONPATH"] = str(root)
    proc = subprocess.Popen([sys.executable, "-m", "cli", "case", "check", "--catalog", str(shop_dir), "-q",
                             "--watch", "w", str(folder)], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        out, err = lines_of(proc.stdout), lines_of(proc.stderr)
        wait_for(err, "watching")
        _copy_of(luma_images[::18][6], folder / "dropped.jpg")
        line = wait_for(out, "dropped.jpg")
        assert "copy" in line and str(luma_images[::18][6]) in line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    with Catalog.open(shop_dir, readonly=True) as cat:
        assert cat.case_store.summary("w").offers == 2
