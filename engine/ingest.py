"""`lookalike index PATH...`: image files, folders and product feeds into a catalog.

Pipeline: collect the files (folders recursively, symlink loops refused, feeds parsed), skip the
unchanged ones (same size and mtime, or same content hash), read + hash + decode + preprocess in
worker threads (OpenCV and NumPy release the GIL), run the model in batches, and commit each batch
in one SQLite transaction. The index follows the database (see engine.catalog) and is saved at
the end and every so often, so a crash or a cancel leaves a catalog that is consistent and resumes
without duplicates. One bad file never stops the run: it is reported with a one-line reason and
recorded in the ``ingest_errors`` table.

Two passes: the embedding pass above makes the images searchable; the feature pass
(engine.feature_store.fill_missing) then computes the local features that verification and the
duplicate scan use, for the images of this import and any others lacking them, a batch per
transaction. Until it is done, search and the duplicate scan compute the features of an image
lacking them on demand; a cancelled or killed feature pass is resumed by the next import or by
``lookalike check --repair``.

With ``read_text`` the text on each image is read too (engine.text_reading, in the same worker
threads, from a decode at the reader's resolution) and stored with the image, for
engine.text_match; images already indexed without it are read in a second pass.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from .feature_store import FeaturePass, fill_missing
from .catalog import Catalog
from .errors import FeedError, ImageError, LookalikeError
from . import learned_metric
from .faults import fault_point
from .session import record_model_pack
from .imaging import (UNSUPPORTED_IMAGE_EXTENSIONS, decode_image_bytes, image_size, is_image_path,
                      max_file_bytes)

BATCH_SIZE = 32
INDEX_SAVE_SECONDS = 30.0

Progress = Callable[[int, int, str], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    products: int = 0
    remote: int = 0                      # http(s) image links kept as metadata, not fetched
    texts: int = 0                       # images whose text was read (read_text)
    failed: list[tuple[str, str]] = field(default_factory=list)   # (path, reason)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (feed, "line N: ...") feed problems
    cancelled: bool = False
    seconds: float = 0.0
    #: seconds until the images were searchable (the embedding pass, the index saved); None when
    #: that pass did not finish (cancelled)
    searchable_seconds: float | None = None
    #: the feature pass (None when it did not run: features="later", or cancelled before it)
    features: FeaturePass | None = None

    @property
    def images_per_second(self) -> float:
        """Images added or updated per second until they were searchable."""
        done = self.added + self.updated
        seconds = self.searchable_seconds if self.searchable_seconds is not None else self.seconds
        return done / seconds if seconds > 0 else 0.0

    @property
    def features_pending(self) -> bool:
        """Whether images were left without local features (the pass was stopped or not run)."""
        return self.features is None or self.features.cancelled

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.updated} updated", f"{self.unchanged} unchanged",
                 f"{len(self.failed)} failed"]
        if self.products:
            parts.append(f"{self.products} products")
        if self.remote:
            parts.append(f"{self.remote} remote image links not fetched (offline)")
        if self.texts:
            parts.append(f"text read on {self.texts}")
        text = ", ".join(parts) + f" in {self.seconds:.1f} s"
        if self.searchable_seconds is not None and self.features is not None:
            f = self.features
            text += f" (searchable after {self.searchable_seconds:.1f} s"
            if f.todo:
                text += (f"; local features of {f.stored + f.unreadable} of {f.todo} images in "
                         f"{f.seconds:.1f} s, {f.images_per_second:.0f} images/s")
            text += ")"
        if self.cancelled:
            text = "cancelled: " + text
        return text


@dataclass
class _Source:
    path: str                    # absolute path as stored in the catalog
    product_id: str | None = None


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def ingest(catalog: Catalog, model, paths: Iterable[str | os.PathLike], *,
           progress: Progress | None = None, cancel: CancelToken | None = None,
           allow_outside: bool = False, batch_size: int = BATCH_SIZE,
           workers: int | None = None, read_text: bool = False, features: str = "after",
           on_searchable: Callable[[IngestReport], None] | None = None,
           product: str | None = None) -> IngestReport:
    """Add images, folders and product feeds to ``catalog``. Thread: any but the UI thread.
    ``read_text``: also read and store the text on each image (raises TextReaderError at once
    if the text reader cannot be loaded). ``product``: the id of a catalog product that the
    images and folders (not a feed's rows) become photos of, already indexed ones included (a
    confirmed match, or reference photos shot for a product: the product is then matched by all
    of them, and its group of photos teaches the learned comparison); LookalikeError names it
    when the catalog has no such product.

    ``features="after"``: once the images are searchable (``report.searchable_seconds``;
    ``on_searchable(report)`` is called then), the feature pass computes the local features
    every image lacking them needs (``report.features``; ``progress`` restarts with its own
    total). When it returns uncancelled, every readable image has its features stored.
    ``features="later"``: the embedding pass only; the next import with "after" or ``lookalike
    check --repair`` computes them (search and the duplicate scan compute them on demand)."""
    if features not in ("after", "later"):
        raise ValueError(f"features must be 'after' or 'later', not {features!r}")
    started = time.perf_counter()
    report = IngestReport()
    if read_text:
        from .text_reading import reader_available

        reader_available()
    if product is not None and catalog.product(product) is None:
        raise LookalikeError(f"no product {product!r} in the catalog {catalog.directory}")
    with catalog.writer():
        record_model_pack(catalog, model)       # under the lock: a refused import writes nothing
        sources = _collect(catalog, list(paths), report, allow_outside, cancel, product)
        todo = [] if report.cancelled else _skip_unchanged(catalog, model, sources, report)
        total = len(sources)
        done = total - len(todo)
        if progress:
            progress(done, total, "checking files")
        _embed_all(catalog, model, todo, report, progress, cancel, batch_size, workers, done, total,
                   read_text)
        if read_text and not report.cancelled:
            _read_missing_text(catalog, {s.path for s in sources}, report, progress, cancel,
                               batch_size, workers)
        catalog.record_errors(report.failed + report.problems)
        if not catalog.vectors.maybe_fit_projection():   # a (re)fit rebuilds and saves the index
            catalog.vectors.save()
        learned_metric.maybe_refit(catalog)              # several photos per product teach it
        if not report.cancelled:
            report.searchable_seconds = time.perf_counter() - started
            if on_searchable is not None:
                on_searchable(report)
            if features == "after":
                report.features = fill_missing(catalog, progress=progress, cancel=cancel,
                                               batch=batch_size * 2, workers=workers)
                report.cancelled = report.features.cancelled
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------- collecting
def _collect(catalog: Catalog, paths: list, report: IngestReport, allow_outside: bool,
             cancel: CancelToken | None = None, product: str | None = None) -> list[_Source]:
    """The image files the paths name (folders walked, feeds read: their products are written
    here, 1000 per transaction; the others become photos of ``product``). A cancel stops it
    between files and between product batches."""
    by_path: dict[str, _Source] = {}
    for raw in paths:
        if _cancelled(cancel, report):
            break
        p = Path(raw).expanduser()
        if not _storable(str(p)):
            report.failed.append((printable_path(os.path.abspath(p)), _BAD_NAME))
            continue
        if p.is_symlink() and not p.exists():
            report.failed.append((os.path.abspath(p), _dangling_reason(p)))
            continue
        if p.is_dir():
            for f in _walk(p, report):
                by_path.setdefault(f, _Source(f, product))
                if _cancelled(cancel, report):
                    break
        elif p.is_file() and not is_image_path(p) and _looks_like_feed(p):
            _collect_feed(catalog, p, by_path, report, allow_outside, cancel)
        elif p.exists():
            f = os.path.abspath(p)
            by_path.setdefault(f, _Source(f, product))
        else:
            report.failed.append((os.path.abspath(p), "file not found"))
    return list(by_path.values())


def _looks_like_feed(path: Path) -> bool:
    """A .csv/.tsv file is read as a feed unless its content is an image's (content decides:
    a photo named .csv is indexed), so a binary, empty or foreign file named .csv gets the feed
    reader's reason ("not a text feed (binary data ...)"), never "not an image". A .txt file is a
    feed only when its header is a feed's."""
    from .feeds import is_feed
    from .imaging import looks_like_image

    if path.suffix.lower() in (".csv", ".tsv"):
        return not looks_like_image(path)
    try:
        return is_feed(path)
    except (OSError, FeedError):
        return False


