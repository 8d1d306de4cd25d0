"""A comparison of embeddings learned from the catalog itself: several photos of one product.

A catalog that holds several photos of a product (a feed's additional images, a Shopify export
with several images per product, photos the user confirmed as duplicates) says which differences
between two embeddings do not matter: the spread of one product's photos (viewpoint, light,
background, a hand holding it). Within-class whitening removes that spread: with ``S_w`` the
covariance of each photo around its product's mean (shrunk towards the identity, ``shrinkage``
times the mean eigenvalue, so that a catalog with few groups gets a gentle transform), embeddings
are compared after ``x -> normalise((x - mean) S_w^-1/2)``. Products never seen in the fit still
gain (the directions of photographic variation are shared across products), which is what lets
the same transform serve the catalog's later imports.

Only numpy at run time: the fit is an eigendecomposition of a D x D covariance (~1 s for D=1280
on two cores); the transform is stored in the catalog (``learned_metric`` table) and refitted at
the end of an import when the grouped photos have changed by REFIT_GROWTH or more.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

#: the fit needs at least this many products with two or more photos ...
MIN_GROUPS = 5
#: ... holding at least this many photos in all
MIN_GROUPED_IMAGES = 20
#: shrinkage of the within-product covariance towards the identity, times its mean eigenvalue
SHRINKAGE = 1.0
#: photos sampled for a fit at most (the covariance of more changes little)
MAX_FIT_IMAGES = 20_000
#: refit when the number of grouped photos has changed by this share since the last fit
REFIT_GROWTH = 0.10


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


@dataclass
class LearnedMetric:
    mean: np.ndarray          # [D] float32: the mean of the grouped photos
    transform: np.ndarray     # [D, D] float32: the shrunk within-product whitening
    groups: int               # products (or confirmed groups) it was fitted on
    images: int               # photos in those groups (a sample of at most MAX_FIT_IMAGES)
    fitted_on: int = 0        # the catalog's grouped photos when it was fitted (refit policy)

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] (or [D]) in the learned space, L2-normalised."""
        x = np.asarray(embeddings, np.float32)
        return _normalise((x - self.mean) @ self.transform)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, mean=self.mean, transform=self.transform,
                 counts=np.array([self.groups, self.images, self.fitted_on], np.int64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LearnedMetric":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            groups, images, fitted_on = (int(v) for v in z["counts"])
            return cls(z["mean"].astype(np.float32), z["transform"].astype(np.float32), groups, images,
                       fitted_on)


def fit(embeddings: np.ndarray, labels: np.ndarray, *, shrinkage: float = SHRINKAGE) -> LearnedMetric:
    """The within-product whitening of ``embeddings`` [N, D] whose ``labels`` [N] name their
    product (only labels with two or more photos are used)."""
    x = np.asarray(embeddings, np.float64)
    labels = np.asarray(labels)
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= 2
    x, inverse = x[keep], inverse[keep]
    if len(x) < 2:
        raise ValueError("a learned metric needs products with two or more photos")
    mean = x.mean(axis=0)
    centred = x - mean
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, inverse, centred)
    class_means = sums / np.maximum(np.bincount(inverse, minlength=len(names)), 1)[:, None]
    residual = centred - class_means[inverse]
    within = residual.T @ residual / len(residual)
    values, vectors = np.linalg.eigh(within)
    ridge = shrinkage * max(float(values.mean()), 1e-12)
    transform = (vectors * (1.0 / np.sqrt(np.maximum(values, 0.0) + ridge))) @ vectors.T
    groups = int((np.bincount(inverse) >= 2).sum())
    return LearnedMetric(mean.astype(np.float32), transform.astype(np.float32), groups, int(len(x)))


def training_groups(catalog) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, group labels) the catalog teaches: the images of one product form a group, and
    a pair the user confirmed as duplicates joins its two images' groups. Images in no group of
    two or more are left out."""
    from .decision_store import CONFIRMED

    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    first_of: dict[str, int] = {}
    for image_id, product in catalog.image_products():
        if product in first_of:
            join(first_of[product], image_id)
        else:
            first_of[product] = image_id
            find(image_id)
    for a, b in catalog.decision_store.decided_pairs(CONFIRMED).tolist():
        join(int(a), int(b))
    ids = np.array(sorted(parent), np.int64)
    labels = np.array([find(int(i)) for i in ids], np.int64)
    return _groups_of_two(ids, labels)


def _groups_of_two(ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, labels) whose label two or more ids share."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= 2
    return ids[keep], labels[keep]


def fit_for(catalog, *, seed: int = 0, exclude=()) -> LearnedMetric | None:
    """The metric the catalog's groups teach, or None when it has too few of them (MIN_GROUPS
    products of two or more photos, MIN_GROUPED_IMAGES photos). ``exclude``: image ids left out
    of the fit (held-out queries: engine.evaluation)."""
    ids, labels = training_groups(catalog)
    if len(exclude):
        keep = ~np.isin(ids, np.fromiter(exclude, np.int64))
        ids, labels = _groups_of_two(ids[keep], labels[keep])
    if len(ids) < MIN_GROUPED_IMAGES or len(np.unique(labels)) < MIN_GROUPS:
        return None
    grouped = len(ids)
    if len(ids) > MAX_FIT_IMAGES:
        pick = np.sort(np.random.default_rng(seed).choice(len(ids), MAX_FIT_IMAGES, replace=False))
        ids, labels = ids[pick], labels[pick]
    metric = fit(catalog.embeddings(ids.tolist()), labels)
    metric.fitted_on = grouped
    return metric


_cache: dict[str, tuple[int, LearnedMetric | None]] = {}
_cache_lock = threading.Lock()


def stored(catalog) -> LearnedMetric | None:
    """The catalog's stored metric (None: never fitted, or the catalog has too few groups), read
    again only when the catalog has changed."""
    key, version = str(catalog.db_path), catalog.version
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    data = catalog.stored_learned_metric()
    metric = None
    if data is not None:
        try:
            metric = LearnedMetric.from_bytes(data)
        except (ValueError, KeyError, OSError) as exc:       # damaged: as if never fitted
            log.warning("%s: learned metric unreadable (%s); refitted at the next import", catalog.directory, exc)
    with _cache_lock:
        _cache[key] = (version, metric)
    return metric


def refit_due(catalog, current: LearnedMetric | None) -> bool:
    """Whether the grouped photos changed by REFIT_GROWTH or more since ``current`` was fitted."""
    grouped = catalog.count_grouped_images()
    if current is None:
        return grouped >= MIN_GROUPED_IMAGES
    return abs(grouped - current.fitted_on) >= REFIT_GROWTH * max(current.fitted_on, 1)


def maybe_refit(catalog) -> LearnedMetric | None:
    """Refit and store the metric when due (the writer calls this at the end of an import);
    returns the metric in force."""
    current = stored(catalog)
    if catalog.readonly or not refit_due(catalog, current):
        return current
    metric = fit_for(catalog)
    catalog.store_learned_metric(None if metric is None else metric.to_bytes())
    return metric
