"""`lookalike eval`: retrieval quality of the real search pipeline on labelled queries.

Query file: CSV with header ``query,relevant`` (extra columns kept with the query); ``relevant``
holds zero or more gallery paths separated by ``;`` (empty: nothing in the gallery should match).
An optional ``group`` column (e.g. Fruit, Vegetables, Packages) adds every figure per group. Relative
paths are resolved against the CSV's folder, or, where they do not exist there, against the
nearest folder above it where they do (the Luma eval files name paths relative to the dataset
folder, one level up); ``--root`` names the base folder explicitly.

Gallery: image files, folders (recursive), ``.txt`` lists of paths (one a line, resolved like
the CSV's) and product feeds (Merchant CSV, Shopify export), imported as ``lookalike index``
imports them: products, their text and their several photos each. Relevant items stay image
paths. A catalog of the gallery is built in a cache folder keyed by the gallery (its path list,
or the feeds' paths) and the model, and brought up to date incrementally (unchanged files are not
re-read), so a second run starts at once. Every query goes through
:class:`engine.search.Searcher` exactly as ``lookalike search`` does; a query never counts as
matching itself, and a query that is a gallery photo never teaches its own comparison (the
catalog's learned metric is refitted without it: :func:`held_out_metrics`).

Reference: the same queries ranked over the same gallery by raw embedding cosine alone (exact,
every gallery image, no verification, no calibrated score), so each report shows what the
embedding alone gives next to what the search gives.

Metrics (queries with no relevant item count only in micro-AP and in precision):

* R@k   — share of queries (with a relevant item) whose top k holds a relevant item;
* mAP   — mean over those queries of average precision over the top k (normalised by
          min(#relevant, k));
* micro-AP — pool the top-k (score, correct?) pairs of every query, including queries with no
          relevant item, sort by score and take the average precision of that one ranking,
          recall measured against every relevant item (capped at k per query). It is high only if one
          global threshold separates true matches from everything else;
* precision / recall at each named threshold, over the same pool.

A result is relevant when its path is. A search that returns one result per product (a result
carrying ``image_count``) is measured against the number of relevant *products*, so a product
with 40 relevant photos counts once in recall, mAP and the pool.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import LookalikeError

log = logging.getLogger(__name__)

DEFAULT_K = 10


# ---------------------------------------------------------------------- metrics
@dataclass
class Ranking:
    """One query's ranked results: (path, score) best first, and its relevant paths."""
    query: str
    relevant: frozenset[str]
    results: list[tuple[str, float]] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)   # per result, for calibration
    extra: dict = field(default_factory=dict)
    # relevant units a perfect ranking can show: len(relevant), or fewer when one result stands
    # for several relevant images (results per product)
    n_relevant: int | None = None

    @property
    def to_find(self) -> int:
        return len(self.relevant) if self.n_relevant is None else self.n_relevant

    @property
    def group(self) -> str:
        return (self.extra.get("group") or "").strip()


def recall_at(rankings: Sequence[Ranking], k: int) -> float:
    qs = [r for r in rankings if r.relevant]
    if not qs:
        return float("nan")
    return sum(any(p in r.relevant for p, _ in r.results[:k]) for r in qs) / len(qs)


def average_precision(ranked_correct: Sequence[bool], n_relevant: int) -> float:
    """AP of one ranking given which entries are correct; normalised by ``n_relevant``."""
    if n_relevant <= 0:
        return float("nan")
    hits, total = 0, 0.0
    for i, ok in enumerate(ranked_correct, 1):
        if ok:
            hits += 1
            total += hits / i
    return total / n_relevant


def mean_ap(rankings: Sequence[Ranking], k: int) -> float:
    aps = [average_precision([p in r.relevant for p, _ in r.results[:k]], min(r.to_find, k))
           for r in rankings if r.relevant]
    return float(np.mean(aps)) if aps else float("nan")


def pool(rankings: Sequence[Ranking], k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, correct) of every query's top k, and the number of positives to find."""
    scores, correct = [], []
    n_pos = 0
    for r in rankings:
        n_pos += min(r.to_find, k)
        for p, s in r.results[:k]:
            scores.append(s)
            correct.append(p in r.relevant)
    return np.asarray(scores, np.float64), np.asarray(correct, bool), n_pos


