"""The catalog's stored local features: read them, compute what is missing, backfill.

Features are written by :func:`fill_missing` only: the second pass of an import (engine.ingest
makes the new images searchable first, then computes their features here), ``lookalike check
--repair`` (:func:`backfill`) and the evaluation's gallery. Reading them (search, the duplicate
scan) never writes: an image without stored features (its import's feature pass has not reached
it yet or was stopped, a catalog built before local features existed, an older FEATURES_VERSION)
has them computed in memory for that call.

The pass decodes each image at the reduced JPEG scale whose short side is at least
DECODE_SHORT_SIDE, the scale the embedding pass decodes at for the bundled model packs
(``resize_short_side`` 256), so its features are those an import that computed them from the
embedding's decode would store.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .errors import LookalikeError
from .faults import fault_point
from .features import (FEATURES_VERSION, Features, _thumbnail_only, catalog_features, pack, pack_dense,
                       pack_mirrored, unpack, unpack_dense)

#: short side a catalog image is decoded at for its features (JPEGs at a reduced scale)
DECODE_SHORT_SIDE = 256


def features_for(catalog, image_ids, *, paths: dict[int, str] | None = None,
                 compute_missing: bool = True, dense: bool = False) -> dict[int, Features]:
    """Stored features of catalog images (with their mirrored descriptors where stored; ``dense``:
    with their dense keypoints where stored, engine.features.dense_of). Images without stored
    features are decoded and their features computed, not stored (``compute_missing``; ``paths``
    saves the lookup of their files); images that cannot be read are left out."""
    blobs = catalog.local_feature_blobs(image_ids, FEATURES_VERSION)
    out = {}
    for i, b in blobs.items():
        try:
            out[i] = unpack(*b)
        except ValueError:          # damaged row: computed below
            pass
    if dense and out:
        for i, blob in catalog.dense_feature_blobs(list(out), FEATURES_VERSION).items():
            unpack_dense(out[i], blob)
    missing = [int(i) for i in image_ids if int(i) not in out]
    if missing and compute_missing:
        if paths is None or any(i not in paths for i in missing):
            paths = {r["image_id"]: r["path"] for r in catalog.image_records(missing)}
        out.update(_compute(catalog, [(i, paths[i]) for i in missing if i in paths]))
    return out


def thumbnails_for(catalog, image_ids, *, paths: dict[int, str] | None = None) -> dict[int, Features]:
    """The stored thumbnails of catalog images, as Features without keypoints (what colour
    agreement needs: a search scores the colours of all its candidates but verifies only the
    best few). Reads the keypoints blob only (header, thumbnail, positions: ~8 KB, against ~28 KB
    with both descriptor blobs). Images without stored features get them as :func:`features_for`
    does."""
    blobs = catalog.local_feature_blobs(image_ids, FEATURES_VERSION, descriptors=False)
    out = {}
    for i, (keypoints, _, _) in blobs.items():
        try:
            out[i] = _thumbnail_only(keypoints)
        except ValueError:          # damaged row: computed below
            pass
    missing = [int(i) for i in image_ids if int(i) not in out]
    if missing:
        out.update(features_for(catalog, missing, paths=paths))
    return out


def decode(path: str, min_short_side: int = DECODE_SHORT_SIDE):
    """A catalog image's pixels (for its features by default); None when the file cannot be used
    now (gone, unreadable, damaged: the image keeps what is stored)."""
    from .imaging import load_image

    try:
        return load_image(path, min_short_side=min_short_side)
    except (LookalikeError, OSError, MemoryError):
        return None


#: features computed for images lacking stored ones, kept for the next search or scan chunk that
#: needs them (while an import's feature pass runs, successive searches share candidates):
#: about 28 KB each
COMPUTED_CACHE_SIZE = 1024
_computed: OrderedDict[tuple, Features] = OrderedDict()
_computed_lock = threading.Lock()


def _compute(catalog, items: list[tuple[int, str]]) -> dict[int, Features]:
    """Features of (image id, path) items decoded from their files; unreadable ones left out.
    Recently computed ones come from a small cache keyed by the catalog, the image and its
    file's size and modification time (a changed file is decoded again)."""
    out: dict[int, Features] = {}
    for image_id, path in items:
        try:
            st = os.stat(path)
            key = (str(catalog.directory), image_id, path, st.st_size, st.st_mtime_ns)
        except OSError:
            continue                # gone or unreadable: nothing to compute
        with _computed_lock:
            f = _computed.get(key)
            if f is not None:
                _computed.move_to_end(key)
        if f is None:
            rgb = decode(path)
            if rgb is None:
                continue
            f = catalog_features(rgb)
            with _computed_lock:
                _computed[key] = f
                while len(_computed) > COMPUTED_CACHE_SIZE:
                    _computed.popitem(last=False)
        out[image_id] = f
    return out


