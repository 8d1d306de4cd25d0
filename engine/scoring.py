"""The match score users see and the named thresholds built on it.

A score is a calibrated, probability-like value in [0, 1]: the estimated chance that the catalog
image shows the same product as the query (an edited copy of it, or another photo of it). It is
computed from the evidence engine.match_policy gathers for each candidate (:class:`Evidence`),
in search and in the duplicate scan alike; this module is the only place a score is computed:

* ``cosine``  — cosine similarity of the two CNN embeddings;
* ``inliers`` — ORB matches consistent with one RANSAC homography (engine.geometry), 0 when the
  candidate was not verified or nothing agreed;
* ``colour``  — intersection of the two colour histograms of non-background pixels;
* ``aligned``, ``unchanged`` — after warping the query onto the candidate with that homography:
  correlation of their pixels, and the share of product pixels whose colour is kept;
* ``margin``  — ``aligned`` minus the best ``aligned`` of the query's other verified candidates
  (tells an edited copy's original from a recoloured variant of the same photograph).

and combined by two small logistic models (verified / not verified) whose few coefficients were
fitted on labelled query/candidate pairs with cross-validation (``benchmarks/match_quality.py
fit``; figures and the procedure in docs/match-quality.md). Because the score is calibrated, one threshold means the same thing for
every query, in search, in the duplicate finder and in the GUI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: The "copy" model, fitted by ``benchmarks/match_quality.py fit``: a candidate with at least
#: MARGIN_MIN_INLIERS verified inliers is scored by the "verified" model (is it *this* photo, or a
#: recoloured variant of it?); an unverified candidate's score is the "same product" score below.
#: sigmoid(intercept + sum(coef[name] * feature[name])) over :func:`feature_vector`'s features.
MODELS: dict[str, dict] = {
    "verified": {"intercept": -10.576, "coef": {
        "log_inliers": 0.535, "aligned": 6.164, "margin": 0.94, "best": 3.981,
        "unchanged": 1.245, "partial": -2.662}},
}

#: The "same product" models (another photo of the product: re-shot by a phone, another
#: seller's photo, another view), fitted by ``benchmarks/same_product.py fit`` on the grocery val
#: split and the Luma other views, over :func:`same_product_features`. A query photographed on a
#: plain white backdrop (a studio photo: its colours are the product's) is scored by "studio"; a
#: photo of the product in the world (a hand, a shelf: its colours are mostly the scene's) by
#: "phone"; where the catalog has a learned metric (engine.learned_metric), by "studio_learned"
#: and "phone_learned", which compare the query with the candidate's product prototype in the
#: learned space. In between, the two logits are mixed by the backdrop's share
#: (:func:`studio_weight`).
SAME_PRODUCT_MODELS: dict[str, dict] = {
    "studio": {"intercept": -10.023, "coef": {"cosine": 2.397, "colour": 7.103, "log_inliers": 0.481}},
    "studio_learned": {"intercept": -8.906, "coef": {"product": 3.906, "colour": 6.445, "log_inliers": 0.301}},
    "phone": {"intercept": -8.272, "coef": {"centre": 10.914, "log_inliers": 0.542, "text": 0.919}},
    "phone_learned": {"intercept": -5.398, "coef": {"product": 11.687, "log_inliers": 0.38, "text": 0.661}},
}
#: a "same product" score is at most this: below "copy", which only verified geometry can reach
SAME_PRODUCT_MAX = 0.74
#: a query whose thumbnail is this share plain white (or more) is a studio photo
STUDIO_BACKDROP = 0.10

# name -> minimum score, strongest first; measured precision/recall in docs/match-quality.md
THRESHOLDS: dict[str, float] = {
    "copy": 0.75,           # precision >= 0.99 on the Luma edited copies (match_quality.py thresholds)
    "same product": 0.245,  # precision >= 0.90 of the top result on the grocery val phone photos
    "similar": 0.014,       # precision >= 0.5 of the top result there (same_product.py thresholds)
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
    identical: bool = False    # the same file (bytes), or pixel-identical after alignment: score 1
    transform: str = ""        # "", "mirrored", "rotated 90", ...: how the query matched
    learned: float | None = None   # cosine in the catalog's learned space (None: not measured)
    product: float | None = None   # ... against the mean of the candidate's product's photos
    text: float = 0.0          # agreement of the words read on the query with the product's text
    words: list = field(default_factory=list)   # the matched words: [query word, product word]
    backdrop: float = 0.0      # the query's plain white share (a studio photo: engine.features.backdrop)
    metric: bool = False       # ``product`` was measured in the catalog's learned space
    centre: float | None = None    # cosine of the query's centre view (engine.centre_view; None: none)

    def to_json(self) -> dict:
        out = {"cosine": round(float(self.cosine), 4), "inliers": int(self.inliers),
               "colour": round(float(self.colour), 4), "aligned": round(float(self.aligned), 4),
               "unchanged": round(float(self.unchanged), 4), "margin": round(float(self.margin), 4),
               "verified": self.verified, "transform": self.transform, "identical": self.identical,
               "text": round(float(self.text), 4), "words": [list(w) for w in self.words]}
        if self.learned is not None:
            out["learned"] = round(float(self.learned), 4)
        if self.product is not None:
            out["product"] = round(float(self.product), 4)
        if self.centre is not None:
            out["centre"] = round(float(self.centre), 4)
        out["backdrop"] = round(float(self.backdrop), 4)
        out["metric"] = self.metric
        return out


#: a candidate with this many inliers is *verified*: scored by the "verified" model, and a
#: geometric competitor of the query's other verified candidates (engine.match_policy's margins)
MARGIN_MIN_INLIERS = 15


def feature_vector(cosine, inliers=0, colour=0.0, aligned=0.0, unchanged=0.0, margin=0.0) -> dict[str, np.ndarray]:
    return {
        "cosine": np.asarray(cosine, np.float64),
        "log_inliers": np.log1p(np.asarray(inliers, np.float64)),
        "colour": np.asarray(colour, np.float64),
        "aligned": np.asarray(aligned, np.float64),
        "unchanged": np.asarray(unchanged, np.float64),
        # some colours kept, others changed: the signature of a variant recoloured in places
        "partial": 4.0 * np.asarray(unchanged, np.float64) * (1.0 - np.asarray(unchanged, np.float64)),
        "margin": np.asarray(margin, np.float64),
        # the verified candidate the query agrees with best (a copy has one original)
        "best": (np.asarray(margin, np.float64) > 0).astype(np.float64),
    }


def same_product_features(cosine, product=None, colour=0.0, text=0.0, inliers=0,
                          centre=None) -> dict[str, np.ndarray]:
    """The features of the "same product" models: the plain cosine, the cosine of the query's
    centre view (engine.centre_view; the plain cosine for a studio photo), the cosine against the
    candidate's product prototype in the catalog's learned space (engine.match_policy; the plain
    cosine without one), colour agreement, the agreement of the words read on the query with the
    product's text, and verified inliers."""
    cosine = np.asarray(cosine, np.float64)
    return {
        "cosine": cosine,
        "centre": cosine if centre is None else np.asarray(centre, np.float64),
        "product": cosine if product is None else np.asarray(product, np.float64),
        "colour": np.asarray(colour, np.float64),
        "text": np.asarray(text, np.float64),
        "log_inliers": np.log1p(np.asarray(inliers, np.float64)),
    }