def micro_ap(rankings: Sequence[Ranking], k: int) -> float:
    scores, correct, n_pos = pool(rankings, k)
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    return average_precision(correct[order].tolist(), n_pos)


def precision_recall_at(rankings: Sequence[Ranking], threshold: float, k: int) -> tuple[float, float, int]:
    """(precision, recall, number of pairs at or above) for one score threshold over the pool."""
    scores, correct, n_pos = pool(rankings, k)
    above = scores >= threshold
    n = int(above.sum())
    tp = int((correct & above).sum())
    precision = tp / n if n else float("nan")
    recall = tp / n_pos if n_pos else float("nan")
    return precision, recall, n


def figures(rankings: Sequence[Ranking], k: int = DEFAULT_K,
            thresholds: dict[str, float] | None = None) -> dict:
    """R@1, R@5, mAP, micro-AP and P / R at each threshold of one set of rankings."""
    out = {
        "queries": len(rankings),
        "queries_with_relevant": sum(1 for r in rankings if r.relevant),
        "k": k,
        "R@1": recall_at(rankings, 1),
        "R@5": recall_at(rankings, 5),
        "mAP": mean_ap(rankings, k),
        "micro-AP": micro_ap(rankings, k),
        "thresholds": {},
    }
    for name, t in (thresholds or {}).items():
        p, r, n = precision_recall_at(rankings, t, k)
        out["thresholds"][name] = {"threshold": t, "precision": p, "recall": r, "pairs": n}
    return out


def by_group(rankings: Sequence[Ranking]) -> dict[str, list[Ranking]]:
    """Rankings per value of the query file's ``group`` column (sorted by name); empty when no
    query names a group. Queries without one form the group ``""``."""
    if not any(r.group for r in rankings):
        return {}
    groups: dict[str, list[Ranking]] = {}
    for r in rankings:
        groups.setdefault(r.group, []).append(r)
    return dict(sorted(groups.items()))


def summarise(rankings: Sequence[Ranking], k: int = DEFAULT_K,
              thresholds: dict[str, float] | None = None,
              reference: Sequence[Ranking] | None = None) -> dict:
    """Figures over all queries, and per group when the queries have one (``groups``).
    ``reference``: the same queries ranked by raw embedding cosine (:func:`reference_rankings`),
    summarised under ``reference`` (rankings and figures, no thresholds: cosine is no score)."""
    from .scoring import THRESHOLDS

    thresholds = THRESHOLDS if thresholds is None else thresholds
    out = figures(rankings, k, thresholds)
    groups = by_group(rankings)
    if groups:
        out["groups"] = {g: figures(rs, k, thresholds) for g, rs in groups.items()}
    if reference is not None:
        ref = figures(reference, k)
        del ref["thresholds"]
        ref["method"] = "raw embedding cosine, exact"
        ref_groups = by_group(reference)
        if ref_groups:
            ref["groups"] = {}
            for g, rs in ref_groups.items():
                ref["groups"][g] = f = figures(rs, k)
                del f["thresholds"]
        out["reference"] = ref
    return out


def _fmt(x) -> str:
    return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def format_summary(s: dict) -> str:
    f = _fmt
    lines = [f"queries {s['queries']} ({s['queries_with_relevant']} with a relevant item), top {s['k']}",
             f"R@1 {f(s['R@1'])}   R@5 {f(s['R@5'])}   mAP {f(s['mAP'])}   micro-AP {f(s['micro-AP'])}"]
    for name, t in s["thresholds"].items():
        lines.append(f"  at {name!r:16} (score >= {t['threshold']:.3f}): precision {f(t['precision'])}  "
                     f"recall {f(t['recall'])}  ({t['pairs']} pairs)")
    if s.get("held_out"):
        h = s["held_out"]
        lines.append(f"{h['queries']} queries are gallery photos the catalog's learned metric was fitted on: "
                     f"searched in {h['folds']} folds, each with a metric fitted without its photos")
    ref = s.get("reference")
    if ref:
        lines.append(f"raw embedding (cosine, exact, no verification): R@1 {f(ref['R@1'])}   "
                     f"R@5 {f(ref['R@5'])}   mAP {f(ref['mAP'])}   micro-AP {f(ref['micro-AP'])}")
    if s.get("groups"):
        lines.append(format_groups(s))
    if "latency_ms" in s:
        lat = s["latency_ms"]
        lines.append("latency per query (ms, median): " + ", ".join(
            f"{k} {v:.1f}" for k, v in lat.items()))
    return "\n".join(lines)


