"""Synthetic embeddings for duplicate-finder tests: unit vectors and vectors at a chosen cosine."""

from __future__ import annotations

import numpy as np


def unit(x) -> np.ndarray:
    """``x`` (one vector or rows) scaled to unit length, float32."""
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def near(rng: np.random.Generator, v: np.ndarray, cos: float) -> np.ndarray:
    """A unit vector at cosine ``cos`` from unit vector ``v`` (random direction otherwise)."""
    noise = rng.standard_normal(v.shape)
    noise -= noise.dot(v) * v
    noise /= np.linalg.norm(noise)
    return unit(cos * v + np.sqrt(1 - cos ** 2) * noise)
