"""One query image in: its predicted class and the ranked matching catalog images out."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import centre_view, learned_metric, match_policy, result_groups, scoring
from .features import backdrop, content_box, extract
from .text_match import text_index
from .text_reading import read_text
from .catalog import Catalog
from .errors import ImageError, LookalikeError
from .imaging import load_image
from .ingest import content_hash

DEFAULT_K = 10
#: what one result is (engine.result_groups): a product (its best image and how many of its
#: images matched; the default) or an image
PRODUCT, IMAGE = result_groups.PRODUCT, result_groups.IMAGE
#: candidates per group (see :class:`Searcher`)
MIN_CANDIDATES = 50
#: threads that verify candidates side by side (at most the cores this process may use)
VERIFY_WORKERS = 2
#: nearest images asked of the index at most while filters reject candidates; a filter so
#: selective that fewer than VERIFY_TOP of them pass is served by an exact scan of the images
#: that pass it (the index cannot return tens of thousands of neighbours)
MAX_INDEX_FETCH = 4096
#: images per query vector a vector store that filters inside its search returns for such a
#: filter (Milvus); a search reads groups of MIN_CANDIDATES from them by reach
PUSHED_DOWN_REACH = 1024
#: a search widened for a minimum score stops counting on unverified candidates (another photo of
#: the product) beyond this many nearest images: on the grocery phone photos the right product was
#: always among the 50 nearest (benchmarks/same_product.py)
SAME_PRODUCT_REACH = 1024
#: products whose text the words read on a query match best (text score at least
#: TEXT_CANDIDATE_MIN, engine.text_match) join the first group of candidates even when none of
#: their images is among the nearest by embedding (a large catalog: the pack's words name the
#: product, its photo looks like many others); each adds its TEXT_CANDIDATE_IMAGES images
#: nearest to the query
TEXT_CANDIDATE_PRODUCTS = 5
TEXT_CANDIDATE_MIN = 0.5
TEXT_CANDIDATE_IMAGES = 2


@dataclass
class SearchFilters:
    category: str | None = None      # exact, or a prefix path ("Men > Tops" matches "Men > Tops > Jackets")
    brand: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    min_score: float = 0.0
    exclude_ids: frozenset[int] = frozenset()   # catalog images never to return (e.g. the query itself)

    def active(self) -> bool:
        return any(v is not None for v in (self.category, self.brand, self.price_min, self.price_max))

    def accepts(self, record: dict) -> bool:
        if self.exclude_ids and record.get("image_id") in self.exclude_ids:
            return False
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
    #: results per product: how many of the product's images matched (this one included), and
    #: the others, in ranking order (best first); 1 and [] for an image result
    image_count: int = 1
    images: list[Match] = field(default_factory=list)

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
            "image_count": self.image_count,
            "images": [{"image_id": m.image_id, "path": m.path, "score": round(float(m.score), 4),
                        "strength": m.strength} for m in self.images],
        }


@dataclass
class QueryResult:
    query: str
    labels: list[Label] = field(default_factory=list)
    results: list[Match] = field(default_factory=list)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)   # stage -> milliseconds (wall)
    cpu: dict[str, float] = field(default_factory=dict)       # stage -> CPU milliseconds (all threads)
    group: str = PRODUCT          # what one result is: "product" or "image"
    read: list[str] = field(default_factory=list)   # the text lines read on the query (OCR)

    def to_json(self) -> dict:
        return {
            "query": self.query,
            "group": self.group,
            "labels": [{"name": l.name, "score": round(float(l.score), 4)} for l in self.labels],
            "read": self.read,
            "results": [m.to_json() for m in self.results],
            "error": self.error,
        }


class _Clock:
    """Wall and CPU milliseconds per stage of one search. Each ``lap`` charges the time since
    the previous one to a stage, so the stages add up to the search's time. CPU time is the
    whole process's (``time.process_time``: every thread, the model's and the verification
    workers' included): while other programs load the machine it is the stable figure."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._t, self._c = time.perf_counter(), time.process_time()

    def lap(self, stage: str | None) -> None:
        t, c = time.perf_counter(), time.process_time()
        if stage is not None:
            self.wall[stage] = self.wall.get(stage, 0.0) + (t - self._t) * 1000
            self.cpu[stage] = self.cpu.get(stage, 0.0) + (c - self._c) * 1000
        self._t, self._c = t, c


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(VERIFY_WORKERS, cores))


