"""The match score users see and the named thresholds built on it.

A score is a calibrated, probability-like value in [0, 1]: the estimated chance that the catalog
image shows the same product as the query (an edited copy of it, or another photo of it). It is
computed from the evidence the search gathers for each candidate (:class:`Evidence`):

* ``cosine``  — cosine similarity of the two CNN embeddings;
* ``inliers`` — ORB matches consistent with one RANSAC homography (engine.verification), 0 when the
  candidate was not verified or nothing agreed;
* ``colour``  — intersection of the two colour histograms of non-background pixels.

and combined by a logistic model whose few coefficients were fitted on labelled query/candidate
pairs with cross-validation (``benchmarks/match_quality.py fit``; figures and the procedure in
docs/match-quality.md). Because the score is calibrated, one threshold means the same thing for
every query, in search, in the duplicate finder and in the GUI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: logistic model: score = sigmoid(INTERCEPT + sum(COEF[name] * feature[name])),
#: features as computed by :func:`feature_vector`. Fitted by benchmarks/match_quality.py fit.
COEF: dict[str, float] = {
    "cosine": 12.0,
    "log_inliers": 2.5,
    "colour": 2.0,
    "aligned": 2.0,
}
INTERCEPT = -14.0

# name -> minimum score, strongest first (measured precision/recall: docs/match-quality.md)
THRESHOLDS: dict[str, float] = {
    "copy": 0.90,
    "same product": 0.50,
    "similar": 0.20,
}

# how each threshold is shown to a user
STRENGTH_LABELS: dict[str, str] = {
    "copy": "likely copy",
    "same product": "same product",
    "similar": "similar",
}


@dataclass
class Evidence:
    cosine: float
    inliers: int = 0
    colour: float = 0.0
    aligned: float = 0.0       # pixel agreement after alignment by the homography (verification)
    unchanged: float = 0.0     # share of product pixels whose colour the query kept (after alignment)
    margin: float = 0.0        # aligned minus the best aligned of the other verified candidates
    verified: bool = False     # local features were compared (inliers is meaningful)
    transform: str = ""        # "", "mirrored", "rotated 90", ...: how the query matched

    def to_json(self) -> dict:
        return {"cosine": round(float(self.cosine), 4), "inliers": int(self.inliers),
                "colour": round(float(self.colour), 4), "aligned": round(float(self.aligned), 4),
                "unchanged": round(float(self.unchanged), 4), "margin": round(float(self.margin), 4),
                "verified": self.verified, "transform": self.transform}


#: a candidate counts as a geometric competitor of the others from this many inliers on
MARGIN_MIN_INLIERS = 15


def set_margins(evidence) -> None:
    """Fill ``Evidence.margin`` for the candidates of one query: how much better a verified
    candidate's aligned pixel agreement is than that of the best other verified candidate (an
    edited copy agrees with its original better than with a recoloured variant of the same
    photograph). A lone verified candidate's margin is its own agreement; unverified: 0."""
    evidence = list(evidence)
    strong = [e for e in evidence if e.inliers >= MARGIN_MIN_INLIERS]
    for e in evidence:
        if e.inliers < MARGIN_MIN_INLIERS:
            e.margin = 0.0
        else:
            e.margin = e.aligned - max((o.aligned for o in strong if o is not e), default=0.0)


def feature_vector(cosine, inliers, colour, aligned) -> dict[str, np.ndarray]:
    return {
        "cosine": np.asarray(cosine, np.float64),
        "log_inliers": np.log1p(np.asarray(inliers, np.float64)),
        "colour": np.asarray(colour, np.float64),
        "aligned": np.asarray(aligned, np.float64),
    }


def calibrated(cosine, inliers=0, colour=0.0, aligned=0.0) -> np.ndarray:
    """The calibrated score of (arrays of) evidence."""
    f = feature_vector(cosine, inliers, colour, aligned)
    z = INTERCEPT + sum(COEF[k] * f[k] for k in COEF)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def score(evidence: Evidence) -> float:
    return float(calibrated(evidence.cosine, evidence.inliers, evidence.colour, evidence.aligned))


def embedding_score(cosine: np.ndarray | float) -> np.ndarray | float:
    """Score from the cosine similarity alone (no local evidence): what the score is for a
    candidate that was not verified, with average colour agreement. An upper-bound-free,
    monotone function of the cosine, used to prune candidates before verification."""
    return calibrated(cosine, 0, 0.5, 0.0)


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
    if not (0.0 <= number <= 1.0) or math.isnan(number):
        raise ValueError(f"threshold {number} is outside [0, 1]")
    return number