def studio_weight(backdrop) -> np.ndarray:
    """How much a query is a studio photo: its plain white share over STUDIO_BACKDROP, in [0, 1]."""
    return np.clip(np.asarray(backdrop, np.float64) / STUDIO_BACKDROP, 0.0, 1.0)


def same_product(cosine, *, product=None, colour=0.0, text=0.0, inliers=0, backdrop=0.0,
                 learned: bool = False, centre=None) -> np.ndarray:
    """The "same product" score of (arrays of) evidence, in [0, SAME_PRODUCT_MAX]. ``learned``
    (per element or for all): ``product`` was measured in the catalog's learned space."""
    f = same_product_features(cosine, product, colour, text, inliers, centre)
    w = studio_weight(backdrop)
    learned = np.asarray(learned, bool)
    z_studio = np.where(learned, _linear(SAME_PRODUCT_MODELS["studio_learned"], f),
                        _linear(SAME_PRODUCT_MODELS["studio"], f))
    z_phone = np.where(learned, _linear(SAME_PRODUCT_MODELS["phone_learned"], f),
                       _linear(SAME_PRODUCT_MODELS["phone"], f))
    z = w * z_studio + (1.0 - w) * z_phone
    return SAME_PRODUCT_MAX / (1.0 + np.exp(-np.clip(z, -50, 50)))


def _linear(model: dict, f: dict[str, np.ndarray]) -> np.ndarray:
    return model["intercept"] + sum(c * f[name] for name, c in model["coef"].items())


def _logistic(model: dict, f: dict[str, np.ndarray]) -> np.ndarray:
    z = model["intercept"] + sum(c * f[name] for name, c in model["coef"].items())
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


#: cosine from which a candidate whose aligned pixels all agree counts as the identical image
IDENTICAL_COSINE = 0.999


