"""Candidate pairs of a scan: never all pairs, so memory and time grow with the catalog.

* the k-nearest-neighbour graph of the HNSW index (:func:`knn_candidates`): every image's stored
  embedding is queried in batches for its ``k`` nearest neighbours, and a pair is kept when its
  cosine is at least a loose ``floor``; an image whose k-th neighbour is still nearly identical
  (``expand_above``) is queried again with a larger k, so a photo with hundreds of copies keeps
  them all;
* byte-identical files (:func:`hash_pairs`);
* turned copies, which embed far from their original (:func:`turned_pairs`: the match policy's
  turned pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .. import match_policy, visual_words
from ..catalog import Catalog
from ..feature_store import decode, features_for
from ..features import content, dense_of
from ..visual_words import RankedCandidates, WordIndex
from .results import CancelToken, Progress
from .verifying import check_cancel

if TYPE_CHECKING:
    from ..model import Model

DEFAULT_K = 10              # neighbours per image in the candidate graph: search verifies as many (VERIFY_TOP)
CANDIDATE_FLOOR = 0.5       # loosest embedding cosine a candidate pair may have
EXPAND_ABOVE = 0.97         # re-query an image with a larger k while its k-th neighbour is this close
MAX_K = 1024
SEARCH_EF = 64              # HNSW search breadth for the graph (copies are close: a narrow search finds them)
QUERY_BATCH = 2000
HASH_CLIQUE_MAX = 200       # byte-identical images: all pairs up to this many, a star beyond


def pair_key(a: int, b: int) -> int:
    lo, hi = (a, b) if a < b else (b, a)
    return (lo << 32) | hi


def pair_keys(pairs: np.ndarray) -> np.ndarray:
    """One int64 per (lo, hi) pair, for set operations."""
    return (pairs[:, 0].astype(np.int64) << 32) | pairs[:, 1].astype(np.int64)


def unique_pairs(a: np.ndarray, b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.stack([lo, hi], axis=1).astype(np.int64)
    if len(pairs) == 0:
        return pairs.reshape(0, 2), s.astype(np.float64)
    if pairs.max() < 2 ** 31:
        _, first = np.unique(pair_keys(pairs), return_index=True)
    else:
        _, first = np.unique(pairs, axis=0, return_index=True)
    return pairs[first], s[first].astype(np.float64)


def knn_candidates(catalog: Catalog, index, *, since_version: int, k: int, floor: float,
                    expand_above: float, ef: int | None, progress: Progress | None, cancel: CancelToken | None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """(pairs [m, 2] smaller id first, their embedding cosines, images queried): the kNN graph's
    candidate pairs of the images written after ``since_version`` against the whole index."""
    total = catalog.count_images(since_version)
    n_index = len(index)
    parts_a, parts_b, parts_s = [], [], []
    done = 0
    if progress:
        progress(0, total, "finding neighbours")
    for ids, vecs in catalog.iter_embeddings(batch=QUERY_BATCH, since_version=since_version):
        check_cancel(cancel)
        kk = min(k + 1, n_index)                          # +1: an image finds itself
        labels, sims = query_index(index, vecs, kk, ef)
        rows = np.arange(len(ids))
        while True:
            a = np.repeat(ids[rows], labels.shape[1])
            b, s = labels.ravel(), sims.ravel()
            keep = (s >= floor) & (a != b)
            parts_a.append(a[keep])
            parts_b.append(b[keep])
            parts_s.append(s[keep])
            # images whose k-th neighbour is still a near-identical copy: look further
            if labels.shape[1] == 0 or kk >= min(MAX_K, n_index):
                break
            deep = np.nonzero(sims[:, -1] >= expand_above)[0]
            if deep.size == 0:
                break
            rows = rows[deep]
            wider = min(kk * 4, MAX_K, n_index)
            labels, sims = query_index(index, vecs[rows], wider, ef)
            if labels.shape[1] <= kk:                      # the graph cannot give more
                break
            kk = labels.shape[1]
        done += len(ids)
        if progress:
            progress(done, total, "finding neighbours")
    if not parts_a:
        return np.zeros((0, 2), np.int64), np.zeros(0), 0
    pairs, cos = unique_pairs(np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_s))
    return pairs, cos, done


def query_index(index, vecs: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """index.query, asking for fewer neighbours when hnswlib cannot return k for every query (it
    raises when part of the graph is unreachable, e.g. a tight clump of hundreds of copies)."""
    while True:
        try:
            return index.query(vecs, k, ef=ef)
        except RuntimeError:
            if k <= 1:
                return np.zeros((len(vecs), 0), np.int64), np.zeros((len(vecs), 0), np.float32)
            k //= 2


def hash_pairs(catalog: Catalog, since_version: int) -> np.ndarray:
    """Pairs of byte-identical images (all pairs of a small set, a star around the oldest beyond)."""
    out = []
    for ids in catalog.same_content_groups(since_version):
        if len(ids) <= HASH_CLIQUE_MAX:
            out += [(a, b) for n, a in enumerate(ids) for b in ids[n + 1:]]
        else:
            out += [(ids[0], b) for b in ids[1:]]
    return np.array(out, np.int64).reshape(-1, 2)


#: images embedded turned per model call of :func:`turned_pairs` (3 rotations each)
TURNED_CHUNK_IMAGES = 8
#: 90, 180 and 270 degrees counter-clockwise (np.rot90's k = 1, 2, 3; OpenCV's is 8x faster)
_TURNS = (cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_CLOCKWISE)


@dataclass
class TurnedCandidates:
    pairs: np.ndarray        # new candidate pairs [m, 2] (smaller id first)
    queried: int             # images searched for turned copies (embedded turned, or by their words)


def word_turned_pairs(catalog: Catalog, words: WordIndex, ranked: RankedCandidates, pairs: np.ndarray,
                      evidence: np.ndarray, ignored: np.ndarray) -> TurnedCandidates:
    """Candidate pairs for turned copies from the visual words, in catalogs that have them
    (the match policy's turned pass without a model), for every image the words ranked
    candidates for that is not settled (:func:`engine.match_policy.settled_images` of
    ``evidence``), unless already candidates or marked "not a duplicate":

    - its candidates ranked from visual_words.TOP to RESERVE_TOP, and those of the images that
      rank it there (the ranking is not symmetric): a turned photo under blur shares fewer words;
    - the RESERVE_TOP images that the words of its stored dense keypoints rank best: text laid
      over a turned copy takes most of its stored keypoints, as it does for the dense re-check.

    The words are rotation invariant, so this costs the verification of a few more pairs instead of
    embedding each unsettled image three times."""
    settled = np.fromiter(match_policy.settled_images(pairs, evidence), np.int64)
    unsettled = ~np.isin(ranked.query, settled)
    sel = (unsettled | ~np.isin(ranked.other, settled)) & (ranked.rank >= visual_words.TOP)
    queried = np.unique(ranked.query[unsettled])
    dense = {}
    for i, f in features_for(catalog, queried.tolist(), dense=True, compute_missing=False).items():
        d = dense_of(f)
        if d is not None:
            dense[i] = d.descriptors
    by_dense = words.ranked_by_descriptors(dense, top=visual_words.RESERVE_TOP)
    more = RankedCandidates(np.concatenate([ranked.query[sel], by_dense.query]),
                            np.concatenate([ranked.other[sel], by_dense.other]),
                            np.zeros(int(sel.sum()) + len(by_dense.rank), np.int64)).pairs(1)
    known = [pair_keys(p) for p in (pairs, ignored) if len(p)]
    if known and len(more):
        more = more[~np.isin(pair_keys(more), np.concatenate(known))]
    return TurnedCandidates(more, len(queried))


def turned_pairs(catalog: Catalog, index, model: Model, pairs: np.ndarray, evidence: np.ndarray, since: int,
                  ignored: np.ndarray, progress: Progress | None, cancel: CancelToken | None) -> TurnedCandidates:
    """Candidate pairs for turned copies (the match policy's turned pass): every image scanned
    (all, or those added since version ``since``) that is not settled
    (:func:`engine.match_policy.settled_images` of ``evidence``) is decoded, its content (inside a uniform border, as search embeds a
    query) embedded turned by 90, 180 and 270 degrees, and its ROTATED_TOP nearest images for
    each become candidate pairs, unless already candidates or marked "not a duplicate". Images
    whose file cannot be read are skipped."""
    settled = match_policy.settled_images(pairs, evidence)
    scanned = catalog.image_paths(since)
    todo = [(int(i), p) for i, p in scanned if int(i) not in settled]
    none = TurnedCandidates(np.zeros((0, 2), np.int64), 0)
    if not todo or match_policy.ROTATED_TOP <= 0:
        return none
    known = set(pair_keys(pairs).tolist())
    if len(ignored):
        known.update(pair_keys(ignored).tolist())
    found: set[tuple[int, int]] = set()
    queried = 0
    for start in range(0, len(todo), TURNED_CHUNK_IMAGES):
        check_cancel(cancel)
        ids, images = [], []
        for image_id, path in todo[start:start + TURNED_CHUNK_IMAGES]:
            rgb = decode(path, model.resize_short_side)
            if rgb is None:
                continue
            rgb = content(rgb)
            ids.append(image_id)
            images.extend(cv2.rotate(rgb, r) for r in _TURNS)
        if images:
            _, embs = model.run(images)
            labels, _ = query_index(index, embs, min(match_policy.ROTATED_TOP + 1, len(index)), SEARCH_EF)
            for n, image_id in enumerate(ids):
                for other in labels[3 * n: 3 * n + 3].ravel().tolist():
                    pair = (min(image_id, other), max(image_id, other))
                    if other != image_id and pair_key(*pair) not in known:
                        found.add(pair)
            queried += len(ids)
        if progress:
            progress(min(start + TURNED_CHUNK_IMAGES, len(todo)), len(todo), "searching turned images")
    return TurnedCandidates(np.array(sorted(found), np.int64).reshape(-1, 2), queried)
