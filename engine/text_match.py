"""Matching the words read on a query photo to the catalog's product text.

A :class:`ProductTextIndex` holds one *document* per product: the words (engine.text_reading.
normalise_words) of its title, brand, category, SKU and GTIN, plus the words read on its images
at import (``ingest(read_text=True)``) where there are any. Descriptions are left out: long
generic prose matches noise more than it names the product. An image without a product is a
document of its own when words were read on it; it has no product text.

Words are weighted by IDF over the documents, so a rare word (a brand, a product name) counts
more than a common one ("juice", "1l"). A query word matches a product word when they are equal,
close in spelling (OCR misreads), or one holds the other (words the OCR ran together,
"BLANUOLKMELLANMJOLK", or a piece of a long product word); see :func:`word_similarity`.

The score of a document is absolute, in [0, 1], comparable across queries::

    weight(w) = idf(w) / idf_max,  idf(w) = ln((N + 1) / (df(w) + 0.5)),  idf_max = ln((N + 1) / 1.5)
    score     = 1 - exp(-sum over matched document words w of weight(w) * similarity(w) / SATURATION)

N documents, df(w) of them holding w; a word in one document weighs 1, a word in every document
about 0. Each document word counts once, for its best query word, and each query word once per
document (its best whole-word match, or the distinct words it holds when run together). So one
rare word matched exactly scores 0.63, two 0.86, three 0.95, and a common word alone little.
Why matched weight and not coverage (matched weight over the document's weight): on the grocery
val split the right product's score separated from the wrong ones' better (pooled average
precision over all (query, product) pairs of the Packages queries: 0.58, against 0.43 for the
coverage of the product's data words and 0.26 for the coverage of all its words), because a
product's text holds many words a photo never shows (its category, the catalog photo's small
print). SATURATION only maps the weight to [0, 1]; figures: benchmarks/text_match_grocery.py.

Build once per catalog version with :func:`text_index` (cached; about 0.6 s for 10,000
products). Matching is thread-safe; in a search, ask for the candidates
(:meth:`ProductTextIndex.for_candidates`) or the best few (``match(words, limit=50)``): a common
word matches thousands of products, and each matched product is an object.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from .text_reading import fold, normalise_words, number_word

__all__ = ["ProductTextIndex", "TextMatch", "WordMatch", "product_words", "text_index", "word_similarity"]

#: score = 1 - exp(-matched weight / SATURATION) (module docstring)
SATURATION = 1.0

# the rules of word_similarity
FUZZY_RATIO = 80          # the same word misread: rapidfuzz ratio >= 80 (one error in five letters)
INSIDE_MIN = 4            # a product word of at least 4 letters inside a longer run-together query
INSIDE_CREDIT = 0.9       # ... word counts 0.9 (a longer word may hold it by chance)
PIECE_MIN = 5             # a query word of at least 5 letters, a piece of a longer product word,
                          # ... counts its share of the product word's letters
ONE_EDIT_MIN = 8          # inside or a piece: words this long may have one letter wrong, added or missing

WHOLE, INSIDE, PIECE = 0, 1, 2      # how a query word matched a product word


class WordMatch(NamedTuple):
    query: str            # the word read on the query
    product: str          # the document's word it matched
    similarity: float     # 0-1 (word_similarity)
    weight: float         # the product word's IDF weight, relative to the rarest possible (0-1]
    on_photo: bool        # the word was read on the product's photos, not in its data


@dataclass(frozen=True)
class TextMatch:
    score: float                      # 0-1, see the module docstring
    words: tuple[WordMatch, ...]      # the matched product words, heaviest first

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """(query word, product word) of each match: what to show as "why"."""
        return [(w.query, w.product) for w in self.words]


# ---------------------------------------------------------------------- one pair of words
def word_similarity(query: str, word: str) -> float:
    """How well a word read on a query matches a product word, 0-1. Words with digits
    (quantities, numbers, codes) match only when equal. Letter words also match when close in
    spelling (rapidfuzz ratio >= FUZZY_RATIO: the ratio); when the product word lies in a query
    word at least two letters longer (words the OCR ran together: INSIDE_CREDIT); or when the
    query word lies in a product word at least two letters longer (a piece of a compound word,
    "MELLAN" of "mellanmjolk": its share of the letters). Inside and pieces must be exact, or
    within one letter for words of ONE_EDIT_MIN letters or more (then scaled by 1 - 1/length)."""
    return _similarity(query, word)[0]


def _similarity(query: str, word: str) -> tuple[float, int, tuple[int, int]]:
    """(similarity, WHOLE/INSIDE/PIECE, the span of the query word it covers)."""
    whole = (0, len(query))
    if query == word:
        return 1.0, WHOLE, whole
    if not (query.isalpha() and word.isalpha()):
        return 0.0, WHOLE, whole
    from rapidfuzz import fuzz

    r = fuzz.ratio(query, word)
    if r >= FUZZY_RATIO:
        return r / 100, WHOLE, whole
    n, length = len(query), len(word)
    if length >= INSIDE_MIN and n >= length + 2:
        found = _find(word, query, length >= ONE_EDIT_MIN)
        if found is not None:
            return INSIDE_CREDIT * (1 - found[0] / length), INSIDE, found[1]
    if n >= PIECE_MIN and length >= n + 2:
        found = _find(query, word, n >= ONE_EDIT_MIN)
        if found is not None:
            return (1 - found[0] / n) * n / length, PIECE, whole
    return 0.0, WHOLE, whole


def _find(needle: str, hay: str, one_edit: bool) -> tuple[int, tuple[int, int]] | None:
    """(edits, span in ``hay``) of ``needle`` in ``hay``: exact (0 edits), else, with
    ``one_edit``, a part of ``hay`` one edit (Levenshtein) away; None if neither."""
    i = hay.find(needle)
    if i >= 0:
        return 0, (i, i + len(needle))
    if one_edit:
        from rapidfuzz.distance import Levenshtein

        for size in (len(needle), len(needle) - 1, len(needle) + 1):
            for start in range(len(hay) - size + 1):
                if Levenshtein.distance(needle, hay[start:start + size], score_cutoff=1) <= 1:
                    return 1, (start, start + size)
    return None


def _halves(word: str) -> tuple[str, str]:
    """A word one edit away from a text leaves one of these intact in it (pigeonhole)."""
    mid = len(word) // 2
    return word[:mid], word[mid:]


# ---------------------------------------------------------------------- the index
class ProductTextIndex:
    """The catalog's product text, indexed for :meth:`match`. Build with :meth:`build` (from a
    catalog) or from documents; immutable afterwards (its caches are locked), so one index
    serves any number of threads."""

    def __init__(self, products: Sequence[tuple[str, Iterable[str], Iterable[str]]],
                 images: Sequence[tuple[int, Iterable[str]]] = (), *, version: int | None = None):
        """``products``: (product id, words of its data, words read on its images);
        ``images``: (image id, words read on it) of the images without a product."""
        self.version = version
        self._keys: list[str | int] = []
        self._doc_read: list[frozenset[int]] = []       # the words only read on its photos
        vocab: dict[str, int] = {}
        doc_words: list[list[int]] = []
        for key, data_words, read_words in [(p, d, r) for p, d, r in products] + [(i, (), r) for i, r in images]:
            data = list(dict.fromkeys(data_words))
            seen = set(data)
            ids = [vocab.setdefault(w, len(vocab)) for w in data + [w for w in dict.fromkeys(read_words)
                                                                     if w not in seen]]
            self._keys.append(key)
            self._doc_read.append(frozenset(ids[len(data):]))
            doc_words.append(ids)
        self.n_products = len(products)
        self._doc_of = {(k, d < self.n_products): d for d, k in enumerate(self._keys)}
        self.vocab = list(vocab)
        self._word_id = vocab
        n_docs = len(self._keys)
        flat = np.fromiter((w for ids in doc_words for w in ids), np.int64)
        owner = np.repeat(np.arange(n_docs, dtype=np.int64), [len(ids) for ids in doc_words])
        df = np.bincount(flat, minlength=len(vocab))
        self._postings = owner[np.argsort(flat, kind="stable")]      # documents of each word
        self._postings_start = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
        # IDF over the documents, and relative to the rarest possible word (in one document)
        self.idf = np.log((n_docs + 1) / (df + 0.5))
        self.weight = self.idf / math.log((n_docs + 1) / 1.5) if n_docs else self.idf
        self._init_search()
        self._cache: dict[str, list[tuple[int, float, int, tuple[int, int]]]] = {}
        self._last: list[tuple[tuple[str, ...], _Matched]] = []
        self._lock = threading.Lock()

    @classmethod
    def build(cls, catalog, *, read_words: bool = True) -> "ProductTextIndex":
        """From a catalog's products (title, brand, category, SKU, GTIN) and, with
        ``read_words``, the words stored for its images (catalog.image_texts.iter_words)."""
        with catalog.read_snapshot():
            version = catalog.version
            read: dict[str, dict[str, None]] = {}
            loose: list[tuple[int, list[str]]] = []
            if read_words:
                for image_id, product_id, words in catalog.image_texts.iter_words():
                    if product_id is None:
                        if words:
                            loose.append((image_id, words))
                    else:
                        read.setdefault(product_id, {}).update(dict.fromkeys(words))
            products = [(pid, product_words(title, brand, category, sku, gtin), list(read.get(pid, ())))
                        for pid, title, brand, category, sku, gtin in catalog.product_rows(
                            ("id", "title", "brand", "category", "sku", "gtin"))]
        return cls(products, loose, version=version)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def product_ids(self) -> list[str]:
        return list(self._keys[:self.n_products])

    # ------------------------------------------------------------------ similar words
    def _init_search(self) -> None:
        letters = sorted((i for i, w in enumerate(self.vocab) if w.isalpha()), key=lambda i: len(self.vocab[i]))
        self._band_ids = np.array(letters, np.int64)
        self._band_words = [self.vocab[i] for i in letters]
        lengths = np.array([len(w) for w in self._band_words], np.int64)
        self._band_start = np.searchsorted(lengths, np.arange((lengths.max() if len(lengths) else 0) + 2))
        # pieces: every letter word in one string, found with str.find
        self._joined = "\n".join(self.vocab[i] for i in letters)
        self._joined_start = np.cumsum([0] + [len(w) + 1 for w in self._band_words[:-1]]) if letters else np.zeros(1)
        # one edit inside a query word: the halves of the long words
        self._half_index: dict[str, list[int]] = {}
        for i in letters:
            if len(self.vocab[i]) >= ONE_EDIT_MIN:
                for half in _halves(self.vocab[i]):
                    self._half_index.setdefault(half, []).append(i)

    def _band(self, lo: int, hi: int) -> tuple[list[str], np.ndarray]:
        """The letter words of lo..hi letters, and their vocabulary ids."""
        lo, hi = max(lo, 0), min(hi, len(self._band_start) - 2)
        if lo > hi:
            return [], self._band_ids[:0]
        a, b = self._band_start[lo], self._band_start[hi + 1]
        return self._band_words[a:b], self._band_ids[a:b]

    def _containing(self, text: str) -> set[int]:
        """The letter words that contain ``text``."""
        out: set[int] = set()
        at = self._joined.find(text)
        while at >= 0:
            k = int(np.searchsorted(self._joined_start, at, side="right")) - 1
            out.add(int(self._band_ids[k]))
            at = self._joined.find(text, at + 1)
        return out

    def similar_words(self, query: str) -> list[tuple[int, float, int, tuple[int, int]]]:
        """(vocabulary id, similarity, WHOLE/INSIDE/PIECE, query span) of the document words a
        query word matches (word_similarity), by id; cached."""
        with self._lock:
            hit = self._cache.get(query)
        if hit is not None:
            return hit
        found: dict[int, tuple[float, int, tuple[int, int]]] = {}
        exact = self._word_id.get(query)
        if exact is not None:
            found[exact] = (1.0, WHOLE, (0, len(query)))
        if query.isalpha():
            from rapidfuzz import fuzz, process

            n = len(query)
            # close in spelling: ratio >= 80 needs lengths within 2/3..3/2 of each other
            words, ids = self._band(math.ceil(2 * n / 3), (3 * n) // 2)
            for _, score, k in process.extract(query, words, scorer=fuzz.ratio, score_cutoff=FUZZY_RATIO,
                                               limit=None):
                found.setdefault(int(ids[k]), (score / 100, WHOLE, (0, n)))
            # candidates for the other rules (each checked by _similarity below):
            cands: set[int] = set()
            for size in range(INSIDE_MIN, n - 1):            # product words inside the query word
                for start in range(n - size + 1):
                    wid = self._word_id.get(query[start:start + size])
                    if wid is not None:
                        cands.add(wid)
            for size in range(ONE_EDIT_MIN // 2, (n - 2) // 2 + 2):  # ... one edit away: a half intact
                for start in range(n - size + 1):
                    cands.update(self._half_index.get(query[start:start + size], ()))
            if n >= PIECE_MIN:                               # the query word a piece of product words
                cands |= self._containing(query)
                if n >= ONE_EDIT_MIN:
                    for half in _halves(query):
                        cands |= self._containing(half)
            for wid in cands - found.keys():
                sim, kind, span = _similarity(query, self.vocab[wid])
                if sim > 0:
                    found[wid] = (sim, kind, span)
        out = [(wid, *m) for wid, m in sorted(found.items())]
        with self._lock:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[query] = out
        return out

    # ------------------------------------------------------------------ matching
    def _matched(self, query_words: Iterable[str]) -> "_Matched":
        """The matched (document, word) pairs of a query, by document (see _Matched)."""
        qs = tuple(dict.fromkeys(query_words))
        with self._lock:
            for key, result in self._last:
                if key == qs:
                    return result
        docs, qis, wids, sims, kinds, starts, ends = [], [], [], [], [], [], []
        for qi, q in enumerate(qs):
            for wid, sim, kind, (a, b) in self.similar_words(q):
                d = self._postings[self._postings_start[wid]:self._postings_start[wid + 1]]
                docs.append(d)
                for col, value in ((qis, qi), (wids, wid), (sims, sim), (kinds, kind), (starts, a), (ends, b)):
                    col.append(np.full(len(d), value))
        if docs:
            rows = _select(*(np.concatenate(c) for c in (docs, qis, wids, sims, kinds, starts, ends)))
        else:
            rows = tuple(np.zeros(0, t) for t in (np.int64, np.int64, np.int64, np.float64))
        result = _Matched(qs, *rows, self.weight, len(self._keys))
        with self._lock:
            self._last = [(qs, result)] + self._last[:3]
        return result

    def _text_match(self, m: "_Matched", d: int) -> TextMatch:
        a, b = m.doc_rows(d)
        photo = self._doc_read[d]
        found = sorted((WordMatch(m.queries[qi], self.vocab[wid], float(sim), float(self.weight[wid]), wid in photo)
                        for qi, wid, sim in zip(m.qi[a:b].tolist(), m.wid[a:b].tolist(), m.sim[a:b].tolist())),
                       key=lambda w: (-w.weight * w.similarity, w.product))
        return TextMatch(float(m.score[d]), tuple(found))

    def _top(self, m: "_Matched", lo: int, hi: int, min_score: float, limit: int | None) -> list[int]:
        docs = np.flatnonzero(m.score[lo:hi] > min_score) + lo
        docs = docs[np.argsort(-m.score[docs], kind="stable")]
        return docs[:limit].tolist() if limit is not None else docs.tolist()

    def match(self, query_words: Iterable[str], *, min_score: float = 0.0, limit: int | None = None
              ) -> dict[str, TextMatch]:
        """product id -> TextMatch of the products the query words match with a score above
        ``min_score`` (the ``limit`` best with one), best first; a product left out scores 0."""
        m = self._matched(query_words)
        return {self._keys[d]: self._text_match(m, d) for d in self._top(m, 0, self.n_products, min_score, limit)}

    def match_images(self, query_words: Iterable[str], *, min_score: float = 0.0, limit: int | None = None
                     ) -> dict[int, TextMatch]:
        """image id -> TextMatch of the images without a product, by the words read on them."""
        m = self._matched(query_words)
        return {self._keys[d]: self._text_match(m, d) for d in self._top(m, self.n_products, len(self._keys),
                                                                           min_score, limit)}

    def for_candidates(self, query_words: Iterable[str], candidates: Iterable[tuple[int, str | None]]
                       ) -> dict[int, TextMatch]:
        """image id -> TextMatch of the matched ones among (image id, product id or None)
        candidates: an image with a product by its product's text, one without by its own."""
        m = self._matched(query_words)
        out = {}
        for image_id, product_id in candidates:
            d = self._doc_of.get((product_id, True) if product_id is not None else (int(image_id), False))
            if d is not None and m.score[d] > 0:
                out[int(image_id)] = self._text_match(m, d)
        return out