def score(evidence: Evidence) -> float:
    """The score of one candidate's evidence (:func:`score_arrays`)."""
    return float(scores([evidence])[0])


def scores(evidence) -> np.ndarray:
    """:func:`score` of many candidates in one vectorised evaluation (a search's candidates:
    ~40x faster than one call each)."""
    ev = list(evidence)
    if not ev:
        return np.zeros(0, np.float64)
    x = np.array([(e.cosine, e.inliers, e.colour, e.aligned, e.unchanged, e.margin,
                   e.cosine if e.product is None else e.product, e.text, e.backdrop,
                   e.cosine if e.centre is None else e.centre) for e in ev], np.float64)
    return score_arrays(*x[:, :6].T, identical=np.array([e.identical for e in ev]), product=x[:, 6],
                        text=x[:, 7], backdrop=x[:, 8], learned=np.array([e.metric for e in ev]),
                        centre=x[:, 9])


def score_arrays(cosine, inliers, colour, aligned, unchanged, margin, *, identical=None, features=None,
                 product=None, text=0.0, backdrop=0.0, learned=False, centre=None) -> np.ndarray:
    """The score of arrays of evidence (one element per candidate): the stronger of two claims,
    "a copy of this photo" (the verified model, for candidates with MARGIN_MIN_INLIERS verified
    inliers) and "the same product" (:func:`same_product`, below the "copy" threshold); 1 for
    identical images (``identical``: the same file, or pixel-identical after alignment);
    :func:`embedding_score` where ``features`` is False (neither image has local features); 0
    where the cosine is NaN (an image is missing)."""
    cos = np.asarray(cosine, np.float64)
    safe_cos = np.nan_to_num(cos, nan=0.0)
    inliers = np.asarray(inliers, np.float64)
    f = feature_vector(safe_cos, inliers, colour, aligned, unchanged, margin)
    copy = np.where(inliers >= MARGIN_MIN_INLIERS, _logistic(MODELS["verified"], f), 0.0)
    same = same_product(safe_cos, product=np.nan_to_num(np.asarray(safe_cos if product is None else product,
                                                                    np.float64), nan=0.0),
                        colour=colour, text=text, inliers=inliers, backdrop=backdrop, learned=learned,
                        centre=None if centre is None else np.nan_to_num(np.asarray(centre, np.float64), nan=0.0))
    s = np.maximum(copy, same)
    same_pixels = (safe_cos >= IDENTICAL_COSINE) & (np.asarray(aligned) >= 0.99) & (np.asarray(unchanged) >= 0.99)
    if identical is not None:
        same_pixels |= np.asarray(identical, bool)
    s = np.where(same_pixels, 1.0, s)
    if features is not None:
        s = np.where(np.asarray(features, bool), s, np.asarray(embedding_score(safe_cos), np.float64))
    return np.where(np.isnan(cos), 0.0, s)


def best_unverified_score(cosine: float, *, learned: bool = False) -> float:
    """The highest score a candidate at this cosine can reach without being verified (one inlier
    short of MARGIN_MIN_INLIERS, every other agreement perfect, either kind of photo): a search
    stops widening its candidate list once this falls below the minimum score asked for.
    ``learned``: the catalog has a learned metric (the prototype similarity is then bounded by
    1 alone)."""
    top = [float(same_product(cosine, product=1.0 if learned else cosine, colour=1.0, text=1.0,
                              inliers=MARGIN_MIN_INLIERS - 1, backdrop=b, learned=learned)) for b in (0.0, 1.0)]
    return max(top)


#: images compared by their embeddings alone count as copies from this cosine on (see
#: :func:`embedding_score`)
EMBEDDING_COPY_COSINE = 0.95


def embedding_score(cosine: np.ndarray | float) -> np.ndarray | float:
    """The only score there is for images whose pixels cannot be read (synthetic catalogs, files
    gone, two images without a single keypoint): the cosine similarity, mapped piecewise linearly
    so that EMBEDDING_COPY_COSINE lands on the "copy" threshold (and 0 on 0, 1 on 1). Not
    calibrated: the embedding alone never reaches the "copy" precision (on the Luma copies, a
    cosine of 0.95 or more is right for 86% of the pairs, 0.97 for 90%; a logistic fit of
    cosine alone tops out at 0.42), so "copy" here means near-identical embeddings. Search and
    the duplicate scan use :func:`score_arrays` wherever pixels exist."""
    c = np.clip(cosine, 0.0, 1.0)
    t, e = THRESHOLDS["copy"], EMBEDDING_COPY_COSINE
    return np.where(c >= e, t + (c - e) * (1.0 - t) / (1.0 - e), c * t / e)


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