_pool: ThreadPoolExecutor | None = None
_text_executor: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor | None:
    """The threads that verify candidates side by side (None on a single core): faiss's Hamming
    kNN and OpenCV's RANSAC release the GIL. With faiss matching, 50 Luma queries at 100k images
    alternating 1 and 2 workers: 1 worker was 7% slower (paired median)."""
    global _pool
    if _workers() < 2:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="lookalike-verify")
        return _pool


def _forget_pool() -> None:
    global _pool, _pool_lock, _text_executor
    # a forked child has none of the parent's threads: work handed to their pools would wait forever
    _pool, _text_executor, _pool_lock = None, None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


class Searcher:
    """Searches one catalog with one model. Thread-safe: the model session and the index are
    shared, SQLite connections are per thread.

    Ranking: the candidates are taken in groups by embedding similarity. The first group is the
    MIN_CANDIDATES nearest images (more when filters reject some: until VERIFY_TOP pass); its
    best VERIFY_TOP are geometrically verified and the whole group is ranked by score. When a
    search asks for more results than the first group gives, the next group (the images among
    the 4x more nearest that are not in a previous group) is ranked after it, and so on. So a
    longer list extends a shorter one and never reorders it: the same query asked for 10 or 60
    results gives the same first 10, with the same scores.

    Results per product (``group="product"``, the default): the ranked images are collapsed by
    product after ranking (:mod:`engine.result_groups`): a product is represented by its
    best-ranked image, with ``image_count`` and ``images`` (its other matched images); an image
    without a product is its own result; ``k`` counts products, and further groups of candidates
    are drawn until the ranked images make ``k`` products. The products come in the order of
    their first image, so the property above holds for products too (only a product's
    ``image_count`` and ``images`` may grow, when a longer list scores more of its images).
    ``group="image"``: one result per image, as ranked."""

    def __init__(self, catalog: Catalog, model, *, verify: bool = True, read_text: bool | None = None):
        self.catalog = catalog
        self.model = model
        self.verify = verify     # False: embedding similarity only (no local features)
        #: read the text on the query (OCR) and match it with the products' text; None: when the
        #: catalog has any text to match (product data, or words read from its images)
        self.read_text = read_text
        self._metric: tuple[int, object] | None = None     # (catalog version, learned metric)
        #: a learned metric used instead of the catalog's, False for none (an evaluation's metric
        #: fitted without its queries: engine.evaluation.held_out_metrics); None: the catalog's
        self.metric_override = None

    # ------------------------------------------------------------------ entry points
    def search_path(self, path: str | os.PathLike, *, k: int = DEFAULT_K,
                    filters: SearchFilters | None = None,
                    roi: tuple[int, int, int, int] | None = None,
                    group: str = PRODUCT) -> QueryResult:
        """Search with an image file. ``group``: ``"product"`` (k products, each its best
        image) or ``"image"`` (k images); see the class docstring."""
        result_groups.check(group)
        name = os.path.abspath(os.path.expanduser(path))
        clock = _Clock()
        # the words on the query are read from the full-resolution file beside the visual stages
        text = self._start_reading(lambda: _read_file_text(path, roi)) if self._reads_text() else None
        try:
            # a region is cut from the full-resolution image; a whole image may decode reduced
            rgb = load_image(path, min_short_side=None if roi else self.model.resize_short_side)
            digest = _file_hash(path)
        except ImageError as exc:
            if text is not None:
                text.cancel()
            return QueryResult(query=name, error=exc.reason, group=group)
        clock.lap("decode")
        return self._search(rgb, k=k, filters=filters, roi=roi, name=name,
                            same_file_hash=None if roi else digest, clock=clock, group=group, text=text)

    def search_image(self, rgb: np.ndarray, *, k: int = DEFAULT_K,
                     filters: SearchFilters | None = None,
                     roi: tuple[int, int, int, int] | None = None,
                     name: str = "<image>", same_file_hash: str | None = None,
                     group: str = PRODUCT) -> QueryResult:
        """Search with an RGB uint8 image; ``roi`` = (x, y, w, h) in the image's pixels.
        ``same_file_hash``: the content hash of the query file; catalog images with exactly these
        bytes rank first among equal scores (near-identical re-encodes can tie at 1.0).
        ``group``: ``"product"`` or ``"image"``, as for :meth:`search_path`."""
        result_groups.check(group)
        text = None
        if self._reads_text():
            region = rgb if roi is None else crop_roi(rgb, roi)
            text = self._start_reading(lambda: read_text(region))
        return self._search(rgb, k=k, filters=filters, roi=roi, name=name,
                            same_file_hash=same_file_hash, clock=_Clock(), group=group, text=text)

    def _search(self, rgb: np.ndarray, *, k: int, filters: SearchFilters | None,
                roi: tuple[int, int, int, int] | None, name: str, same_file_hash: str | None,
                clock: _Clock, group: str = PRODUCT, text: Future | None = None) -> QueryResult:
        features: Future | None = None
        try:
            if roi is not None:
                rgb = crop_roi(rgb, roi)
            # a padded copy (a uniform coloured frame) is also searched by its content; a plain
            # white studio background is the photo itself and is only trimmed for verification
            box = content_box(rgb) if self.verify else None
            content = rgb if box is None else np.ascontiguousarray(rgb[box[0][1]:box[0][3], box[0][0]:box[0][2]])
            clock.lap("trim")
            if self.verify:
                # the query's local features are extracted while the model runs
                features = _submit(extract, content, keep_image=True)
            clock.lap("features")
            views = [rgb, content] if box is not None and box[1] else [rgb]
            # a photo in the world (not a studio photo, not a region the user chose) is also
            # seen by its centre (engine.centre_view), in the same model batch; a padded copy
            # by its content's centre
            crops = centre_view.crops(views[-1]) if roi is None and centre_view.wanted(views[-1]) else []
            probs, emb = self.model.run(views + crops)
            clock.lap("model")
            centre = centre_view.combine(emb[len(views) - 1], emb[len(views):]) if crops else None
            emb = emb[:len(views)]
            labels = [Label(n, s) for n, s in self.model.top_labels(probs[0], k=3)]
            matches = self._matches(emb, k, filters or SearchFilters(), clock,
                                    content if self.verify else None, same_file_hash, features,
                                    group=group, text=text, centre=centre)
            if group == PRODUCT:    # after ranking: the ranked images, collapsed by product
                matches = result_groups.by_product(matches, k)
                clock.lap("group")
            read = _text_result(text)
            return QueryResult(query=name, labels=labels, results=matches,
                               timings=_with_total(clock.wall), cpu=_with_total(clock.cpu),
                               group=group, read=[] if read is None else [line.text for line in read.lines])
        except LookalikeError as exc:
            return QueryResult(query=name, error=str(exc), timings=_with_total(clock.wall),
                               cpu=_with_total(clock.cpu), group=group)
        finally:
            if features is not None:
                features.cancel()

    # ------------------------------------------------------------------ internals
    def _candidates(self, index, embs: np.ndarray, want: int, filters: SearchFilters,
                    clock: _Clock, skip: set[int] | frozenset[int] = frozenset(),
                    centre: np.ndarray | None = None, found: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> tuple[list[tuple[int, float, dict]], float]:
        """(image id, cosine, record) of the ``want`` nearest images that pass the filters and
        are not in ``skip``, by cosine (the match policy verifies the first), and the reach of
        what was left out (no image left out is nearer than this by any view). Several query embeddings (views of
        one query): each image's best cosine counts. ``centre``: the query's centre view
        (engine.centre_view), one more retrieval view: the images nearest to it are candidates
        too, after those of the whole photo's cosine if they are farther by it. ``found``: the
        vector store's answer for these rows, when the caller asked for several queries at once."""
        embs = np.atleast_2d(np.asarray(embs, np.float32))
        rows = embs if centre is None else np.vstack([embs, centre[None]])
        if found is None:       # exact cosines, re-ranked
            found = self.catalog.vectors.nearest(rows, min(want, len(index)))
        ids, sims = found
        cosine: dict[int, float] = {}
        for row_ids, row_sims in zip(ids[:len(embs)].tolist(), sims[:len(embs)].tolist()):
            for i, s in zip(row_ids, row_sims):
                if s > cosine.get(i, -2.0):
                    cosine[i] = s
        missing = [i for i in dict.fromkeys(ids[len(embs):].ravel().tolist())
                   if i not in cosine and i not in skip]      # found by the centre view alone
        if missing:
            cosine.update(zip(missing, (self.catalog.embeddings(missing) @ embs.T).max(axis=1).tolist()))
        order = [i for i in sorted(cosine, key=lambda i: -cosine[i]) if i not in skip]
        clock.lap("knn")
        records = {r["image_id"]: r for r in self.catalog.image_records(order)}
        clock.lap("join")
        kept = [(i, cosine[i], records[i]) for i in order if i in records and filters.accepts(records[i])]
        # each view's ``want``-th similarity bounds what that view left out
        return kept, (float(sims.min(axis=1).max()) if sims.size else 1.0)

    def _matches(self, emb: np.ndarray, k: int, filters: SearchFilters, clock: _Clock,
                 rgb: np.ndarray | None = None, same_file_hash: str | None = None,
                 features: Future | None = None, group: str = IMAGE, text: Future | None = None,
                 centre: np.ndarray | None = None) -> list[Match]:
        """kNN candidates -> filters -> geometric verification of the best ones (plain, mirrored,
        then rotated queries while no copy is confirmed) -> calibrated score -> ranked matches,
        group by group (see the class docstring). ``emb``: the query's embedding(s) [D] or
        [M, D]; ``rgb`` (the query image) enables verification; without it only the embedding
        counts. ``features``: the query's local features being extracted (a future), if any.
        ``same_file_hash``: catalog images with exactly the query file's bytes rank first among
        equal scores. ``group="product"``: groups are drawn until the ranked images make ``k``
        products, and every ranked image is returned (for :func:`result_groups.by_product`).
        ``centre``: the query's centre view (engine.centre_view), if it has one."""
        index = self.catalog.vectors.index()
        clock.lap("index_sync")
        if index is None or len(index) == 0:
            return []
        n = len(index)
        metric = self._learned_metric()

        def best_unverified(cosine: float) -> float:
            if want > SAME_PRODUCT_REACH:
                return 0.0
            return scoring.best_unverified_score(cosine, learned=metric is not None)
        verifying = rgb is not None and self.verify
        query = None
        scored: list[tuple[float, int, dict, scoring.Evidence]] = []
        seen: set[int] = set()
        want = MIN_CANDIDATES
        first = True
        scan: list[tuple[int, float]] | None = None
        while True:
            # the next group: the nearest ``want`` images, more while the filters leave fewer
            # than VERIFY_TOP new ones (or the rest cannot reach min_score)
            while True:
                if scan is None and filters.active() and MAX_INDEX_FETCH < want < n:
                    scan = self._scan(emb, filters, clock, centre)
                if scan is not None:
                    # a selective filter: the next MIN_CANDIDATES of the images that pass it (by
                    # reach), verified by cosine as _candidates gives them
                    rest = [c for c in scan if c[0] not in seen]
                    chunk = rest[:MIN_CANDIDATES]
                    records = {r["image_id"]: r for r in self.catalog.image_records([i for i, _, _ in chunk])}
                    clock.lap("join")
                    kept = sorted(((i, s, records[i]) for i, s, _ in chunk if i in records), key=lambda c: -c[1])
                    exhausted = len(rest) <= MIN_CANDIDATES
                    last = chunk[-1][2] if chunk else 1.0
                    break
                kept, last = self._candidates(index, emb, want, filters, clock, seen, centre)
                exhausted = want >= n
                if (len(kept) >= match_policy.VERIFY_TOP or exhausted
                        or (best_unverified(last) < filters.min_score and (len(kept) >= match_policy.VERIFY_TOP or not first))):
                    break
                want *= 4
            if verifying and query is None:
                query = features.result() if features is not None else extract(rgb, keep_image=True)
                clock.lap("features")
            if first and verifying:
                evidence = match_policy.verify_candidates(
                    self.catalog, query, kept, pool=_executor(), lap=clock.lap,
                    turned=self._turned_candidates(rgb, index, filters, clock))
            else:
                evidence = {image_id: scoring.Evidence(cosine=float(sim)) for image_id, sim, _ in kept}
                if verifying:
                    match_policy.add_colours(self.catalog, query, evidence,
                                             {i: rec["path"] for i, _, rec in kept})
                    clock.lap("colour")
            records = {i: rec for i, _, rec in kept}
            read = _text_result(text)
            if read is not None and read.words:
                clock.lap("read_text")          # waiting for the words, if the reading is slower
                words = text_index(self.catalog)
                extra = self._text_candidates(words, read.words, emb, filters, seen, evidence, records) if first else []
                if extra:
                    evidence.update(match_policy.verify_candidates(self.catalog, query, extra, pool=_executor(),
                                                                   lap=clock.lap) if verifying else
                                    {i: scoring.Evidence(cosine=float(sim)) for i, sim, _ in extra})
                    records.update({i: rec for i, _, rec in extra})
                match_policy.add_text(words, read.words, evidence, records)
                clock.lap("text")
            match_policy.add_product_similarity(self.catalog, metric, emb, evidence, records,
                                                backdrop=0.0 if query is None else backdrop(query.thumb),
                                                centre=centre, exclude=filters.exclude_ids)
            clock.lap("product")
            scored += self._score(evidence, records, filters, same_file_hash, clock)
            seen.update(evidence)
            first = False
            if (result_groups.count((rec for _, _, rec, _ in scored), group) >= k
                    or exhausted or best_unverified(last) < filters.min_score):
                break
            want *= 4
        return [Match(rank=i + 1, image_id=image_id, path=rec["path"], score=score, product=rec,
                      strength=scoring.strength(score), evidence=ev)
                for i, (score, image_id, rec, ev) in enumerate(scored if group == PRODUCT else scored[:k])]

    def _text_candidates(self, words_index, words, embs: np.ndarray, filters: SearchFilters,
                         seen: set[int], evidence: dict, records: dict[int, dict]
                         ) -> list[tuple[int, float, dict]]:
        """(image id, cosine, record) of the images of the products the query's words match best
        (TEXT_CANDIDATE_PRODUCTS, text score at least TEXT_CANDIDATE_MIN) that have no image among
        the candidates yet, TEXT_CANDIDATE_IMAGES of each (the nearest to the query), nearest first."""
        have = {records[i].get("product_id") for i in evidence if i in records}
        found = [p for p in words_index.match(words, min_score=TEXT_CANDIDATE_MIN, limit=TEXT_CANDIDATE_PRODUCTS)
                 if p not in have]
        ids = [i for m in self.catalog.images_of_products(found).values() for i in m
               if i not in seen and i not in evidence] if found else []
        if not ids:
            return []
        found_records = {r["image_id"]: r for r in self.catalog.image_records(ids)}
        ids = [i for i in ids if i in found_records and filters.accepts(found_records[i])]
        if not ids:
            return []
        cosine = (self.catalog.embeddings(ids) @ np.atleast_2d(np.asarray(embs, np.float32)).T).max(axis=1)
        by_product: dict[str, list[tuple[float, int]]] = {}
        for i, c in zip(ids, cosine.tolist()):
            by_product.setdefault(found_records[i]["product_id"], []).append((c, i))
        out = [(i, c, found_records[i]) for nearest in by_product.values()
               for c, i in sorted(nearest, reverse=True)[:TEXT_CANDIDATE_IMAGES]]
        return sorted(out, key=lambda t: -t[1])

    def _scan(self, embs: np.ndarray, filters: SearchFilters, clock: _Clock,
              centre: np.ndarray | None = None) -> list[tuple[int, float, float]]:
        """(image id, exact cosine, reach) of every catalog image that passes the filters, by
        reach (the cosine, or the centre view's similarity where higher; see
        :meth:`_candidates`): for filters so selective that the index's nearest images hardly
        contain any. A vector store that filters inside its search (Milvus) gives the first
        PUSHED_DOWN_REACH of them instead of the records' every image."""
        queries = np.atleast_2d(np.asarray(embs, np.float32))
        ids = self._pushed_down(queries, filters, centre)
        pushed = ids is not None
        if ids is None:
            ids = [i for i, category, brand, price in self.catalog.iter_filter_fields()
                   if filters.accepts({"image_id": i, "category": category, "brand": brand, "price": price})]
        clock.lap("join")
        sims = np.empty(len(ids), np.float32)
        reach = np.empty(len(ids), np.float32)
        for start in range(0, len(ids), 4096):
            chunk = ids[start:start + 4096]
            stored = self.catalog.embeddings(chunk)
            sims[start:start + len(chunk)] = (stored @ queries.T).max(axis=1)
            reach[start:start + len(chunk)] = sims[start:start + len(chunk)] if centre is None else \
                np.maximum(sims[start:start + len(chunk)], stored @ centre)
        order = np.argsort(-reach, kind="stable")[:PUSHED_DOWN_REACH if pushed else None]
        clock.lap("knn")
        return [(ids[i], float(sims[i]), float(reach[i])) for i in order.tolist()]

    def _pushed_down(self, queries: np.ndarray, filters: SearchFilters, centre: np.ndarray | None
                     ) -> list[int] | None:
        """The images that pass ``filters`` nearest to the query rows and the centre view, from a
        vector store that filters inside its search (a Milvus catalog: ``filtered_nearest``),
        PUSHED_DOWN_REACH per vector: every image among the first PUSHED_DOWN_REACH by reach is
        among them. None where the store cannot (the local index): the caller reads the filter
        fields of every image."""
        vectors = queries if centre is None else np.vstack([queries, centre[None, :]])
        found = self.catalog.vectors.filtered_nearest(vectors, PUSHED_DOWN_REACH, filters)
        if found is None:
            return None
        return np.unique(found[0][found[0] >= 0]).tolist()

    def _score(self, evidence: dict[int, scoring.Evidence], records: dict[int, dict],
               filters: SearchFilters, same_file_hash: str | None, clock: _Clock
               ) -> list[tuple[float, int, dict, scoring.Evidence]]:
        """One group's candidates that reach min_score, best first."""
        match_policy.set_margins(evidence.values())
        if same_file_hash:
            for image_id, ev in evidence.items():
                ev.identical = records[image_id].get("content_hash") == same_file_hash
        scores = scoring.scores(list(evidence.values()))
        scored = [(float(score), image_id, records[image_id], ev)
                  for score, (image_id, ev) in zip(scores.tolist(), evidence.items())
                  if score >= filters.min_score]
        scored.sort(key=lambda x: (-x[0], x[2].get("content_hash") != same_file_hash))
        clock.lap("score")
        return scored

    def _reads_text(self) -> bool:
        """Whether queries are read (OCR): as asked, else when the catalog has text to match."""
        if self.read_text is not None:
            return self.read_text
        return len(text_index(self.catalog)) > 0

    def _start_reading(self, read) -> Future:
        return _text_pool().submit(read)

    def _learned_metric(self):
        """The catalog's learned metric (engine.learned_metric), re-read when the catalog changed."""
        if self.metric_override is not None:
            return self.metric_override or None
        version = self.catalog.version
        if self._metric is None or self._metric[0] != version:
            self._metric = (version, learned_metric.stored(self.catalog))
        return self._metric[1]

    def _turned_candidates(self, rgb: np.ndarray, index, filters: SearchFilters, clock: _Clock):
        """The turned pass of the match policy: the query embedded turned by 90/180/270 degrees,
        and the nearest ROTATED_TOP images of each that pass the filters."""
        def turned() -> list[tuple[int, float, dict]]:
            _, embs = self.model.run([np.ascontiguousarray(np.rot90(rgb, r)) for r in (1, 2, 3)])
            clock.lap("model_rotated")
            # one vector-store call for the three turns (a Milvus round trip each, otherwise);
            # each turn keeps its own nearest ROTATED_TOP
            ids, sims = self.catalog.vectors.nearest(embs, min(match_policy.ROTATED_TOP, len(index)))
            return [c for row, e in enumerate(embs) for c in self._candidates(
                index, e, match_policy.ROTATED_TOP, filters, clock,
                found=(ids[row:row + 1], sims[row:row + 1]))[0]]
        return turned


def _text_pool() -> ThreadPoolExecutor:
    """The thread that reads queries' text: one, beside the verification threads."""
    global _text_executor
    with _pool_lock:
        if _text_executor is None:
            _text_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-read")
        return _text_executor


def _read_file_text(path, roi):
    """The text on an image file, read at full resolution (in ``roi`` if given)."""
    rgb = load_image(path)
    return read_text(rgb if roi is None else crop_roi(rgb, roi))


def _text_result(text: Future | None):
    """The words read on the query (engine.text_reading.ReadText), or None when nothing was read
    or the reading failed (the search goes on without them; the reason is logged once)."""
    if text is None:
        return None
    try:
        return text.result()
    except (LookalikeError, OSError, ValueError) as exc:
        _log_once(f"text not read: {exc}")
        return None


_logged: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        logging.getLogger(__name__).warning(message)


def _submit(fn, *args, **kwargs) -> Future | None:
    """Run ``fn`` on a verification thread; None on a single core (the caller runs it)."""
    pool = _executor()
    return pool.submit(fn, *args, **kwargs) if pool is not None else None


def _with_total(stages: dict[str, float]) -> dict[str, float]:
    return {**stages, "total": sum(stages.values())}


def _file_hash(path) -> str | None:
    try:
        with open(path, "rb") as fh:        # just decoded: in the page cache
            return content_hash(fh.read())
    except OSError:
        return None


def crop_roi(rgb: np.ndarray, roi: Sequence[float]) -> np.ndarray:
    """Crop (x, y, w, h), clamped to the image."""
    h, w = rgb.shape[:2]
    x, y, rw, rh = (float(v) for v in roi)
    x0, y0 = int(max(0, min(w - 1, round(x)))), int(max(0, min(h - 1, round(y))))
    x1, y1 = int(max(x0 + 1, min(w, round(x + rw)))), int(max(y0 + 1, min(h, round(y + rh))))
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise LookalikeError(f"region {tuple(int(v) for v in roi)} is too small to search (at least 8x8 pixels)")
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])
