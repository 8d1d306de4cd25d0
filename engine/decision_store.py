"""The duplicate finder's user decisions, stored in the catalog database
(``catalog.decision_store``): pairs marked "not a duplicate" or "confirmed duplicate", and images
chosen as the reference (representative) of their group.

Both are keyed by the images' content hashes, so they survive re-imports, moves and renames and
are never confused by a reused image id. The tables (``catalog_schema.DECISION_SCHEMA``) are
created with the catalog; a catalog made before them gets them on its first decision, and reads as
holding none until then, so reading never writes (a read-only catalog can be scanned).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from .catalog_schema import DECISION_SCHEMA, LazyTables, now_iso
from .errors import CatalogError, LookalikeError

if TYPE_CHECKING:
    from .catalog import Catalog

NOT_DUPLICATE = "not_duplicate"
CONFIRMED = "confirmed"
DECISIONS = (NOT_DUPLICATE, CONFIRMED)

_TABLES = LazyTables(DECISION_SCHEMA)


class DecisionStore:
    def __init__(self, catalog: "Catalog"):
        self.catalog = catalog

    def has_tables(self) -> bool:
        """Whether this catalog has the decision tables (reads without them find no decisions)."""
        return _TABLES.present(self.catalog)

    def ensure_schema(self) -> None:
        """Create the decision tables in a catalog made before them (a write: called only by
        the methods that store a decision)."""
        _TABLES.ensure(self.catalog)

    def hashes(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> content hash; raises CatalogError for an id the catalog does not hold."""
        ids = [int(i) for i in image_ids]
        out = self.catalog.content_hashes(ids)
        missing = [i for i in ids if i not in out]
        if missing:
            raise CatalogError(f"{self.catalog.directory}: no image with id {missing[0]}")
        return out

    # ------------------------------------------------------------------ pair decisions
    def mark_pairs(self, pairs: Iterable[tuple[int, int]], decision: str,
                   scores: Sequence[float | None] | None = None) -> int:
        """Remember ``decision`` ("not_duplicate" or "confirmed") for image-id pairs. A later
        decision on the same pair replaces the earlier one. Returns the number of pairs."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}: use one of {', '.join(DECISIONS)}")
        pairs = [(int(a), int(b)) for a, b in pairs]
        for a, b in pairs:
            if a == b:
                raise LookalikeError(f"image {a} cannot be a duplicate of itself")
        if not pairs:
            return 0
        scores = list(scores) if scores is not None else [None] * len(pairs)
        self.ensure_schema()
        hashes = self.hashes({i for p in pairs for i in p})
        stamp = now_iso()
        rows = []
        for (a, b), score in zip(pairs, scores):
            (ha, ia), (hb, ib) = sorted([(hashes[a], a), (hashes[b], b)])
            rows.append((ha, hb, decision, stamp, ia, ib, None if score is None else float(score)))
        with self.catalog.transaction(bump=False) as db:
            db.conn.executemany("INSERT OR REPLACE INTO pair_decisions (a, b, decision, at, a_id, b_id, score) "
                                "VALUES (?,?,?,?,?,?,?)", rows)
        return len(rows)

    def forget_pairs(self, pairs: Iterable[tuple[int, int]]) -> int:
        """Drop any decision on these image-id pairs; returns the number dropped."""
        pairs = [(int(a), int(b)) for a, b in pairs]
        if not pairs or not self.has_tables():
            return 0
        hashes = self.hashes({i for p in pairs for i in p})
        keys = [tuple(sorted((hashes[a], hashes[b]))) for a, b in pairs]
        with self.catalog.transaction(bump=False) as db:
            return sum(db.conn.execute("DELETE FROM pair_decisions WHERE a=? AND b=?", k).rowcount for k in keys)

    def decisions(self) -> list[dict]:
        """Every stored decision, oldest first, with the images it applies to now (ids and paths;
        None when no image in the catalog has that content any more): decision, at, score,
        hash_a, hash_b, a_id, a_path, b_id, b_path."""
        if not self.has_tables():
            return []
        conn = self.catalog.db.conn
        out = []
        for a, b, decision, at, a_id, b_id, score in conn.execute(
                "SELECT a, b, decision, at, a_id, b_id, score FROM pair_decisions ORDER BY at, a, b").fetchall():
            row = {"decision": decision, "at": at, "score": score, "hash_a": a, "hash_b": b}
            for side, digest, last_id in (("a", a, a_id), ("b", b, b_id)):
                # the image that had the id when decided, else the oldest with that content
                found = conn.execute("SELECT id, path FROM images WHERE content_hash=? ORDER BY id=? DESC, id "
                                     "LIMIT 1", (digest, last_id)).fetchone()
                row[f"{side}_id"], row[f"{side}_path"] = found if found else (None, None)
            out.append(row)
        return out

    def decided_pairs(self, decision: str) -> np.ndarray:
        """The image-id pairs [m, 2] (lo, hi), unique and sorted, a decision currently applies to
        (every image with either content hash)."""
        if not self.has_tables():
            return np.zeros((0, 2), np.int64)
        rows = self.catalog.db.conn.execute(
            "SELECT ia.id, ib.id FROM pair_decisions d JOIN images ia ON ia.content_hash = d.a "
            "JOIN images ib ON ib.content_hash = d.b WHERE d.decision=? AND ia.id != ib.id",
            (decision,)).fetchall()
        if not rows:
            return np.zeros((0, 2), np.int64)
        arr = np.array(rows, np.int64)
        return np.unique(np.sort(arr, axis=1), axis=0)

    # ------------------------------------------------------------------ references
    def set_reference(self, image_id: int, reference: bool = True) -> None:
        """Make an image the preferred representative of any group it is in (or stop it being one)."""
        self.ensure_schema()
        digest = self.hashes([image_id])[int(image_id)]
        with self.catalog.transaction(bump=False) as db:
            if reference:
                db.conn.execute("INSERT OR REPLACE INTO dupe_references VALUES (?, ?, ?)",
                                (digest, int(image_id), now_iso()))
            else:
                db.conn.execute("DELETE FROM dupe_references WHERE content_hash=?", (digest,))

    def references(self) -> set[int]:
        """Image ids the user chose as representatives (every image with a chosen content)."""
        if not self.has_tables():
            return set()
        return {r[0] for r in self.catalog.db.conn.execute(
            "SELECT i.id FROM dupe_references r JOIN images i ON i.content_hash = r.content_hash")}
