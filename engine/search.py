"""One query image in: its predicted class and the ranked matching catalog images out."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import scoring, verification
from .catalog import Catalog
from .errors import ImageError, LookalikeError
from .imaging import load_image

DEFAULT_K = 10
MIN_CANDIDATES = 50
#: candidates (best by embedding cosine) whose local features are geometrically verified
VERIFY_TOP = 20
#: a verified candidate with this many inliers is a certain copy: the mirrored query is not tried
STRONG_INLIERS = 25


@dataclass
class SearchFilters:
    category: str | None = None      # exact, or a prefix path ("Men > Tops" matches "Men > Tops > Jackets")
    brand: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    min_score: float = 0.0

    def active(self) -> bool:
        return any(v is not None for v in (self.category, self.brand, self.price_min, self.price_max))

    def accepts(self, record: dict) -> bool:
        if self.category:
            cat = record.get("category") or ""
            if not (cat == self.category or cat.startswith(self.category + " >")):
                return False
        if self.brand and (record.get("brand") or "") != self.brand:
            return False
        price = record.get("price")
        if self.price_min is not None and (price is None or price < self.price_min):
            return False
        if self.price_max is not None and (price is None or price > self.price_max):
            return False
        return True


@dataclass
class Label:
    name: str
    score: float


@dataclass
class Match:
    rank: int
    image_id: int
    path: str
    score: float
    product: dict = field(default_factory=dict)
    strength: str = ""
    evidence: scoring.Evidence | None = None    # what the score was computed from

    def to_json(self) -> dict:
        p = self.product
        price = p.get("price")
        if price is not None and p.get("currency"):
            price = f"{price:.2f} {p['currency']}"
        return {
            "rank": self.rank, "path": self.path, "score": round(float(self.score), 4),
            "strength": self.strength, "image_id": self.image_id,
            "product_id": p.get("product_id"), "title": p.get("title"), "brand": p.get("brand"),
            "price": price, "category": p.get("category"), "url": p.get("url"),
            "evidence": self.evidence.to_json() if self.evidence is not None else None,
        }


@dataclass
class QueryResult:
    query: str
    labels: list[Label] = field(default_factory=list)
    results: list[Match] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)   # stage -> milliseconds

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "labels": [{"name": l.name, "score": round(float(l.score), 4)} for l in self.labels],
            "results": [m.to_json() for m in self.results],
            "error": self.error,
        }


class Searcher:
    """Searches one catalog with one model. Thread-safe: the model session and the index are
    shared, SQLite connections are per thread."""

    def __init__(self, catalog: Catalog, model):
        self.catalog = catalog
        self.model = model

    # ------------------------------------------------------------------ entry points
    def search_path(self, path: str | os.PathLike, *, k: int = DEFAULT_K,
                    filters: SearchFilters | None = None,
                    roi: tuple[int, int, int, int] | None = None) -> QueryResult:
        name = os.path.abspath(os.path.expanduser(path))
        t0 = time.perf_counter()
        try:
            # a region is cut from the full-resolution image; a whole image may decode reduced
            rgb = load_image(path, min_short_side=None if roi else self.model.resize_short_side)
        except ImageError as exc:
            return QueryResult(query=name, error=exc.reason)
        decode_ms = (time.perf_counter() - t0) * 1000
        result = self.search_image(rgb, k=k, filters=filters, roi=roi, name=name)
        result.timings = {"decode": decode_ms, **result.timings}
        return result

    def search_image(self, rgb: np.ndarray, *, k: int = DEFAULT_K,
                     filters: SearchFilters | None = None,
                     roi: tuple[int, int, int, int] | None = None,
                     name: str = "<image>") -> QueryResult:
        """Search with an RGB uint8 image; ``roi`` = (x, y, w, h) in the image's pixels."""
        timings: dict[str, float] = {}
        try:
            if roi is not None:
                rgb = crop_roi(rgb, roi)
            t = time.perf_counter()
            probs, emb = self.model.run([rgb])
            timings["model"] = (time.perf_counter() - t) * 1000
            labels = [Label(n, s) for n, s in self.model.top_labels(probs[0], k=3)]
            t = time.perf_counter()
            matches = self._matches(emb[0], k, filters or SearchFilters(), timings, rgb)
            timings["total"] = sum(timings.values())
            return QueryResult(query=name, labels=labels, results=matches, timings=timings)
        except LookalikeError as exc:
            return QueryResult(query=name, error=str(exc), timings=timings)

    # ------------------------------------------------------------------ internals
    def _matches(self, emb: np.ndarray, k: int, filters: SearchFilters,
                 timings: dict[str, float], rgb: np.ndarray | None = None) -> list[Match]:
        """kNN candidates -> filters -> geometric verification of the best ones -> calibrated
        score -> ranked matches. ``rgb`` (the query image) enables verification."""
        t = time.perf_counter()
        index = self.catalog.index()
        timings["index_sync"] = (time.perf_counter() - t) * 1000
        if index is None or len(index) == 0:
            return []
        n = len(index)
        want = max(k * 4, MIN_CANDIDATES)
        knn_ms = join_ms = 0.0
        # the best score a candidate that is not verified can reach (perfect colour agreement)
        best_unverified = lambda cos: float(scoring.calibrated(cos, 0, 1.0))  # noqa: E731
        while True:
            t = time.perf_counter()
            ids, sims = index.query(emb, min(want, n))
            knn_ms += (time.perf_counter() - t) * 1000
            ids, sims = ids[0], sims[0]
            t = time.perf_counter()
            records = {r["image_id"]: r for r in self.catalog.image_records(ids.tolist())}
            join_ms += (time.perf_counter() - t) * 1000
            kept = [(image_id, sim, records[image_id]) for image_id, sim in zip(ids.tolist(), sims.tolist())
                    if image_id in records and filters.accepts(records[image_id])]
            # enough survivors, or the candidates already cover the whole index: done
            if (len(kept) >= max(k, VERIFY_TOP) or len(ids) >= n
                    or (sims.size and best_unverified(sims[-1]) < filters.min_score
                        and len(kept) >= min(k, VERIFY_TOP))):
                break
            want *= 4
        timings["knn"] = knn_ms
        timings["join"] = join_ms
        evidence = self._evidence(rgb, kept, timings)
        t = time.perf_counter()
        scored = []
        for (image_id, _, rec), ev in zip(kept, evidence):
            score = scoring.score(ev)
            if score >= filters.min_score:
                scored.append((score, image_id, rec, ev))
        scored.sort(key=lambda x: -x[0])
        timings["score"] = (time.perf_counter() - t) * 1000
        return [Match(rank=i + 1, image_id=image_id, path=rec["path"], score=score, product=rec,
                      strength=scoring.strength(score), evidence=ev)
                for i, (score, image_id, rec, ev) in enumerate(scored[:k])]

    def _evidence(self, rgb: np.ndarray | None, kept: list, timings: dict[str, float]) -> list[scoring.Evidence]:
        """Colour agreement for every candidate, and RANSAC-verified ORB inliers for the
        VERIFY_TOP best by cosine (with the mirrored query too when the plain one finds no
        strong copy)."""
        evidence = [scoring.Evidence(cosine=float(sim)) for _, sim, _ in kept]
        if rgb is None or not kept:
            return evidence
        t = time.perf_counter()
        query = verification.extract(rgb)
        timings["features"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        stored = verification.features_for(self.catalog, [image_id for image_id, _, _ in kept],
                                           paths={image_id: rec["path"] for image_id, _, rec in kept})
        timings["load_features"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        order = sorted(range(len(kept)), key=lambda i: -kept[i][1])[:VERIFY_TOP]
        for i, (image_id, _, _) in enumerate(kept):
            f = stored.get(image_id)
            if f is not None:
                evidence[i].colour = verification.colour_similarity(query.colour, f.colour)
        best = 0
        for i in order:
            f = stored.get(kept[i][0])
            if f is None:
                continue
            evidence[i].inliers = verification.inliers(query, f)
            evidence[i].verified = True
            best = max(best, evidence[i].inliers)
        timings["verify"] = (time.perf_counter() - t) * 1000
        if best < STRONG_INLIERS:
            t = time.perf_counter()
            flipped = verification.extract(verification.mirrored(rgb))
            for i in order:
                f = stored.get(kept[i][0])
                if f is not None:
                    evidence[i].inliers = max(evidence[i].inliers, verification.inliers(flipped, f))
            timings["verify_mirror"] = (time.perf_counter() - t) * 1000
        return evidence


def crop_roi(rgb: np.ndarray, roi: Sequence[float]) -> np.ndarray:
    """Crop (x, y, w, h), clamped to the image."""
    h, w = rgb.shape[:2]
    x, y, rw, rh = (float(v) for v in roi)
    x0, y0 = int(max(0, min(w - 1, round(x)))), int(max(0, min(h - 1, round(y))))
    x1, y1 = int(max(x0 + 1, min(w, round(x + rw)))), int(max(y0 + 1, min(h, round(y + rh))))
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise LookalikeError(f"region {tuple(int(v) for v in roi)} is too small to search (at least 8x8 pixels)")
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])