def _select(doc, qi, wid, sim, kind, start, end) -> tuple[np.ndarray, ...]:
    """The (document, query word, document word, similarity) rows that count: in a document a
    query word counts for its best whole-word match, else for the distinct product words it
    holds (run together: the longest first, spans not overlapping), else as a piece of its best
    product word; then each document word keeps its best query word."""
    order = np.lexsort((wid, -sim, kind, qi, doc))
    doc, qi, wid, sim, kind, start, end = (x[order] for x in (doc, qi, wid, sim, kind, start, end))
    first = np.flatnonzero(np.r_[True, (doc[1:] != doc[:-1]) | (qi[1:] != qi[:-1])])
    keep = np.zeros(len(doc), bool)
    keep[first[kind[first] != INSIDE]] = True
    bounds = np.r_[first, len(doc)]
    for g in np.flatnonzero(kind[first] == INSIDE).tolist():       # run-together words: rare
        rows = [r for r in range(bounds[g], bounds[g + 1]) if kind[r] == INSIDE]
        rows.sort(key=lambda r: (-(end[r] - start[r]), -sim[r], wid[r]))
        taken: list[tuple[int, int]] = []
        for r in rows:
            if all(end[r] <= a or start[r] >= b for a, b in taken):
                taken.append((start[r], end[r]))
                keep[r] = True
    doc, qi, wid, sim = doc[keep], qi[keep], wid[keep], sim[keep]
    order = np.lexsort((qi, -sim, wid, doc))
    doc, qi, wid, sim = doc[order], qi[order], wid[order], sim[order]
    best = np.r_[True, (doc[1:] != doc[:-1]) | (wid[1:] != wid[:-1])]
    return doc[best], qi[best], wid[best], sim[best]


