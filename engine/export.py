"""CSV export of catalog data, safe to open in a spreadsheet."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from .catalog import Catalog
from .errors import OutputError

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value) -> str:
    """The text of a CSV cell, with formula injection defused by a leading apostrophe
    (OWASP's advice). Numbers stay numbers: a negative price is written as a plain number."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def write_csv(out: IO[str], header: Sequence[str], rows: Iterable[Sequence]) -> int:
    writer = csv.writer(out, dialect="excel")
    writer.writerow([safe_cell(h) for h in header])
    n = 0
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        n += 1
    return n


PRODUCT_FIELDS = ("id", "title", "brand", "price", "currency", "category", "url", "sku", "gtin",
                  "group_id", "description", "extra", "remote_images", "source")
IMAGE_FIELDS = ("image_id", "path", "product_id", "title", "brand", "price", "currency", "category",
                "width", "height", "file_size", "content_hash", "model_id", "labels", "added_at")


def export_products(catalog: Catalog, out: IO[str]) -> int:
    return write_csv(out, PRODUCT_FIELDS, catalog.product_rows(PRODUCT_FIELDS))


def export_images(catalog: Catalog, out: IO[str]) -> int:
    rows = ([rec.get(k) for k in IMAGE_FIELDS] for rec in catalog.iter_records())
    return write_csv(out, IMAGE_FIELDS, rows)


CASE_FIELDS = ("number", "offer", "image", "sha256", "checked_at", "score", "strength", "edits",
               "catalog_image", "product_id", "title", "decision", "note", "decided_at", "error")


def export_case(catalog: Catalog, name: str, out: IO[str]) -> int:
    """A case's offers, strongest first: one row each, the offers CSV's own columns after ours."""
    offers = catalog.case_store.offers(name)
    extra: list[str] = []
    for r in offers:
        extra += [k for k in r.fields if k not in extra and k not in CASE_FIELDS]

    def row(r) -> list:
        best = r.best or {}
        return [r.number, r.offer, r.image_path, r.sha256, r.checked_at, r.score, r.strength,
                "; ".join((r.edits or {}).get("edits", [])), best.get("path"), best.get("product_id"),
                best.get("title"), r.decision, r.note, r.decided_at, r.error, *(r.fields.get(k) for k in extra)]

    return write_csv(out, (*CASE_FIELDS, *extra), (row(r) for r in offers))


def check_output(path: str | os.PathLike | None, *, protect: str | os.PathLike | None = None) -> Path | None:
    """The file a CSV export is to write, checked before anything is opened for writing; None for
    stdout (``-`` or None). OutputError (one line) for a folder, a parent folder that does not
    exist (never created silently) and, with ``protect`` (the catalog folder), any file inside it
    (its database, index, thumbnails), through links too, or the same file as one of its own."""
    if path is None or os.fspath(path) == "-":
        return None
    text = os.fspath(path)
    target = Path(text).expanduser()
    if target.is_dir() or text.endswith(("/", os.sep)):
        raise OutputError(f"{target}: is a folder; give a file name")
    parent = target.parent
    if not parent.is_dir():
        if parent.exists():
            raise OutputError(f"{parent}: is not a folder; choose another output file")
        raise OutputError(f"{parent}: folder does not exist; create it first or choose another output file")
    if protect is not None:
        _refuse_inside(target, Path(protect))
    return target


def _refuse_inside(target: Path, catalog_dir: Path) -> None:
    real, root = Path(os.path.realpath(target)), Path(os.path.realpath(catalog_dir))
    inside = real == root or root in real.parents
    if not inside and real.exists():
        # a hard link elsewhere to one of the catalog's files is that file
        try:
            inside = any(f.is_file() and os.path.samefile(f, real) for f in root.iterdir())
        except OSError:
            pass
    if inside:
        raise OutputError(f"{target}: is a file of the catalog {catalog_dir}; write the export "
                          "outside the catalog folder")


@contextlib.contextmanager
def open_output(path: str | os.PathLike | None, *, protect: str | os.PathLike | None = None,
                binary: bool = False) -> Iterator[IO]:
    """A text stream for CSV output: stdout for ``-`` or None, else the file (UTF-8 with BOM, so
    Excel reads accents) after :func:`check_output`; ``binary``: a bytes stream instead (a
    report), never stdout. A file is written beside the target under a
    temporary name and renamed over it only when the block ends without error, so a failed or
    interrupted export leaves the user's previous file as it was (a link is followed: the file
    it points to is replaced). A device or named pipe (``/dev/null``) is written in place."""
    target = check_output(path, protect=protect)
    mode = {"mode": "wb"} if binary else {"mode": "w", "newline": "", "encoding": "utf-8-sig"}
    if target is None:
        if binary:
            raise OutputError("a binary output needs a file name")
        yield sys.stdout
        sys.stdout.flush()
        return
    real = Path(os.path.realpath(target))
    if real.exists() and not real.is_file():
        try:
            out = open(real, **mode)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
        with out:
            yield out
        return
    existed = real.exists()
    tmp = real.with_name(f".{real.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies
    except OSError as exc:
        raise OutputError(f"{real.parent}: cannot write a file here ({exc.strerror or exc}); "
                          "choose another folder") from None
    try:
        with os.fdopen(fd, **mode) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        if existed:
            os.chmod(tmp, stat.S_IMODE(os.stat(real).st_mode))
        os.replace(tmp, real)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            kept = "the previous file is unchanged" if existed else "nothing was written"
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc}); {kept}") from None
        raise
