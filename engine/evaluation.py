"""`lookalike eval`: retrieval quality of the real search pipeline on labelled queries.

Query file: CSV with header ``query,relevant`` (extra columns ignored); ``relevant`` holds zero or
more gallery paths separated by ``;`` (empty: nothing in the gallery should match). Relative
paths are resolved against the CSV's folder, or, where they do not exist there, against the
nearest folder above it where they do (the Luma eval files name paths relative to the dataset
folder, one level up); ``--root`` names the base folder explicitly.

Gallery: image files, folders (recursive) and ``.txt`` lists of paths (one a line, resolved like
the CSV's). A catalog of the gallery is built in a cache folder keyed by the gallery's path list
and the model, and brought up to date incrementally (unchanged files are not re-read), so a
second run starts at once. Every query goes through :class:`engine.search.Searcher` exactly as
``lookalike search`` does; a query never counts as matching itself.

Metrics (queries with no relevant item count only in micro-AP and in precision):

* R@k   — share of queries (with a relevant item) whose top k holds a relevant item;
* mAP   — mean over those queries of average precision over the top k (normalised by
          min(#relevant, k));
* micro-AP — pool the top-k (score, correct?) pairs of every query, including queries with no
          relevant item, sort by score and take the average precision of that one ranking,
          recall measured against every relevant item (capped at k per query). It is high only if one
          global threshold separates true matches from everything else;
* precision / recall at each named threshold, over the same pool.
"""

from __future__ import annotations

import csv
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
    aps = [average_precision([p in r.relevant for p, _ in r.results[:k]], min(len(r.relevant), k))
           for r in rankings if r.relevant]
    return float(np.mean(aps)) if aps else float("nan")


def pool(rankings: Sequence[Ranking], k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, correct) of every query's top k, and the number of positives to find."""
    scores, correct = [], []
    n_pos = 0
    for r in rankings:
        n_pos += min(len(r.relevant), k)
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


def summarise(rankings: Sequence[Ranking], k: int = DEFAULT_K,
              thresholds: dict[str, float] | None = None) -> dict:
    from .scoring import THRESHOLDS

    thresholds = THRESHOLDS if thresholds is None else thresholds
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
    for name, t in thresholds.items():
        p, r, n = precision_recall_at(rankings, t, k)
        out["thresholds"][name] = {"threshold": t, "precision": p, "recall": r, "pairs": n}
    return out


def format_summary(s: dict) -> str:
    def f(x):
        return "  n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
    lines = [f"queries {s['queries']} ({s['queries_with_relevant']} with a relevant item), top {s['k']}",
             f"R@1 {f(s['R@1'])}   R@5 {f(s['R@5'])}   mAP {f(s['mAP'])}   micro-AP {f(s['micro-AP'])}"]
    for name, t in s["thresholds"].items():
        lines.append(f"  at {name!r:16} (score >= {t['threshold']:.3f}): precision {f(t['precision'])}  "
                     f"recall {f(t['recall'])}  ({t['pairs']} pairs)")
    if "latency_ms" in s:
        lat = s["latency_ms"]
        lines.append("latency per query (ms, median): " + ", ".join(
            f"{k} {v:.1f}" for k, v in lat.items()))
    return "\n".join(lines)


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


def read_gallery(items: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> list[str]:
    """Gallery image paths from files, folders and .txt lists."""
    from .imaging import is_image_path

    out: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_file() and p.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith("#")]
            base = _resolve_base(lines, p.parent.resolve(), Path(root).expanduser().resolve() if root else None)
            out += [os.path.normpath(ln if os.path.isabs(ln) else str(base / ln)) for ln in lines]
        elif p.is_dir():
            for dirpath, _, files in os.walk(p):
                out += [os.path.normpath(os.path.abspath(os.path.join(dirpath, f)))
                        for f in sorted(files) if is_image_path(f)]
        elif p.is_file():
            out.append(os.path.normpath(os.path.abspath(p)))
        else:
            raise LookalikeError(f"{p}: gallery path not found")
    out = sorted(set(out))
    if not out:
        raise LookalikeError("the gallery holds no images")
    return out


# ---------------------------------------------------------------------- running
def gallery_catalog_dir(gallery: Sequence[str], model_id: str) -> Path:
    from platformdirs import user_cache_dir

    key = hashlib.blake2b(("\n".join([model_id, *gallery])).encode(), digest_size=10).hexdigest()
    base = Path(os.environ.get("LOOKALIKE_EVAL_CACHE") or user_cache_dir("lookalike")) / "eval-catalogs"
    return base / key


def build_gallery_catalog(gallery: Sequence[str], model, directory: Path | None = None, *,
                          progress=None, warn=None):
    """Open (creating or updating) the catalog of ``gallery`` and return it. Unreadable gallery
    images are reported through ``warn(message)`` (default: this module's logger)."""
    from .catalog import Catalog
    from .ingest import ingest
    from .feature_store import backfill

    directory = directory or gallery_catalog_dir(gallery, model.model_id)
    catalog = Catalog.open(directory)
    report = ingest(catalog, model, gallery, progress=progress)
    if report.failed:
        path, reason = report.failed[0]
        (warn or log.warning)(f"{len(report.failed)} gallery images could not be read, e.g. {path}: {reason}")
    # drop images that left the gallery (a path list keys the folder, so only on edits in place)
    wanted = set(gallery)
    stale = [r["image_id"] for r in catalog.iter_records() if r["path"] not in wanted]
    catalog.remove_images(stale)
    backfill(catalog)
    return catalog


def run_queries(searcher, queries: Sequence[QuerySpec], k: int = DEFAULT_K, *,
                progress=None) -> list[Ranking]:
    from .search import SearchFilters

    out = []
    for n, q in enumerate(queries, 1):
        # a query in the gallery is left out of its own search (before scoring, so it does not
        # compete with the other candidates either)
        own = searcher.catalog.image_by_path(q.query)
        filters = SearchFilters(exclude_ids=frozenset([own["id"]]) if own else frozenset())
        result = searcher.search_path(q.query, k=k, filters=filters)
        if result.error:
            raise LookalikeError(f"{q.query}: {result.error}")
        kept = [m for m in result.results if os.path.normpath(m.path) != q.query][:k]
        out.append(Ranking(
            query=q.query, relevant=q.relevant,
            results=[(os.path.normpath(m.path), float(m.score)) for m in kept],
            evidence=[m.evidence.to_json() if m.evidence is not None else {} for m in kept],
            extra={"timings": result.timings, **q.extra}))
        if progress:
            progress(n, len(queries), q.query)
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


def evaluate(gallery: Sequence[str], queries: Sequence[QuerySpec], model, *, k: int = DEFAULT_K,
             catalog_dir: Path | None = None, progress=None, warn=None) -> tuple[dict, list[Ranking]]:
    from .search import Searcher

    catalog = build_gallery_catalog(gallery, model, catalog_dir, warn=warn)
    try:
        rankings = run_queries(Searcher(catalog, model), queries, k, progress=progress)
    finally:
        catalog.close()
    summary = summarise(rankings, k)
    summary["latency_ms"] = latency_summary(rankings)
    return summary, rankings


def write_details(rankings: Iterable[Ranking], path) -> None:
    """Every query's ranked results and evidence, one JSON object a line."""
    with open(path, "w", encoding="utf-8") as fh:
        for r in rankings:
            fh.write(json.dumps({"query": r.query, "relevant": sorted(r.relevant),
                                 "results": r.results, "evidence": r.evidence,
                                 "extra": r.extra}) + "\n")