class _Matched:
    """The rows that count for one query (sorted by document) and every document's score."""

    def __init__(self, queries, doc, qi, wid, sim, weight, n_docs):
        self.queries, self.doc, self.qi, self.wid, self.sim = queries, doc, qi, wid, sim
        mass = np.bincount(doc, weights=weight[wid] * sim, minlength=n_docs) if len(doc) else np.zeros(n_docs)
        self.score = 1.0 - np.exp(-mass / SATURATION)

    def doc_rows(self, d: int) -> tuple[int, int]:
        return int(np.searchsorted(self.doc, d, "left")), int(np.searchsorted(self.doc, d, "right"))


def product_words(title=None, brand=None, category=None, sku=None, gtin=None) -> list[str]:
    """The words of a product's data a text match compares: those of its title, brand and
    category, and its SKU and GTIN as words and as one code each (letters and digits only)."""
    words: dict[str, None] = {}
    for text in (title, sku, gtin):
        if text:
            words.update(dict.fromkeys(normalise_words(str(text))))
    for text in (brand, category):      # shared by many products
        if text:
            words.update(dict.fromkeys(_shared_words(str(text))))
    for code in (sku, gtin):
        joined = "".join(ch for ch in fold(str(code or "")) if ch.isalnum())
        if len(joined) >= 4:
            words[number_word(joined) if joined.isdigit() else joined] = None
    return list(words)


@functools.lru_cache(maxsize=4096)
def _shared_words(text: str) -> tuple[str, ...]:
    return tuple(normalise_words(text))


# ---------------------------------------------------------------------- per catalog version
_INDEXES: dict[str, ProductTextIndex] = {}
_INDEX_LOCK = threading.Lock()


def text_index(catalog) -> ProductTextIndex:
    """The catalog's ProductTextIndex, built on first use and again only when the catalog's
    version has changed (any import, product update or stored text bumps it)."""
    key = str(catalog.db_path)
    with _INDEX_LOCK:
        index = _INDEXES.get(key)
        if index is None or index.version != catalog.version:
            index = ProductTextIndex.build(catalog)
            _INDEXES[key] = index
        return index
