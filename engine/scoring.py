"""The match score users see and the named thresholds built on it.

A score is in [0, 1], higher is more similar, and means the same thing for every query, so one
threshold can be applied across queries, the duplicate finder and the GUI.

The thresholds are provisional values for the raw-embedding score (cosine similarity); the
match-quality work replaces them with calibrated, measured ones (docs/match-quality.md).
"""

from __future__ import annotations

import numpy as np

# name -> minimum score, strongest first
THRESHOLDS: dict[str, float] = {
    "copy": 0.90,
    "same product": 0.75,
    "similar": 0.60,
}

# how each threshold is shown to a user
STRENGTH_LABELS: dict[str, str] = {
    "copy": "likely copy",
    "same product": "same product",
    "similar": "similar",
}


def embedding_score(cosine: np.ndarray | float) -> np.ndarray | float:
    """Score from the cosine similarity of two L2-normalised embeddings."""
    return np.clip(cosine, 0.0, 1.0)


def strength(score: float) -> str:
    """The user-facing match strength for a score ("" below every threshold)."""
    for name, threshold in THRESHOLDS.items():
        if score >= threshold:
            return STRENGTH_LABELS[name]
    return ""


def resolve_threshold(value: str | float) -> float:
    """A threshold given by name ("copy", "same-product", ...) or as a number in [0, 1]."""
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        key = str(value).strip().lower().replace("-", " ").replace("_", " ")
        if key in THRESHOLDS:
            return THRESHOLDS[key]
        try:
            number = float(key)
        except ValueError:
            names = ", ".join(n.replace(" ", "-") for n in THRESHOLDS)
            raise ValueError(f"unknown threshold {value!r}: use one of {names} or a number in [0, 1]") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"threshold {number} is outside [0, 1]")
    return number
