"""engine.text_reading: OCR of rendered text, the shared word normalisation, the engine's
loading (offline, lazily, a one-line error) and its use from several threads."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import text_reading
from engine.errors import TextReaderError
from engine.text_reading import fold, normalise_words, read_text

ROOT = Path(__file__).resolve().parent.parent


def _label(text="MELLANMJOLK 1.5%", size=(160, 760), scale=2.0, offset=(30, 100)):
    """Black print on a white card, as RGB."""
    img = np.full((*size, 3), 255, np.uint8)
    cv2.putText(img, text, offset, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 5, cv2.LINE_AA)
    return img


def _has(words, wanted, at_least=80):
    from rapidfuzz import fuzz

    return any(fuzz.ratio(w, wanted) >= at_least for w in words)


# ---------------------------------------------------------------------- words
def test_case_and_accents_fold_to_one_word():
    assert fold("Mjölk") == fold("MJOLK") == "mjolk"
    assert normalise_words("Mellanmjölk") == normalise_words("MELLANMJOLK") == ["mellanmjolk"]
    assert normalise_words("GRÄDDFIL Crème Brûlée") == ["graddfil", "creme", "brulee"]
    assert normalise_words("Ørsted Æble Straße") == ["orsted", "aeble", "strasse"]


def test_words_numbers_and_quantities():
    assert normalise_words("Mellanmjölk Ekologisk 1,5 %") == ["mellanmjolk", "ekologisk", "1.5%"]
    # a quantity glued to the next word, a unit after a space; short letter runs dropped
    assert normalise_words("Arla eko GRÄDDFIL 12%FETT-3 DL") == ["arla", "eko", "graddfil", "12%", "fett", "3dl"]
    assert normalise_words("alpro Mild&Creamy 750 g") == ["alpro", "mild", "creamy", "750g"]
    assert normalise_words("4 glass") == ["glass"]                  # "g" of a word is no unit
    assert normalise_words("ge N of 23 100") == ["100"]             # debris, short numbers dropped
    assert normalise_words("SKU ab1234") == ["sku", "ab1234", "1234"]
    assert normalise_words("a b a b") == []
    assert normalise_words("juice JUICE Juice") == ["juice"]        # once each


def test_a_gtin_under_its_barcode_is_one_word_without_leading_zeros():
    words = normalise_words("7 310865 004703")
    assert "7310865004703" in words
    assert "7310865004703" in normalise_words("07310865004703")    # GTIN-14 of the same item


# ---------------------------------------------------------------------- reading
def test_reads_a_rendered_word():
    found = read_text(_label())
    assert _has(found.words, "mellanmjolk"), found
    assert "1.5%" in found.words
    line = max(found.lines, key=lambda x: len(x.text))
    assert 0.5 <= line.confidence <= 1.0
    xs = [x for x, _ in line.box]
    ys = [y for _, y in line.box]
    assert 0 <= min(xs) < 80 and 560 < max(xs) <= 760 and 30 < min(ys) < max(ys) < 140
    assert found.seconds > 0


def test_a_large_image_is_read_smaller_and_boxes_come_back_in_its_pixels():
    small = _label()
    big = cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)   # short side 480 -> 736
    big = np.pad(big, ((0, 1000), (0, 0), (0, 0)), constant_values=255)        # short side 1480
    found = read_text(big)
    assert _has(found.words, "mellanmjolk"), found
    line = max(found.lines, key=lambda x: len(x.text))
    xs = [x for x, _ in line.box]
    assert max(xs) > 3 * 560                                                    # input pixels


def test_nothing_to_read():
    found = read_text(np.full((200, 300, 3), 255, np.uint8))
    assert found.lines == () and found.words == ()
    assert read_text(np.full((64, 64), 128, np.uint8)).words == ()               # grey accepted


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        read_text(np.zeros((10, 10, 3), np.float32))


def test_threads_read_at_once_with_the_same_result():
    images = [_label("MELLANMJOLK 1.5%"), _label("GRADDFIL 12%"), _label("VANILJ 2%")]
    alone = [read_text(img).words for img in images]
    results = {}

    def run(i):
        results[i] = read_text(images[i % 3]).words

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(6)] == alone * 2


def test_missing_models_are_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr(text_reading, "_model_dir", lambda: tmp_path)
    monkeypatch.setattr(text_reading, "_POOL", text_reading._EnginePool())
    with pytest.raises(TextReaderError) as exc:
        read_text(_label())
    assert "\n" not in str(exc.value) and "missing" in str(exc.value)


def test_damaged_model_is_one_line_error(monkeypatch, tmp_path):
    for name in text_reading._MODEL_FILES.values():
        (tmp_path / name).write_bytes(b"not an onnx model")
    monkeypatch.setattr(text_reading, "_model_dir", lambda: tmp_path)
    monkeypatch.setattr(text_reading, "_POOL", text_reading._EnginePool())
    with pytest.raises(TextReaderError) as exc:
        text_reading.reader_available()
    assert "\n" not in str(exc.value) and "cannot load the OCR models" in str(exc.value)


def test_reading_never_downloads_or_writes(monkeypatch, tmp_path):
    """A fresh engine with the network refused and HOME unwritable: the bundled models load and
    nothing is added to the package's folder."""
    import onnxruntime  # noqa: F401  (imported first: it keeps a telemetry id of its own in HOME)
    import rapidocr

    package = Path(rapidocr.__file__).resolve().parent
    before = sorted((p.relative_to(package), p.stat().st_mtime) for p in package.rglob("*")
                    if "__pycache__" not in p.parts)

    def refuse(*args, **kwargs):
        raise AssertionError("the text reader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HOME", str(tmp_path / "no-such-home"))
    monkeypatch.setattr(text_reading, "_POOL", text_reading._EnginePool())
    assert _has(read_text(_label()).words, "mellanmjolk")
    after = sorted((p.relative_to(package), p.stat().st_mtime) for p in package.rglob("*")
                   if "__pycache__" not in p.parts)
    assert after == before
    assert not (tmp_path / "no-such-home").exists()


def test_importing_the_engine_loads_no_ocr():
    code = ("import sys, engine.text_reading, engine.text_match, engine.ingest, engine.catalog; "
            "print(sorted(m for m in ('rapidocr', 'rapidfuzz', 'omegaconf') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
