"""The catalog database's own checks and repairs (``catalog.health``), the SQL behind
`lookalike check` (engine.consistency decides what to check and what to report)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import Catalog


class CatalogHealth:
    def __init__(self, catalog: "Catalog"):
        self.catalog = catalog

    # ------------------------------------------------------------------ checks
    def integrity_check(self, full: bool = False) -> list[str]:
        """SQLite's ``quick_check`` (``integrity_check`` with ``full``): ["ok"] or the errors.
        Raises sqlite3.DatabaseError when the file is not a database any more."""
        pragma = "integrity_check" if full else "quick_check"
        return [r[0] for r in self.catalog.db.conn.execute(f"PRAGMA {pragma}")]   # constant name

    def foreign_key_problems(self) -> list[tuple]:
        """``PRAGMA foreign_key_check``: (table, rowid, parent table, key id) per broken link."""
        return self.catalog.db.conn.execute("PRAGMA foreign_key_check").fetchall()

    def highest_row_version(self) -> int:
        """The highest version stamped on an image or a tombstone (0 for none)."""
        conn = self.catalog.db.conn
        return max(conn.execute("SELECT coalesce(max(version), 0) FROM images").fetchone()[0],
                   conn.execute("SELECT coalesce(max(version), 0) FROM removed").fetchone()[0])

    def stale_tombstones(self) -> list[int]:
        """Images marked removed that are present all the same."""
        return [r[0] for r in self.catalog.db.conn.execute(
            "SELECT r.image_id FROM removed r JOIN images i ON i.id = r.image_id")]

    def embedding_sizes(self) -> list[tuple[int, int]]:
        """(embedding size in bytes, number of images), the most common size first."""
        return self.catalog.db.conn.execute(
            "SELECT length(embedding), count(*) FROM images GROUP BY 1 ORDER BY 2 DESC").fetchall()

    def embeddings_not_of_size(self, nbytes: int) -> list[int]:
        """Ids of the images whose stored embedding is not ``nbytes`` long."""
        return [r[0] for r in self.catalog.db.conn.execute(
            "SELECT id FROM images WHERE length(embedding) != ?", (int(nbytes),))]

    def damaged_local_features(self) -> list[tuple[int, str]]:
        """(image id, path) of the stored local features whose blobs do not hold what their
        layout says (engine.features.pack: an 8-byte head with the thumbnail's size, the
        thumbnail, 4 bytes per keypoint; 32 bytes per descriptor, mirrored ones as many; 36 bytes
        per dense keypoint). Reads the heads and lengths only, never the whole blobs."""
        out = []
        # (a catalog opened read-only before a column was added lacks it)
        mirrored = "length(f.mirrored)" if self.catalog._has_column("local_features", "mirrored") else "NULL"
        dense = "length(f.dense)" if self.catalog._has_column("local_features", "dense") else "NULL"
        for image_id, path, head, kp_len, desc_len, mirr_len, dense_len in self.catalog.db.conn.execute(
                "SELECT f.image_id, i.path, substr(f.keypoints, 1, 8), length(f.keypoints), "
                f"length(f.descriptors), {mirrored}, {dense} FROM local_features f "   # (constant text)
                "JOIN images i ON i.id = f.image_id"):
            ok = (isinstance(head, bytes) and len(head) == 8 and desc_len % 32 == 0
                  and (dense_len is None or dense_len % 36 == 0))
            if ok:
                th, tw = int.from_bytes(head[4:6], "little"), int.from_bytes(head[6:8], "little")
                ok = kp_len == 8 + th * tw * 3 + 4 * (desc_len // 32) and mirr_len in (None, desc_len)
            if not ok:
                out.append((int(image_id), path))
        return out

    # ------------------------------------------------------------------ repairs
    def drop_local_features(self, image_ids: list[int]) -> None:
        """Forget the stored local features of these images (recomputed by the backfill)."""
        with self.catalog.transaction(bump=False) as db:
            db.conn.executemany("DELETE FROM local_features WHERE image_id=?", [(int(i),) for i in image_ids])

    def reindex(self) -> None:
        """Rebuild SQLite's indexes (damaged indexes; the tables are the truth)."""
        self.catalog.db.conn.execute("REINDEX")

    def unlink_missing_products(self) -> int:
        """Unlink the images whose product does not exist; returns how many."""
        catalog = self.catalog
        with catalog.transaction() as db:
            return db.conn.execute(
                "UPDATE images SET product_id=NULL, version=? WHERE product_id IS NOT NULL "
                "AND product_id NOT IN (SELECT id FROM products)", (catalog.current_version,)).rowcount

    def raise_version(self) -> int:
        """Set the catalog version above every version stamped on a row; returns it."""
        with self.catalog.transaction(bump=False) as db:
            version = self.highest_row_version() + 1
            db.conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(version),))
        return version

    def drop_stale_tombstones(self) -> int:
        """Drop the removal marks of images that are present; returns how many."""
        with self.catalog.transaction() as db:
            return db.conn.execute("DELETE FROM removed WHERE image_id IN (SELECT id FROM images)").rowcount
