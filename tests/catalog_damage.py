"""Damaging a catalog's files on purpose, for the damage and fuzz tests: bytes overwritten in the
pages of one SQLite table or index, or in the file's header page."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path


def table_pages(db_path: Path, name: str, *, overflow: bool = False) -> tuple[int, list[int]]:
    """(page size, the numbers of the pages that b-tree ``name`` uses), from its root page in
    ``sqlite_master`` and SQLite's ``dbstat`` table (b-tree pages; ``overflow``: with the
    overflow pages of long rows)."""
    con = sqlite3.connect(db_path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")       # every page in the main file
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (name,)).fetchone()
        assert root, f"no table or index {name}"
        kinds = "" if overflow else " AND pagetype != 'overflow'"
        pages = [r[0] for r in con.execute(
            f"SELECT pageno FROM dbstat WHERE name=?{kinds} ORDER BY pageno", (name,))]
    finally:
        con.close()
    return page_size, pages or [root[0]]


def corrupt_page(db_path: Path, page: int, page_size: int, *, seed: int = 0, n: int = 64,
                 offset: int | None = None) -> None:
    """Overwrite ``n`` random bytes of ``page`` (1-based) at ``offset`` within it (default: its
    b-tree page header and cell pointers; on page 1 after the 100-byte file header)."""
    rng = random.Random(seed)
    if offset is None:
        offset = 100 if page == 1 else 0
    with open(db_path, "r+b") as fh:
        fh.seek((page - 1) * page_size + offset)
        fh.write(bytes(rng.randrange(256) for _ in range(n)))


def corrupt_table(db_path: Path, name: str, *, seed: int = 0, n: int = 64, leaf: bool = True) -> int:
    """Damage one page of b-tree ``name`` (a leaf page, else its root); returns its number."""
    page_size, pages = table_pages(db_path, name)
    page = pages[len(pages) // 2] if leaf and len(pages) > 1 else pages[0]
    corrupt_page(db_path, page, page_size, seed=seed, n=n)
    return page


def corrupt_header(db_path: Path, *, seed: int = 0) -> None:
    """Overwrite the first 64 bytes of the file (the "SQLite format 3" magic and header)."""
    corrupt_page(db_path, 1, 4096, seed=seed, offset=0)
