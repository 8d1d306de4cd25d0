"""Candidate pairs for the duplicate finder that the CNN embedding cannot give: copies turned by
90/180/270 degrees (and turned mirrored ones), found from the stored ORB descriptors.

The embedding is not rotation invariant, so a turned copy is not among its original's nearest
neighbours; ORB descriptors are (each keypoint is described in its own orientation), and every
catalog image stores them and those of its mirrored image (engine.features). Each descriptor
is hashed into a *visual word* by sampling WORD_BITS of its 256 bits (bit-sampling LSH for
Hamming distance), in TABLES independent tables. An image is a bag of its words; two images score
the tf-idf overlap of their bags (each word weighted by log(n / images holding it); words held by
one image or by more than MAX_DF images are ignored), plus the overlap of one image's mirrored bag
with the other's plain bag. Every queried image proposes its TOP best-scoring other images as
candidate pairs, whatever their embedding cosine; the duplicate finder verifies them like the kNN
graph's pairs. The scan keeps the index (:class:`WordIndex`) for its turned pass, which adds an
unsettled image's candidates ranked below RESERVE_TOP and ranks the catalog by the words of its
dense keypoints (:meth:`WordIndex.ranked_by_descriptors`).

Measured on the Luma duplicate benchmark (docs/duplicates.md): of the 25 true pairs the kNN graph
misses (24 turned copies), 23 are among these candidates, for 639 pairs the graph did not already
hold (+5% verification) and ~2 s CPU for 937 images. The cost grows faster than the catalog (the
products of the inverted lists), so it runs only up to MAX_IMAGES images.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .features import FEATURES_VERSION

#: independent hash tables (bit samples)
TABLES = 8
#: bits per word at up to 1,000 images; one more per doubling of the catalog, so that a word's
#: expected number of images stays about the same
BASE_BITS = 20
#: words held by more images than this are ignored (background and edge patterns: no evidence,
#: and the cost of a word grows with the square of its images)
MAX_DF = 50
#: candidate pairs each queried image proposes (its best-scoring other images)
TOP = 2
#: ranked candidates kept per queried image for the scan's turned pass (:meth:`WordIndex.ranked`):
#: an image that nothing confirms and nothing is close to gets up to this many (its turned copy or
#: original can rank below the first TOP: a turned photo under text or blur shares fewer words)
RESERVE_TOP = 4
#: catalogs larger than this get no word candidates (cost and memory, docs/duplicates.md)
MAX_IMAGES = 10_000
#: images whose scores are accumulated together (a dense [ROW_BATCH, n] array per thread)
ROW_BATCH = 128
#: threads that build the tables and score batches of images side by side (at most one per core)
THREADS_MAX = 4
_SEED = 20_240_917
_ROW_BITS = 24          # image rows packed under the word in one int64 (MAX_IMAGES < 2 ** 24)


def word_bits(n_images: int) -> int:
    return BASE_BITS + max(0, math.ceil(math.log2(max(n_images, 1) / 1000)))


def _bit_positions(bits: int) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    return np.stack([rng.choice(256, bits, replace=False) for _ in range(TABLES)])


def _words(descriptors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """[TABLES, m] uint32 words of m ORB descriptors (uint8 [m, 32]): bit j of a table's word is
    bit positions[table, j] of the descriptor (numpy's unpackbits order: bit 7 - p % 8 of byte
    p // 8). Per table and descriptor byte holding sampled bits, a 256-entry table gives that
    byte's share of the word (a gather per byte, not the 256 unpacked bits of every descriptor)."""
    descriptors = np.ascontiguousarray(descriptors, np.uint8)
    values = np.arange(256, dtype=np.uint32)
    words = np.zeros((positions.shape[0], descriptors.shape[0]), np.uint32)
    for t, table in enumerate(positions):
        for byte in np.unique(table // 8).tolist():
            share = np.zeros(256, np.uint32)
            for j in np.nonzero(table // 8 == byte)[0].tolist():
                share |= ((values >> np.uint32(7 - table[j] % 8)) & np.uint32(1)) << np.uint32(j)
            words[t] |= share[descriptors[:, byte]]
    return words


def _load(catalog, ids: list[int], positions: np.ndarray, cancel) -> tuple:
    """Words of every image's plain and mirrored descriptors: (per table: plain words [m] uint32;
    their image rows [m]; per table: mirrored words [m']; their image rows [m']). An image
    without stored features (its import's feature pass has not reached it) has them computed from
    its file for this scan, as search does."""
    plain_w, plain_r, mirr_w, mirr_r = [], [], [], []
    row_of = {i: r for r, i in enumerate(ids)}
    for start in range(0, len(ids), 500):
        if cancel is not None and cancel.is_set():
            return None
        chunk = ids[start:start + 500]
        descs, rows, mdescs, mrows = [], [], [], []
        blobs = catalog.local_feature_blobs(chunk, FEATURES_VERSION)
        missing = [i for i in chunk if i not in blobs]
        if missing:
            blobs.update(_computed_blobs(catalog, missing))
        for i, (_, desc, mirrored) in blobs.items():
            if len(desc) % 32:                 # damaged (check reports it): the image gets no words
                continue
            d = np.frombuffer(desc, np.uint8).reshape(-1, 32)
            descs.append(d)
            rows.append(np.full(len(d), row_of[i], np.int32))
            if mirrored is not None and len(mirrored) == len(desc):
                m = np.frombuffer(mirrored, np.uint8).reshape(-1, 32)
                m = m[m.any(axis=1)]
                mdescs.append(m)
                mrows.append(np.full(len(m), row_of[i], np.int32))
        if descs:
            plain_w.append(_words(np.concatenate(descs), positions))
            plain_r.append(np.concatenate(rows))
        if mdescs:
            mirr_w.append(_words(np.concatenate(mdescs), positions))
            mirr_r.append(np.concatenate(mrows))
    def per_table(chunks: list) -> list[np.ndarray]:
        # one array per table, so each can be freed once its table is built
        return [np.concatenate([c[t] for c in chunks]) if chunks else np.zeros(0, np.uint32)
                for t in range(TABLES)]

    empty_r = np.zeros(0, np.int32)
    return (per_table(plain_w), np.concatenate(plain_r) if plain_r else empty_r,
            per_table(mirr_w), np.concatenate(mirr_r) if mirr_r else empty_r)


def _computed_blobs(catalog, ids: list[int]) -> dict[int, tuple[bytes, bytes, bytes | None]]:
    """Blobs of the features of images lacking stored ones, computed from their files (not
    stored: a scan never writes them); unreadable files are left out."""
    from .feature_store import features_for
    from .features import pack, pack_mirrored

    return {i: (b"", pack(f)[1], pack_mirrored(f))
            for i, f in features_for(catalog, ids).items()}


def _unique(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values of int64 ``x`` and their counts (by sorting: numpy's hash-based
    unique is ~10x slower on millions of distinct values)."""
    x = np.sort(x, kind="stable")
    if x.size == 0:
        return x, np.zeros(0, np.int64)
    start = np.concatenate([[0], np.nonzero(x[1:] != x[:-1])[0] + 1])
    return x[start], np.diff(np.concatenate([start, [x.size]]))


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated aranges [starts[i], starts[i] + lens[i])."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = starts - np.concatenate([[0], np.cumsum(lens)[:-1]])
    return np.repeat(shift, lens) + np.arange(total)


@dataclass
class _Lists:
    """Entries (word index, image row) grouped two ways: by word (postings) and by row (bags)."""
    word_ptr: np.ndarray        # [V + 1] into post_rows
    post_rows: np.ndarray
    row_ptr: np.ndarray         # [n + 1] into bag_words
    bag_words: np.ndarray

    @classmethod
    def build(cls, word_idx: np.ndarray, rows: np.ndarray, n_words: int, n: int) -> "_Lists":
        """From entries sorted by (word index, row), as the callers' codes sort them."""
        by_row = np.lexsort((word_idx, rows))
        return cls(np.concatenate([[0], np.cumsum(np.bincount(word_idx, minlength=n_words))]),
                   rows.astype(np.int32),
                   np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]),
                   word_idx[by_row].astype(np.int32))


@dataclass
class _Table:
    vocab: np.ndarray           # the kept words, sorted
    weight: np.ndarray          # idf ** 2 per kept word
    plain: _Lists
    mirrored: _Lists


def _table(n: int, plain_w, plain_r, mirr_w, mirr_r) -> _Table:
    """One hash table's kept vocabulary (words of 2..MAX_DF images) and its inverted lists."""
    code, _ = _unique((plain_w.astype(np.int64) << _ROW_BITS) | plain_r)
    words, rows = code >> _ROW_BITS, code & ((1 << _ROW_BITS) - 1)
    vocab, df = _unique(words)
    keep = (df >= 2) & (df <= MAX_DF)
    entry = np.repeat(keep, df)
    vocab, df = vocab[keep], df[keep]
    idx = np.repeat(np.arange(len(vocab)), df)
    plain = _Lists.build(idx, rows[entry], len(vocab), n)
    code, _ = _unique((mirr_w.astype(np.int64) << _ROW_BITS) | mirr_r)
    words, rows = code >> _ROW_BITS, code & ((1 << _ROW_BITS) - 1)
    at = np.searchsorted(vocab, words)
    known = at < len(vocab)
    known[known] = vocab[at[known]] == words[known]
    mirrored = _Lists.build(at[known], rows[known], len(vocab), n)
    return _Table(vocab, (np.log(n / df) ** 2).astype(np.float64), plain, mirrored)


def _accumulate(scores: np.ndarray, batch: np.ndarray, bags: _Lists, postings: _Lists,
                weight: np.ndarray, n: int) -> None:
    """scores[b, j] += sum of weight[w] over the words w in image batch[b]'s bag (``bags``) that
    image j holds (``postings``)."""
    lens = bags.row_ptr[batch + 1] - bags.row_ptr[batch]
    words = bags.bag_words[_ranges(bags.row_ptr[batch], lens)]
    query = np.repeat(np.arange(len(batch)), lens)
    hits = postings.word_ptr[words + 1] - postings.word_ptr[words]
    other = postings.post_rows[_ranges(postings.word_ptr[words], hits)]
    flat = np.repeat(query, hits) * n + other
    scores += np.bincount(flat, weights=np.repeat(weight[words], hits),
                          minlength=scores.size).reshape(scores.shape)


def covers(n_images: int) -> bool:
    """Whether a catalog of ``n_images`` gets visual-word candidates (2 to MAX_IMAGES images)."""
    return 2 <= n_images <= MAX_IMAGES


@dataclass
class RankedCandidates:
    """Each queried image's best-scoring other images, best first: ``query[m]``, ``other[m]`` (image
    ids) and ``rank[m]`` (0 = the best of that query's)."""
    query: np.ndarray
    other: np.ndarray
    rank: np.ndarray

    def pairs(self, below: int) -> np.ndarray:
        """Unique (lo, hi) pairs [m, 2] of the candidates ranked below ``below``."""
        sel = self.rank < below
        if not sel.any():
            return np.zeros((0, 2), np.int64)
        a, b = self.query[sel], self.other[sel]
        return np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)


def candidate_pairs(catalog, query_ids: Sequence[int] | None = None, *, top: int = TOP,
                    cancel=None, progress: Callable[[int, int, str], None] | None = None) -> np.ndarray:
    """Pairs (lo, hi) [m, 2]: for each queried image (all by default) the ``top`` catalog images
    whose visual words agree best with its own or its mirrored image's (see the module
    docstring). Images without stored local features have them computed from their files.
    Empty beyond MAX_IMAGES."""
    return ranked_candidates(catalog, query_ids, top=top, cancel=cancel, progress=progress).pairs(top)


def ranked_candidates(catalog, query_ids: Sequence[int] | None = None, *, top: int = TOP,
                      cancel=None, progress: Callable[[int, int, str], None] | None = None) -> RankedCandidates:
    """For each queried image (all by default), the ``top`` catalog images whose visual words agree
    best with its own or its mirrored image's, ranked (ties: the lower image row first); images
    sharing no word are left out. Empty beyond MAX_IMAGES or when cancelled."""
    index = build_index(catalog, cancel=cancel, progress=progress,
                        queried=None if query_ids is None else len(query_ids))
    if index is None:
        return _EMPTY
    return index.ranked(query_ids, top=top, cancel=cancel, progress=progress)


_NONE = np.zeros(0, np.int64)
_EMPTY = RankedCandidates(_NONE, _NONE, _NONE)


def _workers() -> int:
    return max(1, min(THREADS_MAX, os.cpu_count() or 1))


def build_index(catalog, *, cancel=None, progress: Callable[[int, int, str], None] | None = None,
                queried: int | None = None) -> WordIndex | None:
    """The visual words of every catalog image (:class:`WordIndex`); None beyond MAX_IMAGES or
    when cancelled. ``queried``: how many images the caller will rank (progress)."""
    ids = catalog.image_ids()
    n = len(ids)
    if not covers(n):
        return None
    if progress:
        progress(0, n if queried is None else queried, "matching visual words")
    positions = _bit_positions(word_bits(n))
    loaded = _load(catalog, ids, positions, cancel)
    if loaded is None:
        return None
    plain_w, plain_r, mirr_w, mirr_r = loaded

    def build(t: int) -> _Table | None:
        words, mirrored_words, plain_w[t], mirr_w[t] = plain_w[t], mirr_w[t], None, None    # freed once built
        if cancel is not None and cancel.is_set():
            return None
        return _table(n, words, plain_r, mirrored_words, mirr_r)

    with ThreadPoolExecutor(max_workers=_workers()) as pool:      # sorting runs without the GIL
        tables = list(pool.map(build, range(TABLES)))
    if cancel is not None and cancel.is_set():
        return None
    return WordIndex(np.asarray(ids, np.int64), positions, tables)


@dataclass
class WordIndex:
    """A catalog's images as bags of visual words (image rows in the order of ``ids``), built once
    by :func:`build_index` and queried by stored image or by any descriptors."""
    ids: np.ndarray
    positions: np.ndarray       # the bits each table samples
    tables: list[_Table]

    def ranked(self, query_ids: Sequence[int] | None = None, *, top: int = TOP, cancel=None,
               progress: Callable[[int, int, str], None] | None = None) -> RankedCandidates:
        """For each queried catalog image (all by default), the ``top`` images whose words agree
        best with its own or its mirrored image's (plain ~ plain, plain ~ mirrored, mirrored ~
        plain), best first."""
        n = len(self.ids)
        row_of = {int(i): r for r, i in enumerate(self.ids)}
        rows = np.arange(n) if query_ids is None else np.array(
            sorted({row_of[int(i)] for i in query_ids if int(i) in row_of}), np.int64)

        def score(batch: np.ndarray) -> np.ndarray:
            scores = np.zeros((len(batch), n))
            for tb in self.tables:
                _accumulate(scores, batch, tb.plain, tb.plain, tb.weight, n)       # plain ~ plain
                _accumulate(scores, batch, tb.plain, tb.mirrored, tb.weight, n)    # it ~ a mirrored image
                _accumulate(scores, batch, tb.mirrored, tb.plain, tb.weight, n)    # its mirrored image ~
            scores[np.arange(len(batch)), batch] = 0.0
            return scores

        return self._best(rows, self.ids[rows], score, top, cancel, progress)

    def ranked_by_descriptors(self, descriptors: Mapping[int, np.ndarray], *, top: int = TOP,
                              cancel=None) -> RankedCandidates:
        """For each image id -> ORB descriptors [m, 32] (e.g. a stored image's dense keypoints),
        the ``top`` catalog images whose plain or mirrored words agree best with those of the
        descriptors, best first (the image itself left out)."""
        n = len(self.ids)
        query = [int(i) for i in descriptors if len(descriptors[i])]
        if not query:
            return _EMPTY
        row_of = {int(i): r for r, i in enumerate(self.ids)}
        words = _words(np.concatenate([np.asarray(descriptors[i], np.uint8).reshape(-1, 32) for i in query]),
                       self.positions)
        owner = np.repeat(np.arange(len(query)), [len(descriptors[i]) for i in query])
        bags = []
        for t, tb in enumerate(self.tables):
            at = np.searchsorted(tb.vocab, words[t])
            known = at < len(tb.vocab)
            known[known] = tb.vocab[at[known]] == words[t][known]
            code, _ = _unique((at[known].astype(np.int64) << _ROW_BITS) | owner[known])
            bags.append(_Lists.build(code >> _ROW_BITS, code & ((1 << _ROW_BITS) - 1), len(tb.vocab), len(query)))
        itself = np.array([row_of.get(i, -1) for i in query])

        def score(batch: np.ndarray) -> np.ndarray:
            scores = np.zeros((len(batch), n))
            for tb, bag in zip(self.tables, bags):
                _accumulate(scores, batch, bag, tb.plain, tb.weight, n)         # it ~ an image
                _accumulate(scores, batch, bag, tb.mirrored, tb.weight, n)      # it ~ a mirrored image
            mine = itself[batch] >= 0
            scores[np.nonzero(mine)[0], itself[batch][mine]] = 0.0
            return scores

        return self._best(np.arange(len(query)), np.asarray(query, np.int64), score, top, cancel, None)

    def _best(self, queries: np.ndarray, query_ids: np.ndarray, score, top: int, cancel,
              progress) -> RankedCandidates:
        """Rank the ``top`` best-scoring images of each query (``score(batch of queries) -> [batch,
        n]``; ``query_ids[i]`` is the image id reported for ``queries[i]``), in batches of
        ROW_BATCH on threads (np.bincount runs without the GIL)."""
        n = len(self.ids)
        k = min(top, n - 1)
        if k < 1 or not len(queries):
            return _EMPTY

        def best_of(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            batch = queries[start:start + ROW_BATCH]
            scores = score(batch)
            best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(scores, best, axis=1)
            order = np.lexsort((best, -best_scores), axis=1)        # by score, then row
            best, best_scores = np.take_along_axis(best, order, 1), np.take_along_axis(best_scores, order, 1)
            hit = (best_scores > 0).ravel()
            who = query_ids[start:start + ROW_BATCH]
            return np.repeat(who, k)[hit], self.ids[best.ravel()[hit]], np.tile(np.arange(k), len(batch))[hit]

        starts = range(0, len(queries), ROW_BATCH)
        out = []
        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            running = [pool.submit(best_of, s) for s in starts]
            try:
                for fut in running:
                    if cancel is not None and cancel.is_set():
                        return _EMPTY
                    out.append(fut.result())
                    if progress:
                        progress(min(len(out) * ROW_BATCH, len(queries)), len(queries), "matching visual words")
            finally:
                for fut in running:
                    fut.cancel()
        return RankedCandidates(*(np.concatenate(parts) for parts in zip(*out))) if out else _EMPTY
