"""The centre view of a photo taken in the world: what a phone photo shows in its middle.

A phone photo of a product shows a hand, a shelf, a price tag; the product often fills a third
of it, near the middle. Its whole-image embedding describes the scene as much as the product. The
*centre view* is the mean of the (L2-normalised) embeddings of the whole photo and of its centre
75% and 50% crops, each at the model's input size (so the crops are also seen closer), normalised
again. Compared with a catalog image's stored embedding, it finds the product better than the
whole photo does: on the grocery train phone photos against the store's catalog photos (1,350
queries, raw cosine, R@1) 0.484 -> 0.520 (Packages 0.631 -> 0.672, Vegetables 0.666 -> 0.748,
Fruit 0.268 -> 0.275); mean embeddings of more crops (the four corners as well) add no more than
0.005, pooling crops of the last feature map instead of running the model on them gains half as
much. A studio photo (a plain white backdrop; the product fills the frame) is its own centre
view and costs nothing more (:func:`wanted`).

The search uses the centre view as one more retrieval view and as the ``centre`` evidence of
the "same product" score's phone model (engine.scoring); catalog images keep their whole-image
embedding.
"""

from __future__ import annotations

import cv2
import numpy as np

from .features import backdrop

#: the centre crops, as a share of each side
CROPS = (0.75, 0.5)
#: a photo with at least this share of plain white backdrop is a studio photo: no centre view
#: (engine.scoring.STUDIO_BACKDROP: the same share turns the score's phone model fully off)
STUDIO_SHARE = 0.10
_PROBE_SIDE = 48


def white_share(rgb: np.ndarray) -> float:
    """The share of an image's pixels that are plain white backdrop (engine.features.backdrop),
    measured on a 48-px copy, as on the thumbnail the query's features keep."""
    img = np.asarray(rgb)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    scale = _PROBE_SIDE / max(h, w)
    if scale < 1:
        img = cv2.resize(np.ascontiguousarray(img), (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return backdrop(img)


def wanted(rgb: np.ndarray) -> bool:
    """Whether a query is a photo in the world (not a studio photo) and gains from a centre view."""
    return white_share(rgb) < STUDIO_SHARE


def crops(rgb: np.ndarray) -> list[np.ndarray]:
    """The centre crops of an image (:data:`CROPS`), largest first; the model resizes each to its
    input."""
    h, w = rgb.shape[:2]
    out = []
    for share in CROPS:
        ch, cw = max(1, int(h * share)), max(1, int(w * share))
        top, left = (h - ch) // 2, (w - cw) // 2
        out.append(np.ascontiguousarray(rgb[top:top + ch, left:left + cw]))
    return out


def combine(whole: np.ndarray, crop_embeddings: np.ndarray) -> np.ndarray:
    """The centre view from the whole image's embedding and its crops' (all L2-normalised)."""
    v = np.asarray(whole, np.float32) + np.asarray(crop_embeddings, np.float32).sum(axis=0)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else np.asarray(whole, np.float32)
