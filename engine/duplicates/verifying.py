"""Scoring candidate pairs on threads: the verifiers a scan can use and the pool that runs them.

The default verifier gathers each pair's evidence with engine.match_policy (stored features, the
newer image as the query); the scan then scores all pairs together (competing scores). The
others score each pair alone (:func:`verify_pairs`) or by the embedding only
(:func:`embedding_verifier`: synthetic catalogs, tests, benchmarks).
"""

from __future__ import annotations

import os
import threading
from itertools import pairwise

import numpy as np

from .. import match_policy, scoring
from ..catalog import Catalog
from .results import CancelToken, Progress, ScanCancelled

VERIFY_CHUNK = 512          # most pairs one verifier call scores (a cancel waits for at most a few)
VERIFY_THREADS_MAX = 8


def check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ScanCancelled()


def embedding_verifier(catalog: Catalog, pairs: np.ndarray, cosine: np.ndarray) -> tuple[np.ndarray, str]:
    """A verifier that uses the embedding score only (synthetic catalogs, tests, benchmarks)."""
    return embedding_pair_scores(catalog, pairs, cosine), "embedding"


def verify_pairs(catalog: Catalog, pairs: np.ndarray, cosine: np.ndarray) -> tuple[np.ndarray, str]:
    """Scores in [0, 1] for image-id ``pairs`` [m, 2], the same score search shows.

    ``cosine`` holds each pair's embedding cosine where the kNN graph already measured it (NaN
    elsewhere). Uses the match-quality verifier (stored embeddings + local features) when the
    engine has it, else the embedding score; each pair alone, measured with its newer image as
    the query as :func:`pair_evidence` does. Returns (scores, name of the scorer)."""
    return np.asarray(match_policy.pair_scores(catalog, newer_first(pairs).tolist()), np.float64), "verified"


