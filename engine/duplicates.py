"""`lookalike dupes`: groups of near-duplicate images in a whole catalog.

How a scan works (never all pairs: memory and time grow with the catalog, not its square)

1. **Candidates** come from the k-nearest-neighbour graph of the HNSW index: every image's stored
   embedding is queried in batches (hnswlib answers many queries at once on all cores) for its
   ``k`` nearest neighbours, and a pair is kept when its embedding cosine is at least a loose
   ``floor``. When even the k-th neighbour of an image is nearly identical (``expand_above``) the
   image is queried again with a larger k, so a photo with hundreds of copies keeps them all.
   Images with the same content hash (byte-identical files) are always candidates.
2. **Verification**: the evidence of every candidate pair (embedding cosine, ORB/RANSAC inliers,
   colour, aligned pixel agreement: :func:`pair_evidence`, from stored data only, on a thread per
   core) is scored by the calibrated score search uses, as a search with the pair's newer image
   would score it, with search's competition between candidates (:func:`competing_scores`: a
   copy must agree with its original better than with its other verified neighbours, which
   tells an original from a recoloured variant of the same photo), and kept when it reaches the
   threshold (the "copy" threshold by default). An image that no pair confirms as a copy is
   decoded again and matched with more keypoints (copies under text), and, when it is also far
   from every other image, embedded turned by 90/180/270 degrees for more candidates (turned
   copies), as search does with such a query (``dense``, ``model``).
   Pairs the user marked "not a duplicate" are dropped before verification; pairs marked
   "confirmed duplicate" are always kept. Pairs between *declared variants* (two different
   products of one item group in the product feed, e.g. the blue and the green colour of a
   jacket sharing a recoloured photo) compete in the scoring like any pair but are not reported
   unless ``include_variants`` (:func:`variant_families`).
3. **Grouping** (the policy; see docs/duplicates.md): groups are *stars*, not connected
   components. The representative of a group is chosen first and every member is a verified copy
   of the representative itself, so a chain A~B~C never pulls A and C together through B unless
   both are copies of the same representative. Representatives are picked greedily in this order:
   a user-chosen reference first, then the image with the most verified copies not yet in a group,
   then the largest (pixels), then the oldest (first added). Each image belongs to at most one
   group; each member carries its score against the representative. Unless variants are
   included, two declared variants never share a group (not even through a common
   representative), just like a pair the user marked "not a duplicate".

Decisions ("not a duplicate", "confirmed duplicate") and user-chosen references are stored in the
catalog database, keyed by the images' content hashes, so they survive re-imports, moves and
renames and are never confused by a reused image id. The tables are created on first use by this
module (``CREATE TABLE IF NOT EXISTS``); the core schema does not depend on them.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import IO, TYPE_CHECKING, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from . import match_policy, scoring, visual_words
from .catalog import Catalog, execute_statements, now_iso
from .errors import CatalogError, LookalikeError
from .feature_store import decode
from .features import content
from .match_policy import EVIDENCE, competing_scores, declared_variants

if TYPE_CHECKING:
    from .model import Model

Progress = Callable[[int, int, str], None]

DEFAULT_K = 20              # neighbours per image in the candidate graph
CANDIDATE_FLOOR = 0.5       # loosest embedding cosine a candidate pair may have
EXPAND_ABOVE = 0.97         # re-query an image with a larger k while its k-th neighbour is this close
MAX_K = 1024
SEARCH_EF = 64            # HNSW search breadth for the graph (copies are close: a narrow search finds them)
QUERY_BATCH = 2000
VERIFY_CHUNK = 512          # most pairs one verifier call scores (a cancel waits for at most a few)
VERIFY_THREADS_MAX = 8
HASH_CLIQUE_MAX = 200       # byte-identical images: all pairs up to this many, a star beyond

NOT_DUPLICATE = "not_duplicate"
CONFIRMED = "confirmed"
DECISIONS = (NOT_DUPLICATE, CONFIRMED)
SCANNED_VERSION_KEY = "dupes.scanned_version"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pair_decisions (
    a TEXT NOT NULL, b TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('not_duplicate', 'confirmed')),
    at TEXT NOT NULL, a_id INTEGER, b_id INTEGER, score REAL,
    PRIMARY KEY (a, b), CHECK (a <= b)
);
CREATE TABLE IF NOT EXISTS dupe_references (
    content_hash TEXT PRIMARY KEY, image_id INTEGER, at TEXT NOT NULL
);
"""


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


class ScanCancelled(LookalikeError):
    """The scan was cancelled; nothing was changed."""

    def __init__(self) -> None:
        super().__init__("duplicate scan cancelled")


# ---------------------------------------------------------------------- results
@dataclass
class Member:
    image_id: int
    score: float | None = None          # against the representative; None for the representative
    confirmed: bool = False              # the user confirmed this pair
    record: dict = field(default_factory=dict)   # path, product_id, title, ... (catalog.image_record)

    @property
    def path(self) -> str:
        return self.record.get("path", "")

    def to_json(self) -> dict:
        r = self.record
        return {"image_id": self.image_id, "path": r.get("path"), "product_id": r.get("product_id"),
                "title": r.get("title"), "brand": r.get("brand"), "price": r.get("price"),
                "currency": r.get("currency"), "width": r.get("width"), "height": r.get("height"),
                "score": None if self.score is None else round(float(self.score), 4),
                "confirmed": self.confirmed, **variant_attributes(r)}