def _walk(root: Path, report: IngestReport) -> Iterator[str]:
    """Image files under ``root``, following symlinks but never into a loop."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=lambda e: report.failed.append(
            (str(e.filename), f"folder unreadable ({e.strerror})"))):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            report.failed.append((os.path.abspath(dirpath), "symbolic link loop; skipped"))
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            ext = os.path.splitext(name)[1].lower()
            if not is_image_path(name) and ext not in UNSUPPORTED_IMAGE_EXTENSIONS:
                continue
            full = os.path.abspath(os.path.join(dirpath, name))
            if not _storable(full):
                report.failed.append((printable_path(full), _BAD_NAME))
                continue
            if os.path.islink(full) and not os.path.exists(full):
                report.failed.append((full, _dangling_reason(full)))
                continue
            # HEIC, SVG, ... are yielded too: reported as unsupported, never skipped silently
            yield full
        # directories named like images are folders: os.walk already descends into them


_BAD_NAME = "file name is not valid UTF-8; rename the file to index it"


def _storable(path: str) -> bool:
    """False for names with bytes that are not UTF-8 (they cannot be stored or shown as text)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_path(path: str) -> str:
    """A path fit for one line of text: undecodable bytes as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _dangling_reason(path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
    return "broken symbolic link"


def _cancelled(cancel: CancelToken | None, report: IngestReport) -> bool:
    if cancel is not None and cancel.is_set():
        report.cancelled = True
    return report.cancelled


def _collect_feed(catalog: Catalog, feed: Path, by_path: dict[str, _Source], report: IngestReport,
                  allow_outside: bool, cancel: CancelToken | None = None) -> None:
    from .feeds import read_feed

    feed_abs = os.path.abspath(feed)
    products = []
    reader = None
    try:
        reader = read_feed(feed, allow_outside=allow_outside)
        for item in reader:
            p = item.product
            products.append({
                "id": p.id, "title": p.title, "brand": p.brand, "price": p.price, "currency": p.currency,
                "category": p.category, "url": p.url, "description": p.description, "sku": p.sku,
                "gtin": p.gtin, "group_id": p.group_id, "extra": p.extra,
                "remote_images": item.remote_images, "source": feed_abs,
            })
            if item.repeated:
                # a later row of an id already seen: merge it (fill gaps, add images), never let
                # its empty fields blank the earlier row's values
                repeated = products.pop()
                report.products += catalog.upsert_products(products)
                catalog.upsert_products([repeated], merge=True)
                products = []
            report.remote += len(item.remote_images)
            report.problems.extend((feed_abs, msg) for msg in item.problems)
            for img in item.images:
                f = str(img)
                by_path[f] = _Source(f, p.id)
            if len(products) >= 1000:
                report.products += catalog.upsert_products(products)
                products = []
                if _cancelled(cancel, report):
                    break
    except FeedError as exc:
        report.failed.append((feed_abs, str(exc).removeprefix(f"{feed_abs}: ").removeprefix(f"{feed}: ")))
    report.products += catalog.upsert_products(products)
    if reader is not None:
        reader.close()
        report.problems.extend((feed_abs, msg) for msg in reader.skipped)


# ---------------------------------------------------------------------- incremental
def _skip_unchanged(catalog: Catalog, model, sources: list[_Source], report: IngestReport) -> list[_Source]:
    known = catalog.known_files()
    todo, relink = [], []
    for s in sources:
        k = known.get(s.path)
        if k is not None and k[3] == model.model_id:
            try:
                st = os.stat(s.path)
            except OSError:
                todo.append(s)          # vanished: reported by the embed step
                continue
            if st.st_size == k[0] and k[1] is not None and abs(st.st_mtime - k[1]) < 1e-6:
                report.unchanged += 1
                if s.product_id:
                    relink.append((s.path, s.product_id))
                continue
        todo.append(s)
    catalog.link_images(relink)
    return todo


# ---------------------------------------------------------------------- embedding
@dataclass
class _Prepared:
    source: _Source
    status: str                  # "new", "changed", "same-content", "failed"
    digest: str = ""
    size: int = 0
    mtime: float = 0.0
    width: int = 0
    height: int = 0
    tensor: np.ndarray | None = None     # the model's preprocessed input
    reason: str = ""
    text: tuple | None = None            # (reader, words, lines) read on it (read_text)
    text_problem: str = ""               # why its text could not be read


def _text_of(rgb: np.ndarray, data: bytes, path: str, full_short_side: int) -> tuple:
    """(reader, words, lines) of the text on an image: read on ``rgb`` (the model's decode) when
    it has the resolution the reader wants, else on a decode of ``data`` at that resolution."""
    from .text_reading import READER_ID, READ_SHORT_SIDE, read_text

    if min(rgb.shape[:2]) < min(READ_SHORT_SIDE, full_short_side):     # a reduced-size decode
        rgb = decode_image_bytes(data, source=path, min_short_side=READ_SHORT_SIDE)
    found = read_text(rgb)
    return READER_ID, list(found.words), [(x.text, x.confidence, x.box) for x in found.lines]


def _prepare(source: _Source, known: dict, model, read_text: bool = False) -> _Prepared:
    path = source.path
    try:
        if os.path.isdir(path):
            raise ImageError(path, "is a folder, not an image")
        # the header first: a non-image, an empty or truncated file or an unsupported format is
        # refused from its first bytes, before the file is read whole
        w, h = image_size(path)
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size > max_file_bytes():
                raise ImageError(path, f"file is too large ({st.st_size / 2**20:.0f} MiB) for an "
                                       "image within the pixel limit")
            data = fh.read()
        digest = content_hash(data)
        k = known.get(path)
        if k is not None and k[2] == digest and k[3] == model.model_id:
            return _Prepared(source, "same-content", digest, st.st_size, st.st_mtime)
        rgb = decode_image_bytes(data, source=path, min_short_side=model.resize_short_side)
        text, text_problem = None, ""
        if read_text:
            try:
                text = _text_of(rgb, data, path, min(w, h))
            except MemoryError:
                raise
            except Exception as exc:   # the image is still indexed, without its text
                text_problem = f"text not read ({type(exc).__name__}: {exc})"
        return _Prepared(source, "changed" if k is not None else "new", digest, st.st_size,
                         st.st_mtime, w, h, model.preprocess(rgb), text=text, text_problem=text_problem)
    except ImageError as exc:
        return _Prepared(source, "failed", reason=exc.reason)
    except FileNotFoundError:
        return _Prepared(source, "failed", reason="file not found")
    except PermissionError:
        return _Prepared(source, "failed", reason="permission denied")
    except OSError as exc:
        return _Prepared(source, "failed", reason=f"cannot read ({exc.strerror or exc})")
    except MemoryError:
        return _Prepared(source, "failed", reason="not enough memory to decode")
    except Exception as exc:   # one odd file must never stop the run
        return _Prepared(source, "failed", reason=f"unexpected error ({type(exc).__name__}: {exc})")


def _embed_all(catalog: Catalog, model, todo: Sequence[_Source], report: IngestReport,
               progress: Progress | None, cancel: CancelToken | None, batch_size: int,
               workers: int | None, done: int, total: int, read_text: bool = False) -> None:
    if not todo:
        return
    known = catalog.known_files()
    workers = workers or default_workers()
    last_save = time.monotonic()
    pending: list[_Prepared] = []
    touched: list[tuple[str, int, float]] = []
    relink: list[tuple[str, str]] = []

    def flush() -> None:
        nonlocal pending
        if not pending:
            return
        probs, embs = model.run_tensor(np.stack([p.tensor for p in pending]))
        rows = []
        for p, prob, emb in zip(pending, probs, embs):
            rows.append({
                "path": p.source.path, "content_hash": p.digest, "file_size": p.size, "mtime": p.mtime,
                "width": p.width, "height": p.height, "product_id": p.source.product_id,
                "model_id": model.model_id, "embedding": emb,
                "labels": [[n, round(float(s), 4)] for n, s in model.top_labels(prob, k=3)],
                "text": p.text,
            })
            if p.text is not None:
                report.texts += 1
            elif p.text_problem:
                report.problems.append((p.source.path, p.text_problem))
            if p.status == "new":
                report.added += 1
            else:
                report.updated += 1
        catalog.put_images(rows)
        pending = []
        fault_point("ingest-batch-committed")

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookalike-decode") as pool:
        # bounded read-ahead: at most a few batches of decoded images in memory at once
        for prepared in _in_order(pool, lambda src: _prepare(src, known, model, read_text), todo,
                                  batch_size * 2, cancel, report):
            done += 1
            if prepared.status == "failed":
                report.failed.append((prepared.source.path, prepared.reason))
            elif prepared.status == "same-content":
                report.unchanged += 1
                touched.append((prepared.source.path, prepared.size, prepared.mtime))
                if prepared.source.product_id:
                    relink.append((prepared.source.path, prepared.source.product_id))
            else:
                pending.append(prepared)
                if len(pending) >= batch_size:
                    flush()
                    if time.monotonic() - last_save > INDEX_SAVE_SECONDS:
                        catalog.vectors.save()
                        last_save = time.monotonic()
            if progress:
                progress(done, total, prepared.source.path)
        flush()   # on cancel too: what was already decoded is kept
    catalog.touch_images(touched)
    catalog.link_images(relink)


def _read_missing_text(catalog: Catalog, paths: set[str], report: IngestReport, progress: Progress | None,
                       cancel: CancelToken | None, batch_size: int, workers: int | None) -> None:
    """Read the text of the images among ``paths`` that have none from the current reader
    (indexed before, or without read_text) and store it, a batch per transaction."""
    from .imaging import load_image
    from .text_reading import READER_ID, READ_SHORT_SIDE, read_text

    todo = [(i, p) for i, p in catalog.image_texts.images_without(READER_ID) if p in paths]
    if not todo:
        return

    def read(item: tuple[int, str]) -> tuple[int, str, object]:
        image_id, path = item
        try:
            found = read_text(load_image(path, min_short_side=READ_SHORT_SIDE))
        except MemoryError:
            raise
        except Exception as exc:   # an unreadable file or text: noted, the run goes on
            reason = exc.reason if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"
            return image_id, path, f"text not read ({reason})"
        return image_id, path, (READER_ID, list(found.words),
                                [(x.text, x.confidence, x.box) for x in found.lines])

    rows: list[tuple] = []
    with ThreadPoolExecutor(max_workers=workers or default_workers(),
                            thread_name_prefix="lookalike-read") as pool:
        done = 0
        for image_id, path, result in _in_order(pool, read, todo, batch_size * 2, cancel, report):
            if isinstance(result, str):
                report.problems.append((path, result))
            else:
                rows.append((image_id, *result))
                report.texts += 1
            if len(rows) >= batch_size:
                catalog.image_texts.put(rows)
                rows = []
            done += 1
            if progress:
                progress(done, len(todo), path)
    catalog.image_texts.put(rows)


def _in_order(pool, fn, items, window: int, cancel, report: IngestReport) -> Iterator:
    """``fn(item)`` of each item, computed on ``pool`` with at most ``window`` running or done
    ahead (bounded read-ahead: a few batches of decoded images in memory at once), yielded in
    the items' order. A cancel stops it, drops what had not started and marks the report."""
    it = iter(items)
    futures = [pool.submit(fn, item) for item in _take(it, window)]
    while futures:
        if cancel is not None and cancel.is_set():
            report.cancelled = True
            for f in futures:
                f.cancel()
            return
        result = futures.pop(0).result()
        nxt = next(it, None)
        if nxt is not None:
            futures.append(pool.submit(fn, nxt))
        yield result


def default_workers() -> int:
    """Decode threads: one per core this process may use (at least 2, at most 8). Decoding
    (libjpeg-turbo, reduced-size) and inference (onnxruntime) both release the GIL, so the
    threads and the inference share the cores without a process pool's copying."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 2
    return max(2, min(8, cores))


def _take(it: Iterator, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out
