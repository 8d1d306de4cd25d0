"""Brand-protection cases, stored in the catalog database (``catalog.case_store``).

A case is a named set of suspect marketplace offers checked against the catalog: per offer its
image file (with the SHA-256 of the bytes examined), the columns of the offers CSV it came from,
its best catalog matches with their evidence, the edits found between the offer and its best
match, and the user's decision (infringing / not infringing / unsure) with a note. Checking a
case again skips the offers already checked with the same file; a decision survives re-checks.

The tables (``catalog_schema.CASE_SCHEMA``) are created with the catalog; a catalog made before
them gets them on its first case and reads as holding none until then (reading never writes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .catalog_schema import CASE_SCHEMA, LazyTables, now_iso
from .errors import LookalikeError

if TYPE_CHECKING:
    from .catalog import Catalog

INFRINGING = "infringing"
NOT_INFRINGING = "not_infringing"
UNSURE = "unsure"
DECISIONS = (INFRINGING, NOT_INFRINGING, UNSURE)
#: what a user may type for each decision
DECISION_WORDS = {"infringing": INFRINGING, "infringement": INFRINGING, "yes": INFRINGING,
                  "not": NOT_INFRINGING, "not_infringing": NOT_INFRINGING, "not-infringing": NOT_INFRINGING,
                  "no": NOT_INFRINGING, "unsure": UNSURE, "maybe": UNSURE}
DECISION_LABELS = {INFRINGING: "infringement", NOT_INFRINGING: "not infringing", UNSURE: "unsure"}

MAX_NAME = 100

_TABLES = LazyTables(CASE_SCHEMA)

_COLUMNS = ("number", "offer", "image_path", "sha256", "fields", "checked_at", "model_id", "score",
            "strength", "matches", "edits", "error", "decision", "note", "decided_at", "decided_sha256")


def parse_decision(word: str) -> str:
    """The stored decision for what a user typed; ValueError naming the choices otherwise."""
    found = DECISION_WORDS.get(str(word).strip().lower())
    if found is None:
        raise ValueError(f"unknown decision {word!r}: use infringing, not or unsure")
    return found


def check_name(name: str) -> str:
    """A case name, stripped; LookalikeError for an empty, overlong or unprintable one."""
    name = str(name).strip()
    if not name:
        raise LookalikeError("a case needs a name")
    if len(name) > MAX_NAME:
        raise LookalikeError(f"case name longer than {MAX_NAME} characters")
    if not name.isprintable():
        raise LookalikeError(f"case name {name!r} has control characters")
    return name


@dataclass
class OfferRecord:
    """One offer of a case, as stored."""
    offer: str                       # its key: the offers CSV's key column, else the image's path
    image_path: str
    fields: dict = field(default_factory=dict)   # the offers CSV's other columns, as read
    number: int = 0                  # its number within the case (1, 2, ...; 0: not stored yet)
    sha256: str | None = None        # of the image file's bytes, as examined
    checked_at: str | None = None
    model_id: str | None = None
    score: float | None = None       # of its best match (None: not checked, or it failed)
    strength: str = ""               # "copy", "same product", "similar" or ""
    matches: list = field(default_factory=list)   # its best matches: engine.search.Match.to_json()
    edits: dict | None = None        # engine.edits.EditReport.to_json() against the best match
    error: str | None = None         # why it could not be checked
    decision: str | None = None
    note: str = ""
    decided_at: str | None = None
    decided_sha256: str | None = None

    @property
    def checked(self) -> bool:
        return self.checked_at is not None and self.error is None

    @property
    def best(self) -> dict | None:
        return self.matches[0] if self.matches else None

    @property
    def decided_on_other_file(self) -> bool:
        """Decided, but on a different version of the image file than the one checked last."""
        return bool(self.decision and self.decided_sha256 and self.sha256 and self.decided_sha256 != self.sha256)

    def to_json(self) -> dict:
        return {"number": self.number, "offer": self.offer, "image": self.image_path, "sha256": self.sha256,
                "fields": self.fields, "checked_at": self.checked_at, "model_id": self.model_id,
                "score": None if self.score is None else round(float(self.score), 4),
                "strength": self.strength, "matches": self.matches,
                "edits": (self.edits or {}).get("edits", []), "edit_details": self.edits,
                "error": self.error, "decision": self.decision, "note": self.note,
                "decided_at": self.decided_at}

    def _row(self) -> tuple:
        return (self.number, self.offer, self.image_path, self.sha256, json.dumps(self.fields, ensure_ascii=False),
                self.checked_at, self.model_id, self.score, self.strength,
                json.dumps(self.matches, ensure_ascii=False), None if self.edits is None else json.dumps(self.edits),
                self.error, self.decision, self.note, self.decided_at, self.decided_sha256)

    @classmethod
    def _from_row(cls, row) -> OfferRecord:
        (number, offer, image_path, sha256, fields, checked_at, model_id, score, strength, matches, edits,
         error, decision, note, decided_at, decided_sha256) = row
        return cls(offer=offer, image_path=image_path, fields=json.loads(fields or "{}"), number=number,
                   sha256=sha256, checked_at=checked_at, model_id=model_id, score=score, strength=strength or "",
                   matches=json.loads(matches) if matches else [], edits=json.loads(edits) if edits else None,
                   error=error, decision=decision, note=note or "", decided_at=decided_at,
                   decided_sha256=decided_sha256)


@dataclass
class CaseSummary:
    name: str
    created_at: str
    offers: int
    checked: int
    failed: int
    decided: dict          # decision -> count
    sources: list          # the folders and files checked into it, in order


class CaseStore:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    # ------------------------------------------------------------------ schema
    def has_tables(self) -> bool:
        return _TABLES.present(self.catalog)

    def _ensure_schema(self) -> None:
        _TABLES.ensure(self.catalog)

    # ------------------------------------------------------------------ cases
    def names(self) -> list[str]:
        if not self.has_tables():
            return []
        return [r[0] for r in self.catalog.db.conn.execute("SELECT name FROM cases ORDER BY created_at, name")]

    def exists(self, name: str) -> bool:
        return self.has_tables() and self.catalog.db.conn.execute(
            "SELECT 1 FROM cases WHERE name=?", (check_name(name),)).fetchone() is not None

    def create(self, name: str, sources: Iterable[str] = ()) -> None:
        """Make the case if it is new, and remember ``sources`` (folders and files) as checked into it."""
        name = check_name(name)
        self._ensure_schema()
        with self.catalog.transaction(bump=False) as db:
            conn = db.conn
            conn.execute("INSERT OR IGNORE INTO cases (name, created_at) VALUES (?, ?)", (name, now_iso()))
            known = json.loads(conn.execute("SELECT sources FROM cases WHERE name=?", (name,)).fetchone()[0])
            for s in sources:
                if str(s) not in known:
                    known.append(str(s))
            conn.execute("UPDATE cases SET sources=? WHERE name=?", (json.dumps(known, ensure_ascii=False), name))

    def delete(self, name: str) -> int:
        """Drop a case and its offers; returns the number of offers dropped."""
        name = self._existing(name)
        with self.catalog.transaction(bump=False) as db:
            n = db.conn.execute("DELETE FROM case_offers WHERE case_name=?", (name,)).rowcount
            db.conn.execute("DELETE FROM cases WHERE name=?", (name,))
        return n

    def summary(self, name: str) -> CaseSummary:
        name = self._existing(name)
        conn = self.catalog.db.conn
        created, sources = conn.execute("SELECT created_at, sources FROM cases WHERE name=?", (name,)).fetchone()
        offers, checked, failed = conn.execute(
            "SELECT count(*), count(checked_at) - count(error), count(error) FROM case_offers WHERE case_name=?",
            (name,)).fetchone()
        decided = dict(conn.execute("SELECT decision, count(*) FROM case_offers WHERE case_name=? AND "
                                    "decision IS NOT NULL GROUP BY decision", (name,)).fetchall())
        return CaseSummary(name, created, offers, checked, failed, decided, json.loads(sources))

    def _existing(self, name: str) -> str:
        name = check_name(name)
        if not self.exists(name):
            known = self.names()
            hint = f" (cases: {', '.join(known[:5])}{', ...' if len(known) > 5 else ''})" if known else ""
            raise LookalikeError(f"no case named {name!r} in {self.catalog.directory}{hint}")
        return name

    # ------------------------------------------------------------------ offers
    def offers(self, name: str, *, decision: str | None = None) -> list[OfferRecord]:
        """The case's offers, strongest match first (failed and unchecked ones last)."""
        name = self._existing(name)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM case_offers WHERE case_name=?"
        args: list = [name]
        if decision is not None:
            sql += " AND decision=?"
            args.append(decision)
        sql += " ORDER BY score IS NULL, score DESC, number"
        return [OfferRecord._from_row(r) for r in self.catalog.db.conn.execute(sql, args)]

    def checked_files(self, name: str) -> dict[str, str | None]:
        """offer key -> SHA-256 of the file it was checked with (failed offers are not listed)."""
        if not self.exists(name):
            return {}
        return dict(self.catalog.db.conn.execute(
            "SELECT offer, sha256 FROM case_offers WHERE case_name=? AND checked_at IS NOT NULL AND error IS NULL",
            (check_name(name),)).fetchall())

    def save(self, name: str, records: Iterable[OfferRecord]) -> list[OfferRecord]:
        """Store check results (one transaction): a new offer gets the next number, a known one
        keeps its number, decision and note. Returns the records as stored."""
        name = check_name(name)
        records = list(records)
        if not records:
            return []
        self._ensure_schema()
        with self.catalog.transaction(bump=False) as db:
            conn = db.conn
            if conn.execute("SELECT 1 FROM cases WHERE name=?", (name,)).fetchone() is None:
                conn.execute("INSERT INTO cases (name, created_at) VALUES (?, ?)", (name, now_iso()))
            top = conn.execute("SELECT coalesce(max(number), 0) FROM case_offers WHERE case_name=?",
                               (name,)).fetchone()[0]
            for r in records:
                old = conn.execute("SELECT number, decision, note, decided_at, decided_sha256 FROM case_offers "
                                   "WHERE case_name=? AND offer=?", (name, r.offer)).fetchone()
                if old is None:
                    top += 1
                    r.number = top
                else:
                    r.number, r.decision, r.note, r.decided_at, r.decided_sha256 = old
                    r.note = r.note or ""
                conn.execute(f"INSERT OR REPLACE INTO case_offers (case_name, {', '.join(_COLUMNS)}) "
                             f"VALUES (?, {', '.join('?' * len(_COLUMNS))})", (name, *r._row()))
        return records

    def find(self, name: str, ref: str | int) -> OfferRecord:
        """The offer a user named: its number ("12" or "#12"), its key, its image's path, or a
        file name only one of the case's offers has. LookalikeError otherwise."""
        name = self._existing(name)
        conn = self.catalog.db.conn
        cols = ", ".join(_COLUMNS)
        text = str(ref).strip()
        number = text.removeprefix("#")
        row = None
        if number.isdigit():
            row = conn.execute(f"SELECT {cols} FROM case_offers WHERE case_name=? AND number=?",
                               (name, int(number))).fetchone()
        for column in ("offer", "image_path"):
            if row is None:
                rows = conn.execute(f"SELECT {cols} FROM case_offers WHERE case_name=? AND {column}=?",
                                    (name, text)).fetchall()
                if not rows and column == "image_path" and text:
                    rows = conn.execute(f"SELECT {cols} FROM case_offers WHERE case_name=? AND image_path=?",
                                        (name, os.path.abspath(os.path.expanduser(text)))).fetchall()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            base = os.path.basename(text)
            rows = [r for r in conn.execute(f"SELECT {cols} FROM case_offers WHERE case_name=?", (name,))
                    if base and os.path.basename(r[2]) == base]
            if len(rows) > 1:
                raise LookalikeError(f"case {name!r}: {len(rows)} offers have an image named {base!r}; "
                                     "give the offer's number instead")
            row = rows[0] if rows else None
        if row is None:
            raise LookalikeError(f"case {name!r} has no offer {text!r} (give its number, key or image)")
        return OfferRecord._from_row(row)

    def decide(self, name: str, ref: str | int, decision: str | None, note: str | None = None) -> OfferRecord:
        """Record (or with None, clear) the decision on an offer; ``note``: replace its note
        (None keeps it). Returns the offer as stored."""
        if decision is not None and decision not in DECISIONS:
            decision = parse_decision(decision)
        record = self.find(name, ref)
        name = check_name(name)
        stamp = now_iso() if decision else None
        with self.catalog.transaction(bump=False) as db:
            db.conn.execute("UPDATE case_offers SET decision=?, decided_at=?, decided_sha256=?, note=coalesce(?, note) "
                            "WHERE case_name=? AND offer=?",
                            (decision, stamp, record.sha256 if decision else None, note, name, record.offer))
        record.decision, record.decided_at = decision, stamp
        record.decided_sha256 = record.sha256 if decision else None
        if note is not None:
            record.note = note
        return record

    def set_note(self, name: str, ref: str | int, note: str) -> OfferRecord:
        """Replace an offer's note, leaving its decision (and when and on which file it was made)
        as it is. Returns the offer as stored."""
        record = self.find(name, ref)
        with self.catalog.transaction(bump=False) as db:
            db.conn.execute("UPDATE case_offers SET note=? WHERE case_name=? AND offer=?",
                            (note, check_name(name), record.offer))
        record.note = note
        return record