@dataclass
class DuplicateGroup:
    group_id: int
    representative: Member
    members: list[Member]               # the copies, best score first (the representative excluded)

    @property
    def size(self) -> int:
        return 1 + len(self.members)

    @property
    def image_ids(self) -> list[int]:
        return [self.representative.image_id] + [m.image_id for m in self.members]

    @property
    def min_score(self) -> float:
        return min((m.score for m in self.members if m.score is not None), default=1.0)

    def to_json(self) -> dict:
        return {"group_id": self.group_id, "size": self.size,
                "representative": self.representative.to_json(),
                "members": [m.to_json() for m in self.members]}


@dataclass
class ScanResult:
    groups: list[DuplicateGroup]
    threshold: float
    scoring: str                        # which scorer verified the pairs
    images: int = 0                     # images in the catalog
    queried: int = 0                    # images whose neighbours were searched (fewer with only_new)
    candidates: int = 0                 # candidate pairs from the kNN graph and content hashes
    verified: int = 0                   # pairs at or above the threshold (plus confirmed ones)
    ignored: int = 0                    # candidate pairs the user marked "not a duplicate"
    variant_pairs: int = 0              # verified pairs between declared variants (not confirmed)
    rechecked: int = 0                  # re-checks of images decoded again with more keypoints
    turned: int = 0                     # images also searched turned by 90/180/270 degrees
    include_variants: bool = False      # ... and whether they were reported
    only_new: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)   # stage -> seconds
    # every candidate pair and its score (scan(keep_candidates=True): benchmarks, tuning)
    candidate_pairs: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None
    candidate_evidence: np.ndarray | None = None      # [m, len(EVIDENCE)], the default scoring's

    @property
    def duplicates(self) -> int:
        return sum(len(g.members) for g in self.groups)

    def summary(self) -> str:
        scope = f"{self.queried} new images checked" if self.only_new else f"{self.images} images scanned"
        variants = ""
        if self.variant_pairs:
            variants = (f", {self.variant_pairs} between declared variants included" if self.include_variants
                        else f"; {self.variant_pairs} pairs between declared variants not reported")
        decoded = ""
        if self.rechecked or self.turned:
            decoded = f", {self.rechecked} re-checked from their files, {self.turned} searched turned"
        return (f"{len(self.groups)} groups, {self.duplicates} copies ({scope}, {self.candidates} candidate "
                f"pairs, {self.verified} at or above {self.threshold:.2f} by {self.scoring} score, "
                f"{self.ignored} ignored{variants}{decoded}) in {self.seconds:.1f} s")

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "scoring": self.scoring, "images": self.images,
                "queried": self.queried, "candidates": self.candidates, "verified": self.verified,
                "ignored": self.ignored, "variant_pairs": self.variant_pairs, "rechecked": self.rechecked,
                "turned": self.turned,
                "include_variants": self.include_variants, "only_new": self.only_new,
                "seconds": round(self.seconds, 3),
                "groups": [g.to_json() for g in self.groups]}


# ---------------------------------------------------------------------- scoring (one switch)
def embedding_verifier(catalog: Catalog, pairs: np.ndarray, cosine: np.ndarray) -> tuple[np.ndarray, str]:
    """A verifier that uses the embedding score only (synthetic catalogs, tests, benchmarks)."""
    return embedding_pair_scores(catalog, pairs, cosine), "embedding"


def verify_pairs(catalog: Catalog, pairs: np.ndarray, cosine: np.ndarray) -> tuple[np.ndarray, str]:
    """Scores in [0, 1] for image-id ``pairs`` [m, 2], the same score search shows.

    ``cosine`` holds each pair's embedding cosine where the kNN graph already measured it (NaN
    elsewhere). Uses the match-quality verifier (stored embeddings + local features) when the
    engine has it, else the embedding score; each pair alone, measured with its newer image as
    the query as :func:`pair_evidence` does. Returns (scores, name of the scorer)."""
    return np.asarray(match_policy.pair_scores(catalog, _newer_first(pairs).tolist()), np.float64), "verified"


def _newer_first(pairs: np.ndarray) -> np.ndarray:
    """Image-id ``pairs`` [m, 2] as (newer, older): the larger id, the image added later, first."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return np.stack([pairs.max(axis=1), pairs.min(axis=1)], axis=1)


def pair_evidence(catalog: Catalog, pairs: np.ndarray, cosine: np.ndarray | None = None
                  ) -> tuple[np.ndarray, str]:
    """:func:`engine.match_policy.pair_evidence` in the verifier form ``_verify_parallel``
    takes: (evidence [m, len(EVIDENCE)], scorer name), measured with each pair's *newer* image
    (the larger id) as the query and the older one as the candidate, as a search with the image
    that arrived later measures it (see :func:`competing_scores`). ``cosine`` is not needed: the
    evidence holds the exact cosine from the stored embeddings."""
    return match_policy.pair_evidence(catalog, _newer_first(pairs)), "verified"


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


# ---------------------------------------------------------------------- decisions
_schema_ready: set[str] = set()
_schema_lock = threading.Lock()


def ensure_schema(catalog: Catalog) -> None:
    """Create the decision tables in this catalog if they are not there yet."""
    key = str(catalog.db_path)
    with _schema_lock:
        if key in _schema_ready:
            return
        tables = {r[0] for r in catalog.db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"pair_decisions", "dupe_references"} <= tables:
            with catalog.transaction(bump=False) as db:    # waits for another process doing the same
                execute_statements(db.conn, _SCHEMA)
        _schema_ready.add(key)


def _hashes(catalog: Catalog, image_ids: Iterable[int]) -> dict[int, str]:
    ids = [int(i) for i in image_ids]
    out: dict[int, str] = {}
    conn = catalog.db.conn
    for n in range(0, len(ids), 500):
        chunk = ids[n:n + 500]
        out.update(conn.execute(
            f"SELECT id, content_hash FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    missing = [i for i in ids if i not in out]
    if missing:
        raise CatalogError(f"{catalog.directory}: no image with id {missing[0]}")
    return out


def mark_pairs(catalog: Catalog, pairs: Iterable[tuple[int, int]], decision: str,
               scores: Sequence[float | None] | None = None) -> int:
    """Remember ``decision`` ("not_duplicate" or "confirmed") for image-id pairs. A later decision on
    the same pair replaces the earlier one."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}: use one of {', '.join(DECISIONS)}")
    pairs = [(int(a), int(b)) for a, b in pairs]
    for a, b in pairs:
        if a == b:
            raise LookalikeError(f"image {a} cannot be a duplicate of itself")
    if not pairs:
        return 0
    scores = list(scores) if scores is not None else [None] * len(pairs)
    ensure_schema(catalog)
    hashes = _hashes(catalog, {i for p in pairs for i in p})
    stamp = now_iso()
    rows = []
    for (a, b), score in zip(pairs, scores):
        (ha, ia), (hb, ib) = sorted([(hashes[a], a), (hashes[b], b)])
        rows.append((ha, hb, decision, stamp, ia, ib, None if score is None else float(score)))
    with catalog.transaction(bump=False) as db:
        db.conn.executemany("INSERT OR REPLACE INTO pair_decisions (a, b, decision, at, a_id, b_id, score) "
                            "VALUES (?,?,?,?,?,?,?)", rows)
    return len(rows)