def format_groups(s: dict) -> str:
    """The per-group table: queries, raw-embedding R@1 next to Lookalike's, R@5, mAP, micro-AP
    and P / R at each threshold; the last row is all queries."""
    f = _fmt
    ref = s.get("reference") or {}
    names = list(s["thresholds"])
    head = (f"{'group':14} {'queries':>7} {'raw R@1':>7} {'R@1':>6} {'R@5':>6} {'mAP':>6} {'micro-AP':>8}"
            + "".join(f"  {(n + ' P / R'):>20}" for n in names))
    rows = [head]
    items = [*s["groups"].items(), ("all", s)]
    for g, fig in items:
        raw = (ref if g == "all" and fig is s else (ref.get("groups") or {}).get(g, {})).get("R@1")
        rows.append(f"{(g or '(none)'):14} {fig['queries']:>7} {f(raw):>7} {f(fig['R@1']):>6} "
                    f"{f(fig['R@5']):>6} {f(fig['mAP']):>6} {f(fig['micro-AP']):>8}"
                    + "".join(f"  {(f(t['precision']) + ' / ' + f(t['recall'])):>20}"
                              for t in fig["thresholds"].values()))
    return "\n".join(rows)


# ---------------------------------------------------------------------- reading inputs
def _resolve_base(rel: Sequence[str], start: Path, root: Path | None) -> Path:
    """The folder the relative paths ``rel`` are relative to: ``root``, else ``start`` or the
    nearest folder above it where they exist."""
    if root is not None:
        return root
    rel = [p for p in rel if p and not os.path.isabs(p)]
    if not rel:
        return start
    sample = rel[:: max(1, len(rel) // 50)]
    for base in [start, *start.parents]:
        if all((base / p).exists() for p in sample):
            return base
    return start


@dataclass
class QuerySpec:
    query: str
    relevant: frozenset[str]
    extra: dict = field(default_factory=dict)


def read_queries(csv_path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[QuerySpec]:
    path = Path(csv_path).expanduser()
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise LookalikeError(f"{path}: query file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LookalikeError(f"{path}: cannot read the query file ({exc})") from None
    if not rows or "query" not in rows[0] or "relevant" not in rows[0]:
        raise LookalikeError(f"{path}: a query file needs a header with the columns query,relevant")
    names = []
    for row in rows:
        names.append(row["query"] or "")
        names += [p for p in (row["relevant"] or "").split(";") if p.strip()]
    base = _resolve_base(names, path.parent.resolve(), Path(root).expanduser().resolve() if root else None)

    def absolute(p: str) -> str:
        p = p.strip()
        return os.path.normpath(p if os.path.isabs(p) else str(base / p))

    out = []
    for n, row in enumerate(rows, 2):
        q = (row["query"] or "").strip()
        if not q:
            raise LookalikeError(f"{path}: line {n}: empty query path")
        rel = frozenset(absolute(p) for p in (row["relevant"] or "").split(";") if p.strip())
        extra = {k: v for k, v in row.items() if k not in ("query", "relevant") and k is not None}
        out.append(QuerySpec(absolute(q), rel, extra))
    missing = [q.query for q in out if not os.path.isfile(q.query)]
    if missing:
        raise LookalikeError(f"{path}: {len(missing)} query images not found, e.g. {missing[0]} "
                             f"(paths are resolved against {base}; use --root)")
    return out


@dataclass
class Gallery:
    """What a gallery holds: every image path (sorted), and how it is imported: product feeds
    (with their products) and the image files given outside a feed. Iterates over the images."""
    images: list[str]
    feeds: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.feeds and not self.files:
            self.files = list(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        return iter(self.images)

    def key(self) -> list[str]:
        """What keys the cached catalog: the image paths (as before feeds were accepted), or the
        feeds and the files outside them (a feed's images are whatever it lists today)."""
        return self.files if not self.feeds else [*(f"feed:{f}" for f in self.feeds), *self.files]


def _feed_images(feed: Path) -> list[str]:
    """The local images a product feed lists, as the import stores their paths (a FeedError
    names the file when it cannot be read)."""
    from .feeds import read_feed

    with read_feed(feed) as reader:
        return [str(img) for item in reader for img in item.images]


def read_gallery(items: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> Gallery:
    """The gallery of image files, folders, .txt lists and product feeds (GMC, Shopify)."""
    from .feeds import is_feed
    from .imaging import is_image_path

    files: list[str] = []
    feeds: list[str] = []
    images: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_file() and not is_image_path(p) and is_feed(p):
            feeds.append(os.path.normpath(os.path.abspath(p)))
            images += _feed_images(p)
        elif p.is_file() and p.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith("#")]
            base = _resolve_base(lines, p.parent.resolve(), Path(root).expanduser().resolve() if root else None)
            files += [os.path.normpath(ln if os.path.isabs(ln) else str(base / ln)) for ln in lines]
        elif p.is_dir():
            for dirpath, _, names in os.walk(p):
                files += [os.path.normpath(os.path.abspath(os.path.join(dirpath, f)))
                          for f in sorted(names) if is_image_path(f)]
        elif p.is_file():
            files.append(os.path.normpath(os.path.abspath(p)))
        else:
            raise LookalikeError(f"{p}: gallery path not found")
    files = sorted(set(files))
    images = sorted(set(images) | set(files))
    if not images:
        raise LookalikeError("the gallery holds no images")
    return Gallery(images=images, feeds=sorted(set(feeds)), files=files)


def _as_gallery(gallery: Gallery | Sequence[str]) -> Gallery:
    return gallery if isinstance(gallery, Gallery) else Gallery(images=sorted(gallery))


# ---------------------------------------------------------------------- running
def gallery_catalog_dir(gallery: Gallery | Sequence[str], model_id: str, read_text: bool = False) -> Path:
    from platformdirs import user_cache_dir

    parts = [model_id, *(["read-text"] if read_text else []), *_as_gallery(gallery).key()]
    key = hashlib.blake2b("\n".join(parts).encode(), digest_size=10).hexdigest()
    base = Path(os.environ.get("LOOKALIKE_EVAL_CACHE") or user_cache_dir("lookalike")) / "eval-catalogs"
    return base / key


def build_gallery_catalog(gallery: Gallery | Sequence[str], model, directory: Path | None = None, *,
                          progress=None, warn=None, read_text: bool = False):
    """Open (creating or updating) the catalog of ``gallery`` and return it: feeds are imported
    with their products, as ``lookalike index`` does (``read_text``: as ``--read-text`` does).
    Unreadable gallery images are reported through ``warn(message)`` (default: this module's
    logger)."""
    from .catalog import Catalog
    from .ingest import ingest
    from .feature_store import backfill

    gallery = _as_gallery(gallery)
    directory = directory or gallery_catalog_dir(gallery, model.model_id, read_text)
    catalog = Catalog.open(directory)
    report = ingest(catalog, model, [*gallery.feeds, *gallery.files], progress=progress, read_text=read_text)
    if report.failed:
        path, reason = report.failed[0]
        (warn or log.warning)(f"{len(report.failed)} gallery images could not be read, e.g. {path}: {reason}")
    # drop images that left the gallery (a path list keys the folder, so only on edits in place;
    # a feed keys it by its path, so also when the feed no longer lists them)
    wanted = set(gallery.images)
    stale = [r["image_id"] for r in catalog.iter_records() if r["path"] not in wanted]
    catalog.remove_images(stale)
    backfill(catalog)
    return catalog


@functools.lru_cache(maxsize=1 << 16)
def _canonical(path: str) -> str:
    """One spelling per file: feeds store resolved paths, folders and lists as written."""
    return os.path.realpath(path)


def _relevance(catalog, q: QuerySpec, per_product: bool) -> tuple[frozenset[str], int | None]:
    """The query's relevant paths (canonical) and, for results per product, how many distinct
    products (or images outside any product) they make."""
    relevant = frozenset(_canonical(p) for p in q.relevant)
    if not per_product:
        return relevant, None
    units = set()
    for p in relevant:
        rec = catalog.image_by_path(p)
        units.add(("product", rec["product_id"]) if rec and rec["product_id"] else ("image", p))
    return relevant, len(units)


def _own_ids(catalog, query: str) -> frozenset[int]:
    ids = set()
    for p in {query, _canonical(query)}:
        rec = catalog.image_by_path(p)
        if rec:
            ids.add(rec["id"])
    return frozenset(ids)


#: queries that are gallery images the catalog's learned metric was fitted on are searched in
#: this many folds, each with a metric fitted without the fold's images
HELD_OUT_FOLDS = 5


def held_out_metrics(catalog, own: Sequence[frozenset[int]], folds: int = HELD_OUT_FOLDS,
                     seed: int = 0) -> tuple[list, int]:
    """Per query, the learned metric its search uses instead of the catalog's (None: the
    catalog's), and how many queries were held out. A query that is a gallery image in one of
    the groups the catalog's learned metric (engine.learned_metric) was fitted on would be
    compared in a space fitted to pull it towards its own product: such queries are split into
    ``folds``, and each fold is searched with a metric fitted without any of its images (False
    where too few groups are left for one: then no learned metric). ``own``: each query's gallery
    image ids (:func:`_own_ids`)."""
    from . import learned_metric

    plan: list = [None] * len(own)
    if not any(own) or learned_metric.stored(catalog) is None:
        return plan, 0
    taught = set(learned_metric.training_groups(catalog)[0].tolist())
    held = [n for n, ids in enumerate(own) if ids & taught]
    order = np.random.default_rng(seed).permutation(len(held))
    for f in range(min(folds, len(held))):
        members = [held[j] for j in order[f::folds]]
        metric = learned_metric.fit_for(catalog, exclude={i for n in members for i in own[n]})
        for n in members:
            plan[n] = False if metric is None else metric
    return plan, len(held)


def run_queries(searcher, queries: Sequence[QuerySpec], k: int = DEFAULT_K, *,
                progress=None, held_out: dict | None = None) -> list[Ranking]:
    """Search every query (a query in the gallery is left out of its own search and of its
    product's prototype; :func:`held_out_metrics` keeps it out of the learned metric too).
    ``held_out``: filled with {"queries": n, "folds": f} when queries were held out."""
    from .search import SearchFilters

    owns = [_own_ids(searcher.catalog, q.query) for q in queries]
    plan, n_held = held_out_metrics(searcher.catalog, owns)
    if held_out is not None and n_held:
        held_out.update(queries=n_held, folds=min(HELD_OUT_FOLDS, n_held))
    out = []
    before = getattr(searcher, "metric_override", None)
    try:
        for n, q in enumerate(queries, 1):
            if n_held:
                searcher.metric_override = plan[n - 1] if plan[n - 1] is not None else before
            # a query in the gallery is left out of its own search (before scoring, so it does
            # not compete with the other candidates either)
            out.append(_ranking(searcher, q, k, SearchFilters(exclude_ids=owns[n - 1])))
            if progress:
                progress(n, len(queries), q.query)
    finally:
        if n_held:
            searcher.metric_override = before
    return out


def _ranking(searcher, q: QuerySpec, k: int, filters) -> Ranking:
    """One query's search as a Ranking."""
    result = searcher.search_path(q.query, k=k, filters=filters)
    if result.error:
        raise LookalikeError(f"{q.query}: {result.error}")
    own = _canonical(q.query)
    kept = [m for m in result.results if _canonical(m.path) != own][:k]
    # a result standing for a product (several images) carries image_count
    per_product = any(getattr(m, "image_count", None) is not None for m in kept)
    relevant, n_relevant = _relevance(searcher.catalog, q, per_product)
    return Ranking(
        query=q.query, relevant=relevant, n_relevant=n_relevant,
        results=[(_canonical(m.path), float(m.score)) for m in kept],
        evidence=[m.evidence.to_json() if m.evidence is not None else {} for m in kept],
        extra={"timings": result.timings, **q.extra, **({"per_product": True} if per_product else {})})


def reference_rankings(catalog, model, queries: Sequence[QuerySpec], k: int = DEFAULT_K, *,
                       per_product: bool = False, progress=None, batch: int = 32) -> list[Ranking]:
    """The queries ranked over every gallery image by raw embedding cosine: the whole query image
    embedded as decoded for search, exact dot products, no trimming, no verification, no score
    (the result's value is the cosine). ``per_product``: one result per product (its best image),
    as a search returning products gives, so the figures compare like with like."""
    from .imaging import load_image

    records = {r["image_id"]: r for r in catalog.iter_records()}
    ids, chunks = [], []
    for chunk_ids, embs in catalog.iter_embeddings():
        keep = [j for j, i in enumerate(chunk_ids.tolist()) if i in records]
        ids += [int(chunk_ids[j]) for j in keep]
        chunks.append(embs[keep])
    gallery = np.concatenate(chunks) if chunks else np.zeros((0, model.embedding_dim), np.float32)
    paths = [_canonical(records[i]["path"]) for i in ids]
    unit = [("product", records[i]["product_id"]) if per_product and records[i]["product_id"]
            else ("image", p) for i, p in zip(ids, paths)]
    position = {p: j for j, p in enumerate(paths)}
    out: list[Ranking] = []
    for start in range(0, len(queries), batch):
        part = queries[start:start + batch]
        # ImageError names the file; the search already failed on it otherwise
        rgbs = [load_image(q.query, min_short_side=model.resize_short_side) for q in part]
        sims = model.embed(rgbs) @ gallery.T if len(gallery) else np.zeros((len(part), 0), np.float32)
        for q, row in zip(part, sims):
            own = position.get(_canonical(q.query))
            if own is not None:
                row[own] = -np.inf          # a query never matches itself
            results, seen = [], set()
            for j in np.argsort(-row, kind="stable").tolist():
                if len(results) >= k or row[j] == -np.inf:
                    break
                if unit[j] in seen:
                    continue
                seen.add(unit[j])
                results.append((paths[j], float(row[j])))
            relevant, n_relevant = _relevance(catalog, q, per_product)
            out.append(Ranking(query=q.query, relevant=relevant, n_relevant=n_relevant,
                               results=results, extra=dict(q.extra)))
        if progress:
            progress(min(start + batch, len(queries)), len(queries), "raw embedding reference")
    return out


def latency_summary(rankings: Sequence[Ranking]) -> dict[str, float]:
    stages: dict[str, list[float]] = {}
    for r in rankings:
        t = r.extra.get("timings") or {}
        for name, ms in t.items():
            stages.setdefault(name, []).append(ms)
    n = len(rankings)
    # a stage that runs only for some queries: its median over all queries (0 where skipped)
    return {name: float(np.median(v + [0.0] * (n - len(v)))) for name, v in stages.items()}


def evaluate(gallery: Gallery | Sequence[str], queries: Sequence[QuerySpec], model, *,
             k: int = DEFAULT_K, catalog_dir: Path | None = None, reference: str | None = "cosine",
             progress=None, warn=None, read_text: bool = False) -> tuple[dict, list[Ranking]]:
    """Search every query and summarise (per group too, when the queries have one). With
    ``reference="cosine"`` the same queries are also ranked by raw embedding cosine, summarised
    under ``reference``, and each ranking's ``extra["reference"]`` holds that ranking."""
    from .search import Searcher

    if reference not in (None, "none", "cosine"):
        raise LookalikeError(f"unknown reference {reference!r} (cosine or none)")
    catalog = build_gallery_catalog(gallery, model, catalog_dir, warn=warn, read_text=read_text)
    try:
        held_out: dict = {}
        rankings = run_queries(Searcher(catalog, model), queries, k, progress=progress, held_out=held_out)
        ref = None
        if reference == "cosine":
            ref = reference_rankings(catalog, model, queries, k, progress=progress,
                                     per_product=any(r.extra.get("per_product") for r in rankings))
            for r, rr in zip(rankings, ref):
                r.extra["reference"] = rr.results
    finally:
        catalog.close()
    summary = summarise(rankings, k, reference=ref)
    summary["latency_ms"] = latency_summary(rankings)
    if held_out:
        summary["held_out"] = held_out
    return summary, rankings


def write_details(rankings: Iterable[Ranking], path) -> None:
    """Every query's ranked results and evidence, one JSON object a line."""
    with open(path, "w", encoding="utf-8") as fh:
        for r in rankings:
            fh.write(json.dumps({"query": r.query, "relevant": sorted(r.relevant),
                                 "results": r.results, "evidence": r.evidence,
                                 "extra": r.extra}) + "\n")