def stored_row(image_id: int, f: Features) -> tuple:
    """The ``local_features`` row of an image's features (Catalog.put_local_feature_blobs)."""
    return (image_id, FEATURES_VERSION, *pack(f), pack_mirrored(f), pack_dense(f))


def missing_count(catalog) -> int:
    """How many catalog images lack stored features, their mirrored descriptors or dense keypoints."""
    return len(catalog.images_without_local_features(FEATURES_VERSION, complete=True))


@dataclass
class FeaturePass:
    """What one :func:`fill_missing` run did."""
    todo: int = 0                # images lacking features when it started
    stored: int = 0
    unreadable: int = 0          # files that could not be decoded (they keep lacking features)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def remaining(self) -> int:
        """Images of ``todo`` left without features (a cancel, unreadable files)."""
        return self.todo - self.stored

    @property
    def images_per_second(self) -> float:
        done = self.stored + self.unreadable
        return done / self.seconds if self.seconds > 0 else 0.0


def fill_missing(catalog, *, progress=None, cancel=None, batch: int = 64,
                 workers: int | None = None) -> FeaturePass:
    """Compute and store the local features of every catalog image lacking them or their mirrored
    descriptors: decoded and extracted on ``workers`` threads (OpenCV releases the GIL), one
    transaction per ``batch`` images. Resumable: ``cancel.is_set()`` is checked between batches,
    and what was committed stays, so the next run computes only the rest. Needs the write lock
    (the caller's :meth:`Catalog.writer`, or each batch's transaction takes it).
    ``progress(done, total, path)``."""
    from .ingest import default_workers

    started = time.perf_counter()
    todo = catalog.images_without_local_features(FEATURES_VERSION, complete=True)
    result = FeaturePass(todo=len(todo))
    if not todo:
        return result
    done = 0
    if progress:
        progress(0, len(todo), "")
    with ThreadPoolExecutor(max_workers=workers or default_workers(),
                            thread_name_prefix="lookalike-features") as pool:
        for start in range(0, len(todo), batch):
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                break
            chunk = todo[start:start + batch]
            rows = [stored_row(i, f) for (i, _), f in zip(chunk, pool.map(_features_of, chunk))
                    if f is not None]
            catalog.put_local_feature_blobs(rows)
            fault_point("features-batch-committed")
            result.stored += len(rows)
            result.unreadable += len(chunk) - len(rows)
            done += len(chunk)
            if progress:
                progress(done, len(todo), chunk[-1][1])
    result.seconds = time.perf_counter() - started
    return result


def _features_of(item: tuple[int, str]) -> Features | None:
    rgb = decode(item[1])
    return None if rgb is None else catalog_features(rgb, dense=True)


def backfill(catalog, *, progress=None, cancel=None, batch: int = 64) -> int:
    """:func:`fill_missing` (catalogs built before local features or mirrored descriptors
    existed, an import whose feature pass was stopped). Returns how many images got features."""
    return fill_missing(catalog, progress=progress, cancel=cancel, batch=batch).stored