def newer_first(pairs: np.ndarray) -> np.ndarray:
    """Image-id ``pairs`` [m, 2] as (newer, older): the larger id, the image added later, first."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return np.stack([pairs.max(axis=1), pairs.min(axis=1)], axis=1)


def pair_evidence(catalog: Catalog, pairs: np.ndarray, cosine: np.ndarray | None = None
                  ) -> tuple[np.ndarray, str]:
    """:func:`engine.match_policy.pair_evidence` in the verifier form ``verify_parallel``
    takes: (evidence [m, len(EVIDENCE)], scorer name), measured with each pair's *newer* image
    (the larger id) as the query and the older one as the candidate, as a search with the image
    that arrived later measures it (see :func:`competing_scores`). ``cosine`` is not needed: the
    evidence holds the exact cosine from the stored embeddings."""
    return match_policy.pair_evidence(catalog, newer_first(pairs)), "verified"


def embedding_pair_scores(catalog: Catalog, pairs: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    """``scoring.embedding_score`` of each pair's stored embeddings. Where the kNN query measured
    the cosine on full vectors it is exact and reused; the rest (NaN: a projected index, confirmed
    pairs the graph did not reach) are computed from the embeddings stored in the database."""
    cosine = np.array(cosine, dtype=np.float64, copy=True)
    todo = np.nonzero(np.isnan(cosine))[0]
    if todo.size:
        ids = np.unique(pairs[todo])
        vecs = catalog.embeddings(ids.tolist())
        pos = {int(i): n for n, i in enumerate(ids)}
        a = vecs[[pos[int(x)] for x in pairs[todo, 0]]]
        b = vecs[[pos[int(x)] for x in pairs[todo, 1]]]
        cosine[todo] = np.einsum("ij,ij->i", a, b)
    return np.asarray(scoring.embedding_score(cosine), np.float64)


#: query images re-checked per chunk of :func:`_dense_recheck` (each is decoded: ~20 ms)
DENSE_CHUNK_IMAGES = 8


def recheck_unconfirmed(catalog: Catalog, pairs: np.ndarray, evidence: np.ndarray, todo: np.ndarray,
                   progress: Progress | None, cancel: CancelToken | None) -> int:
    """:func:`engine.match_policy.dense_recheck` of the pairs ``todo`` (newer image as the query,
    as :func:`pair_evidence` measured them) in place in ``evidence``, on the verification threads,
    a few query images per chunk. A query image that any row of ``evidence`` already confirms as a
    copy of an older image (pairs verified earlier included) is not re-checked. Returns how many
    images were re-checked."""
    copies = match_policy.confirms_copy(evidence[:, 1], evidence[:, 3])
    todo = todo[~np.isin(pairs[todo].max(axis=1), pairs[copies].max(axis=1))]
    newer = newer_first(pairs[todo])
    rows = todo[match_policy.dense_recheck_rows(newer, evidence[todo])]
    if not len(rows):
        return 0
    query = np.maximum(pairs[rows, 0], pairs[rows, 1])
    start = np.r_[0, np.nonzero(query[1:] != query[:-1])[0] + 1]      # rows come by query image
    bounds = np.r_[start[::DENSE_CHUNK_IMAGES], len(rows)]
    chunks = [rows[a:b] for a, b in pairwise(bounds.tolist())]
    images = len(start)

    def in_images(done: int, total: int, stage: str) -> None:
        # the chunks hold whole images: count images, not their pairs
        progress(images if done >= total else done * images // max(total, 1), images, stage)

    verify_parallel(catalog, dense_verifier, pairs, evidence, rows, evidence, in_images if progress else None,
                     cancel, chunks=chunks, stage="re-checking unmatched images")
    return images


def dense_verifier(catalog: Catalog, pairs: np.ndarray, evidence: np.ndarray) -> tuple[np.ndarray, str]:
    return match_policy.dense_recheck(catalog, newer_first(pairs), evidence), "verified"


def verify_workers() -> int:
    """Threads that verify pairs: one per core (ORB matching and RANSAC run in OpenCV with the
    GIL released, so threads scale on the cores)."""
    return max(1, min(VERIFY_THREADS_MAX, os.cpu_count() or 1))


_pool = None
_pool_lock = threading.Lock()


def _verify_pool(workers: int):
    """One process-wide pool, so repeated scans reuse its threads (and their per-thread catalog
    connections) instead of opening new ones every scan."""
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=verify_workers(), thread_name_prefix="dupes-verify")
        return _pool


def verify_parallel(catalog: Catalog, verifier, pairs: np.ndarray, cosine: np.ndarray, todo: np.ndarray,
                     scores: np.ndarray, progress: Progress | None, cancel: CancelToken | None, *,
                     chunks: list[np.ndarray] | None = None, stage: str = "verifying pairs") -> set[str]:
    """Score ``pairs[todo]`` into ``scores[todo]`` in chunks of up to VERIFY_CHUNK pairs spread over
    :func:`verify_workers` threads (a chunk is one verifier call, ``verifier(catalog, pairs[sel],
    cosine[sel])``, so its images' stored features are read once per chunk; ``cosine`` may be any
    per-pair array the verifier takes, ``chunks`` the caller's split of ``todo``). Cancel is checked
    between chunks; progress is reported as ``stage``. Returns the scorer names."""
    from concurrent.futures import FIRST_COMPLETED, wait

    names: set[str] = set()
    if len(todo) == 0:
        return names
    if chunks is None:
        # small enough that every worker gets several, large enough to share feature reads
        size = max(64, min(VERIFY_CHUNK, -(-len(todo) // (4 * verify_workers()))))
        chunks = [todo[n:n + size] for n in range(0, len(todo), size)]
    workers = min(verify_workers(), len(chunks))
    done = 0
    if workers == 1:
        for sel in chunks:
            check_cancel(cancel)
            s, name = verifier(catalog, pairs[sel], cosine[sel])
            scores[sel] = s
            names.add(name)
            done += len(sel)
            if progress:
                progress(done, len(todo), stage)
        return names
    pending = iter(chunks)
    pool = _verify_pool(workers)
    running = {pool.submit(verifier, catalog, pairs[sel], cosine[sel]): sel
               for sel in [next(pending) for _ in range(min(2 * workers, len(chunks)))]}
    try:
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                sel = running.pop(fut)
                s, name = fut.result()
                scores[sel] = s
                names.add(name)
                done += len(sel)
            check_cancel(cancel)
            for _ in finished:
                sel = next(pending, None)
                if sel is not None:
                    running[pool.submit(verifier, catalog, pairs[sel], cosine[sel])] = sel
            if progress:
                progress(done, len(todo), stage)
    finally:
        # cancelled or failed: nothing may still use the catalog once the scan has returned
        for fut in running:
            fut.cancel()
        wait(running)
    return names
