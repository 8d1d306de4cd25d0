"""The text read on a catalog's images (``catalog.image_texts``): stored by an import with
read_text (engine.text_reading), read by the products' text index (engine.text_match)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from .catalog_schema import image_text_values

if TYPE_CHECKING:
    from .catalog import Catalog


class ImageTextStore:
    def __init__(self, catalog: "Catalog"):
        self.catalog = catalog

    def put(self, rows: Sequence[tuple]) -> None:
        """Store (image_id, reader, words, lines) rows: the text read on an image (engine.
        text_reading; ``reader`` its READER_ID, ``words`` the normalised words, ``lines``
        [(text, confidence, box corners), ...]). Replaces what was stored; rows of images that
        are gone are skipped. Bumps the catalog version (the text index follows it)."""
        if rows:
            with self.catalog.transaction() as db:
                db.conn.executemany(
                    "INSERT OR REPLACE INTO image_text (image_id, reader, words, lines) "
                    "SELECT ?,?,?,? WHERE EXISTS (SELECT 1 FROM images WHERE id=?)",
                    [(int(r[0]), *image_text_values(r[1:]), int(r[0])) for r in rows])

    def get(self, image_ids: Sequence[int]) -> dict[int, dict]:
        """image id -> {"reader", "words", "lines"} for the images with stored text."""
        if not self.catalog._has_column("image_text", "words"):
            return {}
        return {i: {"reader": reader, "words": json.loads(words), "lines": json.loads(lines)}
                for i, reader, words, lines in self.catalog._rows_by_id(
                    "SELECT image_id, reader, words, lines FROM image_text WHERE image_id IN ({})", image_ids)}

    def iter_words(self) -> Iterator[tuple[int, str | None, list[str]]]:
        """(image id, product id or None, words) of every image with stored text, by id."""
        if not self.catalog._has_column("image_text", "words"):
            return
        for i, product, words in self.catalog.db.conn.execute(
                "SELECT t.image_id, i.product_id, t.words FROM image_text t JOIN images i ON i.id = t.image_id "
                "ORDER BY t.image_id"):
            yield i, product, json.loads(words)

    def images_without(self, reader: str, image_ids: Iterable[int] | None = None) -> list[tuple[int, str]]:
        """(image id, path) of the images (all, or those of ``image_ids``) with no text stored by
        ``reader``, by id."""
        sql = ("SELECT i.id, i.path FROM images i LEFT JOIN image_text t ON t.image_id = i.id AND t.reader = ? "
               "WHERE t.image_id IS NULL")
        if image_ids is None:
            return list(self.catalog.db.conn.execute(sql + " ORDER BY i.id", (reader,)))
        return sorted(self.catalog._rows_by_id(sql + " AND i.id IN ({})", image_ids, (reader,)))
