"""The catalog's stored local features: read them, compute what is missing, backfill.

Features are written in two places only: at import (engine.ingest stores each new image's
:func:`engine.features.catalog_features`) and by an explicit :func:`backfill` (``lookalike check
--repair``, or a duplicate scan before it starts). Reading them (search, the duplicate scan's
verification) never writes: an image without stored features (a catalog built before local
features existed, or with an older FEATURES_VERSION) has them computed in memory for that call.
"""

from __future__ import annotations

from .errors import LookalikeError
from .features import (FEATURES_VERSION, Features, _thumbnail_only, catalog_features, pack,
                       pack_mirrored, unpack)

#: short side a catalog image is decoded at for its features (JPEGs at a reduced scale)
DECODE_SHORT_SIDE = 256


def features_for(catalog, image_ids, *, paths: dict[int, str] | None = None,
                 compute_missing: bool = True) -> dict[int, Features]:
    """Stored features of catalog images (with their mirrored descriptors where stored). Images
    without stored features are decoded and their features computed, not stored
    (``compute_missing``; ``paths`` saves the lookup of their files); images that cannot be read
    are left out."""
    blobs = catalog.local_feature_blobs(image_ids, FEATURES_VERSION)
    out = {}
    for i, b in blobs.items():
        try:
            out[i] = unpack(*b)
        except ValueError:          # damaged row: computed below
            pass
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


def _compute(catalog, items: list[tuple[int, str]]) -> dict[int, Features]:
    """Features of (image id, path) items decoded from their files; unreadable ones left out."""
    out: dict[int, Features] = {}
    for image_id, path in items:
        rgb = decode(path)
        if rgb is not None:
            out[image_id] = catalog_features(rgb)
    return out


def stored_row(image_id: int, f: Features) -> tuple:
    """The ``local_features`` row of an image's features (Catalog.put_local_feature_blobs)."""
    return (image_id, FEATURES_VERSION, *pack(f), pack_mirrored(f))


def missing_count(catalog) -> int:
    """How many catalog images lack stored features or their mirrored descriptors."""
    return len(catalog.images_without_local_features(FEATURES_VERSION, mirrored=True))


def backfill(catalog, *, progress=None, cancel=None, batch: int = 64) -> int:
    """Compute and store the local features of every catalog image lacking them, or lacking their
    mirrored descriptors (catalogs built before either existed). Decodes each such image once.
    Returns how many images got features. ``progress(done, total, path)``; ``cancel.is_set()``
    stops early (what was stored stays)."""
    todo = catalog.images_without_local_features(FEATURES_VERSION, mirrored=True)
    done = stored = 0
    for start in range(0, len(todo), batch):
        if cancel is not None and cancel.is_set():
            break
        chunk = todo[start:start + batch]
        computed = _compute(catalog, chunk)
        if computed:
            catalog.put_local_feature_blobs([stored_row(i, f) for i, f in computed.items()])
        stored += len(computed)
        done += len(chunk)
        if progress:
            progress(done, len(todo), chunk[-1][1])
    return stored