def forget_pairs(catalog: Catalog, pairs: Iterable[tuple[int, int]]) -> int:
    """Drop any decision on these image-id pairs."""
    pairs = [(int(a), int(b)) for a, b in pairs]
    if not pairs:
        return 0
    ensure_schema(catalog)
    hashes = _hashes(catalog, {i for p in pairs for i in p})
    keys = [tuple(sorted((hashes[a], hashes[b]))) for a, b in pairs]
    with catalog.transaction(bump=False) as db:
        return sum(db.conn.execute("DELETE FROM pair_decisions WHERE a=? AND b=?", k).rowcount for k in keys)


def decisions(catalog: Catalog) -> list[dict]:
    """Every stored decision, with the images it applies to now (ids and paths; None when no image
    in the catalog has that content any more)."""
    ensure_schema(catalog)
    conn = catalog.db.conn
    out = []
    for a, b, decision, at, a_id, b_id, score in conn.execute(
            "SELECT a, b, decision, at, a_id, b_id, score FROM pair_decisions ORDER BY at, a, b"):
        row = {"decision": decision, "at": at, "score": score, "hash_a": a, "hash_b": b}
        for side, digest, last_id in (("a", a, a_id), ("b", b, b_id)):
            found = conn.execute("SELECT id, path FROM images WHERE content_hash=? ORDER BY id=? DESC, id "
                                 "LIMIT 1", (digest, last_id)).fetchone()
            row[f"{side}_id"], row[f"{side}_path"] = found if found else (None, None)
        out.append(row)
    return out


def _decided_pairs(catalog: Catalog, decision: str) -> np.ndarray:
    """The image-id pairs [m, 2] (lo, hi) a decision currently applies to."""
    ensure_schema(catalog)
    conn = catalog.db.conn
    rows = conn.execute(
        "SELECT ia.id, ib.id FROM pair_decisions d JOIN images ia ON ia.content_hash = d.a "
        "JOIN images ib ON ib.content_hash = d.b WHERE d.decision=? AND ia.id != ib.id",
        (decision,)).fetchall()
    if not rows:
        return np.zeros((0, 2), np.int64)
    arr = np.array(rows, np.int64)
    return np.unique(np.sort(arr, axis=1), axis=0)


def set_reference(catalog: Catalog, image_id: int, reference: bool = True) -> None:
    """Make an image the preferred representative of any group it is in (or stop it being one)."""
    ensure_schema(catalog)
    digest = _hashes(catalog, [image_id])[int(image_id)]
    with catalog.transaction(bump=False) as db:
        if reference:
            db.conn.execute("INSERT OR REPLACE INTO dupe_references VALUES (?, ?, ?)",
                            (digest, int(image_id), now_iso()))
        else:
            db.conn.execute("DELETE FROM dupe_references WHERE content_hash=?", (digest,))


def references(catalog: Catalog) -> set[int]:
    """Image ids the user chose as representatives."""
    ensure_schema(catalog)
    return {r[0] for r in catalog.db.conn.execute(
        "SELECT i.id FROM dupe_references r JOIN images i ON i.content_hash = r.content_hash")}


