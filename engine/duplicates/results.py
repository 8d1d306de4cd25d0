"""What a duplicate scan returns: groups of images, their members, the scan's counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..errors import LookalikeError
from .variants import variant_attributes

#: progress(done, total, stage)
Progress = Callable[[int, int, str], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


class ScanCancelled(LookalikeError):
    """The scan was cancelled; nothing was changed."""

    def __init__(self) -> None:
        super().__init__("duplicate scan cancelled")


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
    rechecked: int = 0                  # re-checks of unconfirmed images with their dense keypoints
    turned: int = 0                     # images also searched for turned copies (words or turned embeddings)
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
        passes = ""
        if self.rechecked or self.turned:
            passes = (f", {self.rechecked} re-checked with more keypoints, {self.turned} searched for "
                      f"turned copies")
        return (f"{len(self.groups)} groups, {self.duplicates} copies ({scope}, {self.candidates} candidate "
                f"pairs, {self.verified} at or above {self.threshold:.2f} by {self.scoring} score, "
                f"{self.ignored} ignored{variants}{passes}) in {self.seconds:.1f} s")

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "scoring": self.scoring, "images": self.images,
                "queried": self.queried, "candidates": self.candidates, "verified": self.verified,
                "ignored": self.ignored, "variant_pairs": self.variant_pairs, "rechecked": self.rechecked,
                "turned": self.turned,
                "include_variants": self.include_variants, "only_new": self.only_new,
                "seconds": round(self.seconds, 3),
                "groups": [g.to_json() for g in self.groups]}
