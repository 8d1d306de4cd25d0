"""Reading the text printed on a product (OCR) and the words both sides of a text match share.

:func:`read_text` runs RapidOCR (PP-OCR det + direction classifier + recogniser, ONNX models that
ship inside the ``rapidocr`` wheel) on one RGB image; :func:`normalise_words` turns any text, OCR
lines or catalog fields, into the words :mod:`engine.text_match` compares.

The OCR engine is created on first use, never at import (search start-up stays fast), with:

* the bundled model files named explicitly, so the library never downloads a model or writes
  into its own folder (with no ``model_path`` it would create ``models/`` and fetch what is
  missing);
* one intra-op thread: reading runs beside the visual stages of a search, or in ingest's decode
  threads, each of which already keeps a core busy;
* a pool of engines: a thread takes an idle engine or makes one, so no engine is used by two
  threads at once (the library keeps per-call state on its objects) and the number of engines
  is the largest number of threads that read at the same time.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import TextReaderError

__all__ = ["READER_ID", "MIN_CONFIDENCE", "READ_SHORT_SIDE", "ReadText", "TextLine",
           "TextReaderError", "fold", "normalise_words", "number_word", "read_text", "reader_available",
           "unload_readers"]

#: Names what produced stored words (engine.catalog's ``image_text.reader``): change it when the
#: OCR models, their settings or :func:`normalise_words` change, so stored words can be told apart.
READER_ID = "rapidocr3-ppocrv6-small/1"

#: Lines read with less confidence are dropped (the library's own default).
MIN_CONFIDENCE = 0.5

#: Images are shrunk to this short side before reading. The detector works at a short side of 736
#: (smaller images are enlarged to it), so more pixels mostly cost time: a 12-megapixel photo read
#: whole is detected at up to 2000 px, several times slower.
READ_SHORT_SIDE = 736

_MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float                       # the recogniser's mean character probability, 0-1
    box: tuple[tuple[float, float], ...]    # four corners (x, y) in the input image's pixels


@dataclass(frozen=True)
class ReadText:
    lines: tuple[TextLine, ...]             # in reading order (top to bottom, left to right)
    words: tuple[str, ...]                  # normalise_words of the lines, once each
    seconds: float = 0.0                    # wall time of the reading

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines)


# ---------------------------------------------------------------------- words
# letters NFKD does not take apart (Nordic, Polish, ...), folded like their base letters
_EXTRA_FOLDS = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d",
                              "þ": "th", "ı": "i"})
# a number with a percent sign or a unit: "1,5%", "12%FETT", "500 g", "3DL" (a unit not followed
# by more letters); else a run of letters and digits
_TOKEN = re.compile(r"(\d+(?:[.,]\d+)?)\s?(%|(?:kg|mg|g|ml|cl|dl|l|oz|lbs|lb)(?![^\W\d_]))|[^\W_]+")
# digit groups that may be one printed code: "7 310865 004703" (a GTIN under its barcode)
_DIGIT_GROUPS = re.compile(r"\d+(?:[ -]\d+)+")
_LETTERS = re.compile(r"[^\W\d_]+")
_DIGITS = re.compile(r"\d+")

MIN_LETTERS = 3        # shorter letter runs are mostly OCR debris ("ge", "N") or stop words
MIN_DIGITS = 3         # shorter numbers are prices, dates and debris
MIN_CODE = 5           # letters and digits mixed, this long or longer: a code (SKU)


def fold(text: str) -> str:
    """Case and accents folded: "Mjölk" and "MJOLK" both give "mjolk" (NFKD, combining marks
    dropped, casefold; ø/æ/ł/... as their base letters)."""
    if text.isascii():
        return text.casefold()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.casefold().translate(_EXTRA_FOLDS)


def normalise_words(text: str) -> list[str]:
    """The words of ``text`` a text match compares, once each, in order of appearance: folded
    (:func:`fold`) runs of at least 3 letters; quantities as one word ("1,5 %" -> "1.5%",
    "500 G" -> "500g"); numbers of at least 3 digits; letter-and-digit codes of at least 5
    characters ("ab1234"); and, last, each run of digit groups with 8-14 digits in all, joined
    (a GTIN printed under its barcode).
    Numbers of 8 digits or more lose their leading zeros."""
    text = fold(text)
    out: dict[str, None] = {}
    for m in _TOKEN.finditer(text):
        if m.group(1) is not None:
            out[m.group(1).replace(",", ".") + m.group(2)] = None
            continue
        run = m.group()
        if run.isalpha():
            if len(run) >= MIN_LETTERS:
                out[run] = None
            continue
        if len(run) >= MIN_CODE and not run.isdigit():
            out[run] = None
        for part in _LETTERS.findall(run):
            if len(part) >= MIN_LETTERS:
                out[part] = None
        for part in _DIGITS.findall(run):
            if len(part) >= MIN_DIGITS:
                out[number_word(part)] = None
    for m in _DIGIT_GROUPS.finditer(text):
        groups = re.findall(r"\d+", m.group())
        for i in range(len(groups)):
            for j in range(i + 2, len(groups) + 1):
                joined = "".join(groups[i:j])
                if len(joined) > 14:
                    break
                if len(joined) >= 8:
                    out[number_word(joined)] = None
    return list(out)


def number_word(digits: str) -> str:
    """Long numbers (GTINs: 8-14 digits) without leading zeros, so a GTIN-13 and the same
    GTIN-14 ("0" + 13 digits) are one word."""
    return digits.lstrip("0") or "0" if len(digits) >= 8 else digits


# ---------------------------------------------------------------------- the OCR engine
class _EnginePool:
    def __init__(self) -> None:
        self._idle: list = []
        self._lock = threading.Lock()

    @contextmanager
    def engine(self) -> Iterator:
        with self._lock:
            engine = self._idle.pop() if self._idle else None
        if engine is None:
            engine = _create_engine()
        try:
            yield engine
        finally:
            with self._lock:
                self._idle.append(engine)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()


_POOL = _EnginePool()


def _model_dir() -> Path:
    try:
        import rapidocr
    except ImportError as exc:
        raise TextReaderError(f"text reader: the rapidocr package is not installed ({exc})") from None
    return Path(rapidocr.__file__).resolve().parent / "models"


def _create_engine():
    folder = _model_dir()
    params: dict = {
        "Global.log_level": "error",
        "Global.text_score": MIN_CONFIDENCE,
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    }
    for part, name in _MODEL_FILES.items():
        path = folder / name
        if not path.is_file():
            raise TextReaderError(f"text reader: OCR model {path} is missing; reinstall rapidocr")
        params[f"{part}.model_path"] = str(path)
    try:
        from rapidocr import RapidOCR

        engine = RapidOCR(params=params)
        # the library loads each model on its first call: load them now, so a damaged file is
        # this one-line error, not a failure inside the first image
        for loader in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
            if hasattr(engine, loader):
                getattr(engine, loader)()
    except TextReaderError:
        raise
    except Exception as exc:
        raise TextReaderError(f"text reader: cannot load the OCR models from {folder} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return engine


def reader_available() -> None:
    """Load an OCR engine now (kept for later calls); raises TextReaderError if it cannot be."""
    with _POOL.engine():
        pass


def unload_readers() -> None:
    """Drop the idle OCR engines (their memory); the next read makes a new one."""
    _POOL.clear()


def read_text(rgb: np.ndarray) -> ReadText:
    """The text lines on an RGB (or grey) ``uint8`` image and their words. Pass the image at its
    full resolution or at a short side of at least :data:`READ_SHORT_SIDE` where it has one: a
    reduced-size decode for the embedding model (256 px) loses small print.
    Thread-safe. Raises TextReaderError when the OCR models cannot be loaded."""
    started = time.perf_counter()
    img = np.asarray(rgb)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise ValueError(f"read_text needs an RGB uint8 image, not {img.dtype} {img.shape}")
    img = img[:, :, :3]
    scale = 1.0
    short = min(img.shape[:2])
    if short > READ_SHORT_SIDE:
        import cv2

        scale = READ_SHORT_SIDE / short
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    bgr = np.ascontiguousarray(img[:, :, ::-1])      # the library takes arrays as BGR
    with _POOL.engine() as engine:
        result = engine(bgr)
    lines = []
    boxes = getattr(result, "boxes", None)
    texts = getattr(result, "txts", None) or ()
    scores = getattr(result, "scores", None) or ()
    if boxes is not None and len(texts):
        for box, text, score in zip(boxes, texts, scores):
            corners = tuple((float(x) / scale, float(y) / scale) for x, y in np.asarray(box)[:4])
            lines.append(TextLine(str(text), float(score), corners))
    words: dict[str, None] = {}
    for line in lines:
        if line.confidence >= MIN_CONFIDENCE:
            words.update(dict.fromkeys(normalise_words(line.text)))
    return ReadText(tuple(lines), tuple(words), time.perf_counter() - started)