# ---------------------------------------------------------------------- declared variants
def variant_families(catalog: Catalog, image_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Image id -> (item group, product id) for the images whose product declares an item group
    (a feed's ``item_group_id``, stored as ``products.group_id``). Two images with the same item
    group and different product ids are *declared variants* (the blue and the green colour, or
    two sizes, of one style). Images without a product, or whose product has no item group, are
    left out: they are nobody's variant."""
    ids = [int(i) for i in image_ids]
    out: dict[int, tuple[str, str]] = {}
    conn = catalog.db.conn
    for n in range(0, len(ids), 500):
        chunk = ids[n:n + 500]
        for i, group, product in conn.execute(
                "SELECT i.id, p.group_id, i.product_id FROM images i JOIN products p ON p.id = i.product_id "
                f"WHERE p.group_id IS NOT NULL AND p.group_id != '' AND i.id IN ({','.join('?' * len(chunk))})",
                chunk):
            out[i] = (group, product)
    return out


def listed_images(catalog: Catalog, image_ids: Iterable[int]) -> set[int]:
    """The images among ``image_ids`` that belong to a product (a listing, from a feed), as
    opposed to bare image files."""
    ids = [int(i) for i in image_ids]
    out: set[int] = set()
    conn = catalog.db.conn
    for n in range(0, len(ids), 500):
        chunk = ids[n:n + 500]
        out.update(i for (i,) in conn.execute(
            f"SELECT id FROM images WHERE product_id IS NOT NULL AND id IN ({','.join('?' * len(chunk))})", chunk))
    return out


def declared_variant_mask(pairs: np.ndarray, family: Mapping[int, tuple[str, str]]) -> np.ndarray:
    """For image-id ``pairs`` [m, 2]: True where the two images belong to different products of
    one item group (``family`` from :func:`variant_families`)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not family or len(pairs) == 0:
        return np.zeros(len(pairs), bool)
    return np.array([declared_variants(family, a, b) for a, b in pairs.tolist()], bool)


def variant_attributes(record: Mapping) -> dict[str, str]:
    """``item_group_id``, ``color`` and ``size`` of an image record (catalog.image_record), where
    its product has them (color and size are kept in the product's ``extra`` under the feed's
    column names, e.g. ``color``, ``g:size``, ``Colour``)."""
    out = {}
    if record.get("group_id"):
        out["item_group_id"] = str(record["group_id"])
    for name, value in (record.get("extra") or {}).items():
        key = name.strip().lower().removeprefix("g:").strip()
        key = "color" if key == "colour" else key
        if key in ("color", "size") and key not in out and str(value).strip():
            out[key] = str(value).strip()
    return out


# ---------------------------------------------------------------------- grouping policy
def group_pairs(pairs: np.ndarray, scores: np.ndarray, *, area: dict[int, float] | None = None,
                preferred: Iterable[int] = (), apart: Iterable[tuple[int, int]] = (),
                family: Mapping[int, tuple[str, str]] | None = None,
                together: Iterable[tuple[int, int]] = ()
                ) -> list[tuple[int, list[tuple[int, float]]]]:
    """Star groups from verified pairs (every pair given is an accepted edge).

    Returns [(representative, [(member, score against the representative), ...]), ...]. Each image
    is in at most one group and every member is directly linked to its representative.
    Representatives are chosen greedily: a ``preferred`` image first, then the image with the
    most links to images not yet grouped, then the largest ``area``, then the smallest id (the
    oldest). Two images of a pair in ``apart`` (the user said "not a duplicate") never share a
    group: the better-scoring one joins, the other stays free for another group. ``family``
    (image -> (item group, product), :func:`variant_families`) keeps declared variants apart the
    same way: a pair of different products of one item group is no link, and two such images
    never share a group, unless the pair is in ``together`` (the user confirmed it). Where images
    conflict, a member the user confirmed as a copy of the representative joins first.
    Deterministic for a given input."""
    import heapq

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    scores = np.asarray(scores, np.float64)
    if len(pairs) == 0:
        return []
    area = area or {}
    preferred = set(int(i) for i in preferred)
    apart_keys = {_key(int(a), int(b)) for a, b in apart}
    family = dict(family) if family else {}
    together_keys = {_key(int(a), int(b)) for a, b in together}

    def variants(a: int, b: int) -> bool:   # declared variants the user did not confirm
        return declared_variants(family, a, b) and _key(a, b) not in together_keys

    if apart_keys or family:                # a pair kept apart is no link at all
        linked = np.array([_key(a, b) not in apart_keys and not variants(a, b)
                           for a, b in pairs.tolist()], bool)
        pairs, scores = pairs[linked], scores[linked]
        if len(pairs) == 0:
            return []
    nodes, inverse = np.unique(pairs, return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    # adjacency in CSR form: both directions of every edge
    src = np.concatenate([inverse[:, 0], inverse[:, 1]])
    dst = np.concatenate([inverse[:, 1], inverse[:, 0]])
    w = np.concatenate([scores, scores])
    order = np.lexsort((dst, src))
    src, dst, w = src[order], dst[order], w[order]
    starts = np.searchsorted(src, np.arange(len(nodes) + 1))
    dst_l, w_l, starts_l = dst.tolist(), w.tolist(), starts.tolist()
    node_l = nodes.tolist()
    grouped = [False] * len(nodes)
    free = [starts_l[i + 1] - starts_l[i] for i in range(len(nodes))]   # links to ungrouped images

    def key(i: int) -> tuple:
        node = node_l[i]
        return (0 if node in preferred else 1, -free[i], -area.get(node, 0.0), node)

    heap = [key(i) + (i,) for i in range(len(nodes))]
    heapq.heapify(heap)
    groups: list[tuple[int, list[tuple[int, float]]]] = []
    while heap:
        entry = heapq.heappop(heap)
        i = entry[-1]
        if grouped[i]:
            continue
        if entry[:-1] != key(i):            # stale: its neighbours were grouped since it was pushed
            heapq.heappush(heap, key(i) + (i,))
            continue
        if free[i] == 0:
            continue                        # every image it matches is already in a group
        members = [(j, w_l[e]) for e in range(starts_l[i], starts_l[i + 1])
                   if not grouped[(j := dst_l[e])]]
        if apart_keys or family:
            # confirmed copies of the representative first, then the best scores
            members.sort(key=lambda m: (_key(node_l[i], node_l[m[0]]) not in together_keys, -m[1], node_l[m[0]]))
            accepted: list[tuple[int, float]] = []
            in_family: dict[str, list[int]] = {}    # item group -> accepted images of it
            for j, sc in members:
                nj = node_l[j]
                fam = family.get(nj)
                if apart_keys and any(_key(nj, node_l[o]) in apart_keys for o, _ in accepted):
                    continue
                if fam is not None and any(variants(nj, o) for o in in_family.get(fam[0], ())):
                    continue
                accepted.append((j, sc))
                if fam is not None:
                    in_family.setdefault(fam[0], []).append(nj)
            members = accepted
        grouped[i] = True
        for j, _ in members:
            grouped[j] = True
        touched = {i} | {j for j, _ in members}
        for t in touched:                   # their other neighbours lose a free link
            for e in range(starts_l[t], starts_l[t + 1]):
                free[dst_l[e]] -= 1
        members.sort(key=lambda m: (-m[1], node_l[m[0]]))
        groups.append((node_l[i], [(node_l[j], s) for j, s in members]))
    return groups


# ---------------------------------------------------------------------- the scan
def _pair_keys(pairs: np.ndarray) -> np.ndarray:
    """One int64 per (lo, hi) pair, for set operations."""
    return (pairs[:, 0].astype(np.int64) << 32) | pairs[:, 1].astype(np.int64)


def _unique_pairs(a: np.ndarray, b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.stack([lo, hi], axis=1).astype(np.int64)
    if len(pairs) == 0:
        return pairs.reshape(0, 2), s.astype(np.float64)
    if pairs.max() < 2 ** 31:
        _, first = np.unique(_pair_keys(pairs), return_index=True)
    else:
        _, first = np.unique(pairs, axis=0, return_index=True)
    return pairs[first], s[first].astype(np.float64)


def _check(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ScanCancelled()


def _knn_candidates(catalog: Catalog, index, *, since_version: int, k: int, floor: float,
                    expand_above: float, ef: int | None, progress: Progress | None, cancel: CancelToken | None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    conn = catalog.db.conn
    total = conn.execute("SELECT count(*) FROM images WHERE version > ?", (since_version,)).fetchone()[0]
    n_index = len(index)
    parts_a, parts_b, parts_s = [], [], []
    done = 0
    if progress:
        progress(0, total, "finding neighbours")
    for ids, vecs in catalog.iter_embeddings(batch=QUERY_BATCH, since_version=since_version):
        _check(cancel)
        kk = min(k + 1, n_index)                          # +1: an image finds itself
        labels, sims = _query(index, vecs, kk, ef)
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
            labels, sims = _query(index, vecs[rows], wider, ef)
            if labels.shape[1] <= kk:                      # the graph cannot give more
                break
            kk = labels.shape[1]
        done += len(ids)
        if progress:
            progress(done, total, "finding neighbours")
    if not parts_a:
        return np.zeros((0, 2), np.int64), np.zeros(0), 0
    pairs, cos = _unique_pairs(np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_s))
    return pairs, cos, done


def _query(index, vecs: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """index.query, asking for fewer neighbours when hnswlib cannot return k for every query (it
    raises when part of the graph is unreachable, e.g. a tight clump of hundreds of copies)."""
    while True:
        try:
            return index.query(vecs, k, ef=ef)
        except RuntimeError:
            if k <= 1:
                return np.zeros((len(vecs), 0), np.int64), np.zeros((len(vecs), 0), np.float32)
            k //= 2


def _hash_pairs(catalog: Catalog, since_version: int) -> np.ndarray:
    """Pairs of byte-identical images (all pairs of a small set, a star around the oldest beyond)."""
    conn = catalog.db.conn
    out = []
    for (ids_text,) in conn.execute(
            "SELECT group_concat(id) FROM images GROUP BY content_hash HAVING count(*) > 1 "
            "AND max(version) > ?", (since_version,)):
        ids = sorted(int(i) for i in ids_text.split(","))
        if len(ids) <= HASH_CLIQUE_MAX:
            out += [(a, b) for n, a in enumerate(ids) for b in ids[n + 1:]]
        else:
            out += [(ids[0], b) for b in ids[1:]]
    return np.array(out, np.int64).reshape(-1, 2)


def scan(catalog: Catalog, *, threshold: float | str = "copy", k: int = DEFAULT_K,
         floor: float = CANDIDATE_FLOOR, expand_above: float = EXPAND_ABOVE, ef: int | None = SEARCH_EF,
         only_new: bool = False, include_variants: bool = False,
         progress: Progress | None = None, cancel: CancelToken | None = None,
         verifier: Callable[[Catalog, np.ndarray, np.ndarray], tuple[np.ndarray, str]] | None = None,
         with_records: bool = True, keep_candidates: bool = False, words: bool = True,
         dense: bool = True, model: Model | None = None) -> ScanResult:
    """Find the groups of near-duplicate images in ``catalog``.

    ``only_new`` checks only the images added or changed since the last completed scan against the
    whole catalog (a full scan the first time). Progress is reported as (done, total, stage);
    ``cancel.is_set()`` stops the scan with :class:`ScanCancelled`. Thread: any but the UI thread.
    By default pairs are scored by :func:`pair_evidence` + :func:`competing_scores`; a
    ``verifier(catalog, pairs, cosine) -> (scores, name)`` replaces that (e.g.
    :func:`embedding_verifier` for synthetic catalogs, :func:`verify_pairs` for lone-pair scores).
    Pairs between declared variants (different products of one item group) are scored like the
    others but reported only with ``include_variants`` (or when the user confirmed the pair);
    ``ScanResult.variant_pairs`` counts those at or above the threshold.
    ``words``: add the visual-word candidates (:mod:`engine.visual_words`: turned copies, which
    the embedding's kNN graph misses; catalogs up to ``visual_words.MAX_IMAGES`` images).
    ``dense``: an image that no pair confirms as a copy of an older image is decoded again and
    matched with more keypoints (:func:`engine.match_policy.dense_recheck`: copies under text or a
    logo), as search does with such a query. ``model`` (the catalog's, :func:`scan_model`): such an
    image that is also far from every other (a turned copy embeds far from its original) is embedded
    turned by 90/180/270 degrees and its nearest images become candidates too, as search does;
    without a model (or with ``dense=False``) there is no such pass.
    """
    started = time.perf_counter()
    threshold = scoring.resolve_threshold(threshold) if isinstance(threshold, str) else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise LookalikeError(f"threshold {threshold} is outside [0, 1]")
    ensure_schema(catalog)
    timings: dict[str, float] = {}
    catalog_version = catalog.version
    since = -1
    if only_new:
        last = catalog.meta(SCANNED_VERSION_KEY)
        since = int(last) if last is not None else -1
    images = catalog.count_images()
    result = ScanResult(groups=[], threshold=threshold, scoring="", images=images, only_new=since >= 0,
                        include_variants=include_variants)

    t = time.perf_counter()
    index = catalog.index()
    timings["index"] = time.perf_counter() - t
    if index is None or len(index) < 2:
        result.scoring = "none"
        result.seconds = time.perf_counter() - started
        _remember_scan(catalog, catalog_version)
        return result

    # 1. candidates: kNN graph + byte-identical files + confirmed pairs
    t = time.perf_counter()
    pairs, cosine, result.queried = _knn_candidates(
        catalog, index, since_version=since, k=k, floor=floor, expand_above=expand_above, ef=ef,
        progress=progress, cancel=cancel)
    if getattr(index, "projection", None) is not None:
        # a projected index (large catalogs) ranks by approximate similarities: good enough to
        # pick candidates, but scores are computed from the stored full embeddings
        cosine = np.full(len(pairs), np.nan)
    timings["candidates"] = time.perf_counter() - t
    if words:
        # turned copies: the embedding is not rotation invariant, the ORB descriptors are
        t = time.perf_counter()
        query = None if since < 0 else [r[0] for r in catalog.db.conn.execute(
            "SELECT id FROM images WHERE version > ?", (since,))]
        found = visual_words.candidate_pairs(catalog, query, cancel=cancel, progress=progress)
        _check(cancel)
        if len(found):
            pairs, cosine = _unique_pairs(np.concatenate([pairs[:, 0], found[:, 0]]),
                                          np.concatenate([pairs[:, 1], found[:, 1]]),
                                          np.concatenate([cosine, np.full(len(found), np.nan)]))
        timings["words"] = time.perf_counter() - t
    t = time.perf_counter()
    same = _hash_pairs(catalog, since)
    confirmed = _decided_pairs(catalog, CONFIRMED)
    ignored = _decided_pairs(catalog, NOT_DUPLICATE)
    extra = np.concatenate([same, confirmed]) if len(confirmed) else same
    if len(extra):
        all_pairs = np.concatenate([pairs, extra])
        all_cos = np.concatenate([cosine, np.where(np.arange(len(extra)) < len(same), 1.0, np.nan)])
        pairs, cosine = _unique_pairs(all_pairs[:, 0], all_pairs[:, 1], all_cos)
    timings["candidates"] += time.perf_counter() - t
    _check(cancel)

    # 2. user decisions, then verification
    keys = _pair_keys(pairs) if len(pairs) else np.zeros(0, np.int64)
    if len(ignored):
        drop = np.isin(keys, _pair_keys(ignored))
        result.ignored = int(drop.sum())
        pairs, cosine, keys = pairs[~drop], cosine[~drop], keys[~drop]
    result.candidates = len(pairs) + result.ignored
    is_confirmed = np.isin(keys, _pair_keys(confirmed)) if len(confirmed) else np.zeros(len(pairs), bool)
    identical = np.isin(keys, _pair_keys(same)) if len(same) else np.zeros(len(pairs), bool)

    t = time.perf_counter()
    scores = np.ones(len(pairs), np.float64)
    todo = np.nonzero(~identical)[0]
    families: dict[int, tuple[str, str]] | None = None    # image -> (item group, product)
    if verifier is None:
        # default: gather each pair's evidence (in parallel), then score every pair against its
        # images' other candidates, as search does
        evidence = np.zeros((len(pairs), len(EVIDENCE)), np.float64)
        names = _verify_parallel(catalog, pair_evidence, pairs, cosine, todo, evidence, progress, cancel)
        if dense:
            started_dense = time.perf_counter()
            result.rechecked = _dense_recheck(catalog, pairs, evidence, todo, progress, cancel)
            if model is not None:
                turned = _turned_pairs(catalog, index, model, pairs, evidence, since, ignored, progress, cancel)
                result.turned = turned.queried
                if len(turned.pairs):
                    more = np.arange(len(pairs), len(pairs) + len(turned.pairs))
                    pairs = np.concatenate([pairs, turned.pairs])
                    cosine = np.concatenate([cosine, np.full(len(turned.pairs), np.nan)])
                    evidence = np.concatenate([evidence, np.zeros((len(turned.pairs), len(EVIDENCE)))])
                    scores = np.concatenate([scores, np.ones(len(turned.pairs))])
                    is_confirmed = np.concatenate([is_confirmed, np.zeros(len(turned.pairs), bool)])
                    identical = np.concatenate([identical, np.zeros(len(turned.pairs), bool)])
                    todo = np.concatenate([todo, more])
                    result.candidates += len(turned.pairs)
                    _verify_parallel(catalog, pair_evidence, pairs, cosine, more, evidence, progress, cancel)
                    result.rechecked += _dense_recheck(catalog, pairs, evidence, more, progress, cancel)
            timings["dense"] = time.perf_counter() - started_dense
        families = variant_families(catalog, np.unique(pairs)) if len(pairs) else {}
        listed = listed_images(catalog, np.unique(pairs)) if len(pairs) else set()
        scores[todo] = competing_scores(pairs[todo], evidence[todo], families, listed)
    else:
        names = _verify_parallel(catalog, verifier, pairs, cosine, todo, scores, progress, cancel)
    result.scoring = "+".join(sorted(names)) or ("identical files" if len(pairs) else "none")
    timings["verify"] = time.perf_counter() - t - timings.get("dense", 0.0)
    if keep_candidates:
        result.candidate_pairs, result.candidate_scores = pairs.copy(), scores.copy()
        if verifier is None:
            result.candidate_evidence = evidence

    keep = (scores >= threshold) | is_confirmed
    pairs, scores, is_confirmed = pairs[keep], scores[keep], is_confirmed[keep]
    result.verified = len(pairs)
    # declared variants (product feed): scored above like any pair, reported only on request
    if families is None:
        families = variant_families(catalog, np.unique(pairs)) if len(pairs) else {}
    variant = declared_variant_mask(pairs, families) & ~is_confirmed
    result.variant_pairs = int(variant.sum())
    if not include_variants and variant.any():
        pairs, scores, is_confirmed = pairs[~variant], scores[~variant], is_confirmed[~variant]
    _check(cancel)

    # 3. grouping
    t = time.perf_counter()
    if progress:
        progress(0, 1, "grouping")
    area = _areas(catalog, np.unique(pairs)) if len(pairs) else {}
    stars = group_pairs(pairs, scores, area=area, preferred=references(catalog), apart=ignored.tolist(),
                        family=None if include_variants else families, together=confirmed.tolist())
    confirmed_keys = set(_pair_keys(pairs[is_confirmed]).tolist()) if is_confirmed.any() else set()
    stars.sort(key=lambda g: (-len(g[1]), g[0]))
    groups = []
    for gid, (rep, members) in enumerate(stars, start=1):
        groups.append(DuplicateGroup(
            group_id=gid, representative=Member(rep),
            members=[Member(m, s, confirmed=_key(rep, m) in confirmed_keys) for m, s in members]))
    if with_records:
        attach_records(catalog, groups)
    result.groups = groups
    timings["grouping"] = time.perf_counter() - t
    if progress:
        progress(1, 1, "grouping")
    result.timings = timings
    result.seconds = time.perf_counter() - started
    _remember_scan(catalog, catalog_version)
    return result


#: query images re-checked per chunk of :func:`_dense_recheck` (each is decoded: ~20 ms)
DENSE_CHUNK_IMAGES = 8


def _dense_recheck(catalog: Catalog, pairs: np.ndarray, evidence: np.ndarray, todo: np.ndarray,
                   progress: Progress | None, cancel: CancelToken | None) -> int:
    """:func:`engine.match_policy.dense_recheck` of the pairs ``todo`` (newer image as the query,
    as :func:`pair_evidence` measured them) in place in ``evidence``, on the verification threads,
    a few query images per chunk. Returns how many images were decoded again."""
    newer = _newer_first(pairs[todo])
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

    _verify_parallel(catalog, _dense_verifier, pairs, evidence, rows, evidence, in_images if progress else None,
                     cancel, chunks=chunks, stage="re-checking unmatched images")
    return images


#: images embedded turned per model call of :func:`_turned_pairs` (3 rotations each)
TURNED_CHUNK_IMAGES = 8


@dataclass
class _Turned:
    pairs: np.ndarray        # new candidate pairs [m, 2] (smaller id first)
    queried: int             # images embedded turned


def _turned_pairs(catalog: Catalog, index, model: Model, pairs: np.ndarray, evidence: np.ndarray, since: int,
                  ignored: np.ndarray, progress: Progress | None, cancel: CancelToken | None) -> _Turned:
    """Candidate pairs for turned copies (the match policy's turned pass): every image scanned
    (all, or those added since version ``since``) that is not settled
    (:func:`engine.match_policy.settled_images` of ``evidence``) is decoded, its content (inside a uniform border, as search embeds a
    query) embedded turned by 90, 180 and 270 degrees, and its ROTATED_TOP nearest images for
    each become candidate pairs, unless already candidates or marked "not a duplicate". Images
    whose file cannot be read are skipped."""
    settled = match_policy.settled_images(pairs, evidence)
    scanned = catalog.db.conn.execute("SELECT id, path FROM images WHERE version > ? ORDER BY id", (since,)).fetchall()
    todo = [(int(i), p) for i, p in scanned if int(i) not in settled]
    none = _Turned(np.zeros((0, 2), np.int64), 0)
    if not todo or match_policy.ROTATED_TOP <= 0:
        return none
    known = set(_pair_keys(pairs).tolist())
    if len(ignored):
        known.update(_pair_keys(ignored).tolist())
    found: set[tuple[int, int]] = set()
    queried = 0
    for start in range(0, len(todo), TURNED_CHUNK_IMAGES):
        _check(cancel)
        ids, images = [], []
        for image_id, path in todo[start:start + TURNED_CHUNK_IMAGES]:
            rgb = decode(path, model.resize_short_side)
            if rgb is None:
                continue
            rgb = content(rgb)
            ids.append(image_id)
            images.extend(np.ascontiguousarray(np.rot90(rgb, r)) for r in (1, 2, 3))
        if images:
            _, embs = model.run(images)
            labels, _ = _query(index, embs, min(match_policy.ROTATED_TOP + 1, len(index)), SEARCH_EF)
            for n, image_id in enumerate(ids):
                for other in labels[3 * n: 3 * n + 3].ravel().tolist():
                    pair = (min(image_id, other), max(image_id, other))
                    if other != image_id and _key(*pair) not in known:
                        found.add(pair)
            queried += len(ids)
        if progress:
            progress(min(start + TURNED_CHUNK_IMAGES, len(todo)), len(todo), "searching turned images")
    return _Turned(np.array(sorted(found), np.int64).reshape(-1, 2), queried)


def scan_model(catalog: Catalog, requested: str | None = None) -> Model | None:
    """The model a scan embeds turned images with: ``requested`` (a pack; errors are raised), else
    the catalog's own pack (:func:`engine.session.load_model_for`), or None when that cannot be
    loaded or does not match the catalog's embeddings (synthetic catalogs): the scan then has no
    turned pass."""
    from .session import load_model_for

    if requested:
        return load_model_for(catalog, requested)
    try:
        return load_model_for(catalog)
    except (LookalikeError, OSError, ValueError):
        return None


def _dense_verifier(catalog: Catalog, pairs: np.ndarray, evidence: np.ndarray) -> tuple[np.ndarray, str]:
    return match_policy.dense_recheck(catalog, _newer_first(pairs), evidence), "verified"


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


def _verify_parallel(catalog: Catalog, verifier, pairs: np.ndarray, cosine: np.ndarray, todo: np.ndarray,
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
            _check(cancel)
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
            _check(cancel)
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


def _key(a: int, b: int) -> int:
    lo, hi = (a, b) if a < b else (b, a)
    return (lo << 32) | hi


def _remember_scan(catalog: Catalog, version: int) -> None:
    if not catalog.readonly:
        catalog.set_meta(SCANNED_VERSION_KEY, str(version))


def _areas(catalog: Catalog, ids: np.ndarray) -> dict[int, float]:
    conn = catalog.db.conn
    out: dict[int, float] = {}
    ids = ids.tolist()
    for n in range(0, len(ids), 500):
        chunk = ids[n:n + 500]
        for i, w, h in conn.execute(
                f"SELECT id, width, height FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk):
            out[i] = float((w or 0) * (h or 0))
    return out


def attach_records(catalog: Catalog, groups: Sequence[DuplicateGroup]) -> None:
    """Fill each member's ``record`` (path and product data) from the catalog."""
    ids = [i for g in groups for i in g.image_ids]
    records = {r["image_id"]: r for r in catalog.image_records(ids)}
    for g in groups:
        for m in [g.representative, *g.members]:
            m.record = records.get(m.image_id, {"image_id": m.image_id, "path": ""})


def rescore_group(catalog: Catalog, group: DuplicateGroup, representative: int,
                  verifier=None) -> DuplicateGroup:
    """The group re-centred on another of its images (the user's "set as reference"), every other
    image scored afresh against the new representative. Nothing is dropped: members that no longer
    reach the threshold are for the caller to show or remove."""
    verifier = verifier or verify_pairs
    everyone = {m.image_id: m for m in [group.representative, *group.members]}
    if representative not in everyone:
        raise LookalikeError(f"image {representative} is not in group {group.group_id}")
    others = [i for i in everyone if i != representative]
    pairs = np.array([(min(representative, i), max(representative, i)) for i in others], np.int64).reshape(-1, 2)
    scores, _ = verifier(catalog, pairs, np.full(len(pairs), np.nan)) if len(pairs) else (np.zeros(0), "")
    rep = everyone[representative]
    members = [Member(i, float(s), everyone[i].confirmed, everyone[i].record) for i, s in zip(others, scores)]
    members.sort(key=lambda m: (-(m.score or 0.0), m.image_id))
    return DuplicateGroup(group.group_id, Member(rep.image_id, None, False, rep.record), members)


# ---------------------------------------------------------------------- export
CSV_FIELDS = ("group_id", "path", "product_id", "title", "score", "representative", "role", "image_id",
              "representative_product_id", "brand", "price", "currency", "width", "height", "confirmed",
              "item_group_id", "color", "size")


def csv_rows(groups: Iterable[DuplicateGroup]) -> Iterable[list]:
    for g in groups:
        rep = g.representative
        for m in [rep, *g.members]:
            r = m.record
            v = variant_attributes(r)
            yield [g.group_id, r.get("path"), r.get("product_id"), r.get("title"),
                   None if m.score is None else round(float(m.score), 4), rep.record.get("path"),
                   "representative" if m is rep else "copy", m.image_id, rep.record.get("product_id"),
                   r.get("brand"), r.get("price"), r.get("currency"), r.get("width"), r.get("height"),
                   m.confirmed if m is not rep else None,
                   v.get("item_group_id"), v.get("color"), v.get("size")]


def write_groups_csv(groups: Iterable[DuplicateGroup], out: IO[str]) -> int:
    """One row per image (representative first), spreadsheet-safe cells. Returns the row count."""
    from .export import write_csv

    return write_csv(out, CSV_FIELDS, csv_rows(groups))


def export_csv(groups: Iterable[DuplicateGroup], path) -> int:
    from .export import open_output

    with open_output(path) as out:
        return write_groups_csv(groups, out)


# ---------------------------------------------------------------------- naming images
def resolve_image(catalog: Catalog, text: str) -> int:
    """An image id from a path (as indexed) or a number."""
    if text.isdigit() and catalog.image_record(int(text)) is not None:
        return int(text)
    row = catalog.image_by_path(os.path.abspath(os.path.expanduser(text)))
    if row is None:
        raise LookalikeError(f"{text}: not an image of catalog {catalog.directory}")
    return int(row["id"])
