"""The grouping policy: star groups from verified pairs."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from ..match_policy import declared_variants
from .candidates import pair_key


def group_pairs(pairs: np.ndarray, scores: np.ndarray, *, area: dict[int, float] | None = None,
                preferred: Iterable[int] = (), apart: Iterable[tuple[int, int]] = (),
                family: Mapping[int, tuple[str, str]] | None = None,
                together: Iterable[tuple[int, int]] = ()
                ) -> list[tuple[int, list[tuple[int, float]]]]:
    """Star groups from verified pairs (every pair given is an accepted edge).

    Returns [(representative, [(member, score against the representative), ...]), ...]. Each image
    is in at most one group and every member is directly linked to its representative.
    Representatives are chosen greedily: a ``preferred`` image first, then the image with the
    most links to images not yet grouped, then the largest ``area``, then the smallest id (the
    oldest). Two images of a pair in ``apart`` (the user said "not a duplicate") never share a
    group: the better-scoring one joins, the other stays free for another group. ``family``
    (image -> (item group, product), :func:`variant_families`) keeps declared variants apart the
    same way: a pair of different products of one item group is no link, and two such images
    never share a group, unless the pair is in ``together`` (the user confirmed it). Where images
    conflict, a member the user confirmed as a copy of the representative joins first.
    Deterministic for a given input."""
    import heapq

    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    scores = np.asarray(scores, np.float64)
    if len(pairs) == 0:
        return []
    area = area or {}
    preferred = set(int(i) for i in preferred)
    apart_keys = {pair_key(int(a), int(b)) for a, b in apart}
    family = dict(family) if family else {}
    together_keys = {pair_key(int(a), int(b)) for a, b in together}

    def variants(a: int, b: int) -> bool:   # declared variants the user did not confirm
        return declared_variants(family, a, b) and pair_key(a, b) not in together_keys

    if apart_keys or family:                # a pair kept apart is no link at all
        linked = np.array([pair_key(a, b) not in apart_keys and not variants(a, b)
                           for a, b in pairs.tolist()], bool)
        pairs, scores = pairs[linked], scores[linked]
        if len(pairs) == 0:
            return []
    nodes, inverse = np.unique(pairs, return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    # adjacency in CSR form: both directions of every edge
    src = np.concatenate([inverse[:, 0], inverse[:, 1]])
    dst = np.concatenate([inverse[:, 1], inverse[:, 0]])
    w = np.concatenate([scores, scores])
    order = np.lexsort((dst, src))
    src, dst, w = src[order], dst[order], w[order]
    starts = np.searchsorted(src, np.arange(len(nodes) + 1))
    dst_l, w_l, starts_l = dst.tolist(), w.tolist(), starts.tolist()
    node_l = nodes.tolist()
    grouped = [False] * len(nodes)
    free = [starts_l[i + 1] - starts_l[i] for i in range(len(nodes))]   # links to ungrouped images

    def key(i: int) -> tuple:
        node = node_l[i]
        return (0 if node in preferred else 1, -free[i], -area.get(node, 0.0), node)

    heap = [key(i) + (i,) for i in range(len(nodes))]
    heapq.heapify(heap)
    groups: list[tuple[int, list[tuple[int, float]]]] = []
    while heap:
        entry = heapq.heappop(heap)
        i = entry[-1]
        if grouped[i]:
            continue
        if entry[:-1] != key(i):            # stale: its neighbours were grouped since it was pushed
            heapq.heappush(heap, key(i) + (i,))
            continue
        if free[i] == 0:
            continue                        # every image it matches is already in a group
        members = [(j, w_l[e]) for e in range(starts_l[i], starts_l[i + 1])
                   if not grouped[(j := dst_l[e])]]
        if apart_keys or family:
            # confirmed copies of the representative first, then the best scores
            members.sort(key=lambda m: (pair_key(node_l[i], node_l[m[0]]) not in together_keys, -m[1], node_l[m[0]]))
            accepted: list[tuple[int, float]] = []
            in_family: dict[str, list[int]] = {}    # item group -> accepted images of it
            for j, sc in members:
                nj = node_l[j]
                fam = family.get(nj)
                if apart_keys and any(pair_key(nj, node_l[o]) in apart_keys for o, _ in accepted):
                    continue
                if fam is not None and any(variants(nj, o) for o in in_family.get(fam[0], ())):
                    continue
                accepted.append((j, sc))
                if fam is not None:
                    in_family.setdefault(fam[0], []).append(nj)
            members = accepted
        grouped[i] = True
        for j, _ in members:
            grouped[j] = True
        touched = {i} | {j for j, _ in members}
        for t in touched:                   # their other neighbours lose a free link
            for e in range(starts_l[t], starts_l[t + 1]):
                free[dst_l[e]] -= 1
        members.sort(key=lambda m: (-m[1], node_l[m[0]]))
        groups.append((node_l[i], [(node_l[j], s) for j, s in members]))
    return groups
