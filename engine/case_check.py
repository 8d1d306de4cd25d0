"""Check a batch of suspect offers against the catalog, into a case (engine.case_store).

Offers come from folders (every image under them), image files, or an offers CSV: one row per
offer, an image column (a path, relative to the CSV's folder or absolute) and any other columns
(offer URL, seller, marketplace, price, date...), kept as they are. Each offer's image is
searched with the normal search (verification included; the text on it is not read, since the
question is whether a catalog *photo* was copied), and the edits between it and its best
verified match are measured (:mod:`engine.edits`). Each offer's result is committed as it comes, so a
cancelled or killed check keeps what it did, and checking again skips the offers already checked
with the same file (by SHA-256): only new or changed offers are searched.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .case_store import OfferRecord
from .catalog_schema import now_iso
from .errors import ImageError, LookalikeError
from .feed_columns import _key
from .imaging import decode_image_bytes, is_image_path, load_image, max_file_bytes

Progress = Callable[[int, int, str], None]

#: matches kept per offer (the best first: the one the edits are measured against)
MATCHES_KEPT = 3
#: pixels on the short side the offer and its match are decoded with (enough for the features
#: that verify a copy and for the edits; JPEGs decode faster when reduced)
DECODE_SHORT_SIDE = 480
#: offers searched at once: search is half Python, half native code that releases the GIL
WORKERS = 2

#: offers CSV columns, normalised (engine.feed_columns._key), in order of preference
IMAGE_COLUMNS = ("image", "image path", "image file", "local image", "file", "path", "photo", "screenshot",
                 "image filename", "filename")
KEY_COLUMNS = ("offer", "offer url", "offer id", "listing", "listing url", "listing id", "offer link",
               "url", "link", "id")
OFFER_SUFFIXES = (".csv", ".tsv")


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class Offer:
    key: str                 # unique within a case: the CSV's key column, else the image's path
    image_path: str          # absolute
    fields: dict = field(default_factory=dict)   # the CSV row's other columns (empty for a folder)


@dataclass
class CheckReport:
    checked: list[OfferRecord] = field(default_factory=list)   # searched now (failures included)
    skipped: int = 0                 # already checked with the same file
    problems: list[tuple[str, str]] = field(default_factory=list)   # (source, reason): rows or files not read
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> list[OfferRecord]:
        return [r for r in self.checked if r.error]

    @property
    def images_per_second(self) -> float:
        return len(self.checked) / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------- reading offers
def read_offers(paths: Iterable[str | os.PathLike]) -> tuple[list[Offer], list[tuple[str, str]]]:
    """The offers named by ``paths`` (folders, image files, offers CSVs), each once, and the
    problems met: (source, one-line reason). A path that does not exist is a problem."""
    from .ingest import IngestReport, _walk

    offers: list[Offer] = []
    problems: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(os.path.abspath(os.path.expanduser(os.fspath(raw))))
        if path.is_dir():
            walked = IngestReport()
            offers += [Offer(p, p) for p in _walk(path, walked) if is_image_path(p)]
            problems += walked.failed
        elif path.suffix.lower() in OFFER_SUFFIXES and path.is_file():
            found, bad = read_offers_csv(path)
            offers += found
            problems += bad
        elif path.is_file():
            if is_image_path(path):
                offers.append(Offer(str(path), str(path)))
            else:
                problems.append((str(path), "not an image or an offers CSV (.csv, .tsv)"))
        else:
            problems.append((str(path), "no such file or folder"))
    seen: dict[str, int] = {}
    unique = []
    for o in offers:              # a file named twice (a folder and a file in it) is one offer
        if o.key in seen:
            continue
        seen[o.key] = len(unique)
        unique.append(o)
    return unique, problems


def read_offers_csv(path: Path) -> tuple[list[Offer], list[tuple[str, str]]]:
    """The offers of one offers CSV (encoding and delimiter detected as for product feeds)."""
    import csv

    from .errors import FeedError
    from .feeds import _sniff

    try:
        encoding, (delimiter, skip_space), header = _sniff(path, None)
    except FeedError as exc:
        raise LookalikeError(str(exc)) from None
    names = [_key(h) for h in header]
    image_col = next((names.index(c) for c in IMAGE_COLUMNS if c in names), None)
    if image_col is None:
        raise LookalikeError(f"{path}: no image column (name one of: image, image_path, file, path)")
    key_col = next((names.index(c) for c in KEY_COLUMNS if c in names and names.index(c) != image_col), None)
    offers: list[Offer] = []
    problems: list[tuple[str, str]] = []
    used: set[str] = set()
    header = [h.lstrip("\ufeff").strip() for h in header]
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, skipinitialspace=skip_space)
        next(reader, None)
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            cell = row[image_col].strip() if image_col < len(row) else ""
            if not cell:
                problems.append((f"{path}:{line}", "no image path in this row"))
                continue
            if cell.lower().startswith(("http://", "https://")):
                problems.append((f"{path}:{line}", "the image is a web address; Lookalike never goes online: "
                                                   "give the path of the downloaded file"))
                continue
            image = os.path.abspath(os.path.join(path.parent, os.path.expanduser(cell)))
            fields = {h: v for i, (h, v) in enumerate(zip(header, row)) if i != image_col and v != ""}
            key = row[key_col].strip() if key_col is not None and key_col < len(row) else ""
            key = key or image
            if key in used:
                key = f"{key} (line {line})"
            used.add(key)
            offers.append(Offer(key, image, fields))
    return offers, problems


# ---------------------------------------------------------------------- checking
def file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def pending(store, case: str, offers: Sequence[Offer], *, recheck: bool = False) -> tuple[list[Offer], int]:
    """(the offers to search, how many are skipped): an offer is skipped when it was checked with
    a file of the same SHA-256 (``recheck``: none is skipped)."""
    if recheck:
        return list(offers), 0
    done = store.checked_files(case)
    todo = []
    for o in offers:
        if o.key in done:
            try:
                if file_sha256(o.image_path) == done[o.key]:
                    continue
            except OSError:
                pass            # unreadable now: checked again, and fails with the reason
        todo.append(o)
    return todo, len(offers) - len(todo)


def check_offers(catalog, model, case: str, offers: Sequence[Offer], *, recheck: bool = False,
                 progress: Progress | None = None, cancel: CancelToken | None = None,
                 on_checked: Callable[[OfferRecord], None] | None = None,
                 edits: bool = True, sources: Sequence[str] = ()) -> CheckReport:
    """Search each offer not yet checked into ``case`` and store the results (see the module
    docstring). ``on_checked`` is called with each stored record, in order; ``sources``: the
    folders and files the offers came from, remembered by the case."""
    from .search import Searcher

    store = catalog.case_store
    store.create(case, sources)
    report = CheckReport()
    started = time.perf_counter()
    todo, report.skipped = pending(store, case, offers, recheck=recheck)
    searcher = Searcher(catalog, model, read_text=False)

    def one(offer: Offer) -> OfferRecord:
        return _check_one(catalog, searcher, offer, edits=edits)

    def commit(record: OfferRecord) -> None:      # each offer its own transaction: a kill loses none
        store.save(case, [record])
        report.checked.append(record)
        if on_checked is not None:
            on_checked(record)

    total = len(todo)
    if progress:
        progress(0, total, "")
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="case-check") as pool:
        window = 2 * WORKERS
        futures = [pool.submit(one, o) for o in todo[:window]]
        nxt = len(futures)
        for i in range(total):
            if cancel is not None and cancel.is_set():
                report.cancelled = True
                for f in futures[i:]:
                    f.cancel()
                break
            record = futures[i].result()
            if nxt < total:
                futures.append(pool.submit(one, todo[nxt]))
                nxt += 1
            commit(record)
            if progress:
                progress(i + 1, total, todo[i].image_path)
    report.seconds = time.perf_counter() - started
    return report


def _check_one(catalog, searcher, offer: Offer, *, edits: bool) -> OfferRecord:
    from .ingest import content_hash

    record = OfferRecord(offer=offer.key, image_path=offer.image_path, fields=dict(offer.fields),
                         checked_at=now_iso(), model_id=searcher.model.model_id)
    try:
        data = _read(offer.image_path)
        record.sha256 = hashlib.sha256(data).hexdigest()
        rgb = decode_image_bytes(data, source=offer.image_path,
                                 min_short_side=max(DECODE_SHORT_SIDE, searcher.model.resize_short_side))
    except ImageError as exc:
        record.error = exc.reason
        return record
    result = searcher.search_image(rgb, k=MATCHES_KEPT, name=offer.image_path,
                                   same_file_hash=content_hash(data), group="image")
    if result.error:
        record.error = result.error
        return record
    record.matches = [m.to_json() for m in result.results]
    if result.results:
        best = result.results[0]
        record.score, record.strength = float(best.score), best.strength
        if edits and best.evidence is not None and best.evidence.verified:
            record.edits = _edits(rgb, best)
            if recoloured_copy(best, record.edits):
                record.strength = RECOLOURED_COPY
    return record


#: the strength of an offer whose best match is our photo with its colours changed
RECOLOURED_COPY = "recoloured copy"


def recoloured_copy(best, edits: dict | None) -> bool:
    """Whether an offer below "copy" is still our photo, recoloured: its geometry confirms a copy
    (the match policy's CONFIRMED_INLIERS and aligned structure) and the edit report finds its
    colours changed. The score keeps its meaning (a catalog's colour variants are one photo
    recoloured, and score below "copy"); for brand protection a recoloured copy of our photo is
    still a copy of it, so the case says so."""
    from .match_policy import confirms_copy

    ev = best.evidence
    return (not best.strength.endswith("copy") and "recoloured" in (edits or {}).get("edits", ())
            and bool(confirms_copy(ev.inliers, ev.aligned)))


def _edits(rgb: np.ndarray, best) -> dict | None:
    """The edits between the offer and its best match (None: the match cannot be read now)."""
    from .edits import detect_edits

    try:
        match = load_image(best.path, min_short_side=DECODE_SHORT_SIDE)
    except ImageError:
        return None
    return detect_edits(rgb, match, transform=best.evidence.transform).to_json()


def _read(path: str) -> bytes:
    """An offer image's bytes; ImageError with the reason when the file cannot be read."""
    try:
        size = os.stat(path).st_size
        if size > max_file_bytes():
            raise ImageError(path, f"file is too large ({size / 2**20:.0f} MiB) for an image within the pixel limit")
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder") from None
    except OSError as exc:
        raise ImageError(path, exc.strerror or str(exc)) from None
