"""The duplicate scan: candidates, decisions, verification, grouping (see the package docstring)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .. import scoring, visual_words
from ..catalog import Catalog
from ..errors import LookalikeError
from ..match_policy import EVIDENCE, competing_scores
from .candidates import (CANDIDATE_FLOOR, DEFAULT_K, EXPAND_ABOVE, SEARCH_EF, hash_pairs, knn_candidates,
                         pair_key, pair_keys, turned_pairs, unique_pairs, word_turned_pairs)
from ..decision_store import CONFIRMED, NOT_DUPLICATE
from .grouping import group_pairs
from .results import CancelToken, DuplicateGroup, Member, Progress, ScanResult
from .variants import declared_variant_mask, listed_images, variant_families
from .verifying import check_cancel, pair_evidence, recheck_unconfirmed, verify_pairs, verify_parallel

if TYPE_CHECKING:
    from ..model import Model

SCANNED_VERSION_KEY = "dupes.scanned_version"


def scan(catalog: Catalog, *, threshold: float | str = "copy", k: int = DEFAULT_K,
         floor: float = CANDIDATE_FLOOR, expand_above: float = EXPAND_ABOVE, ef: int | None = SEARCH_EF,
         only_new: bool = False, include_variants: bool = False,
         progress: Progress | None = None, cancel: CancelToken | None = None,
         verifier: Callable[[Catalog, np.ndarray, np.ndarray], tuple[np.ndarray, str]] | None = None,
         with_records: bool = True, keep_candidates: bool = False, words: bool = True,
         dense: bool = True, turned: bool = True, model: Model | None = None) -> ScanResult:
    """Find the groups of near-duplicate images in ``catalog``.

    ``only_new`` checks only the images added or changed since the last completed scan against the
    whole catalog (a full scan the first time). Progress is reported as (done, total, stage);
    ``cancel.is_set()`` stops the scan with :class:`ScanCancelled`. Thread: any but the UI thread.
    By default pairs are scored by :func:`pair_evidence` + :func:`competing_scores`; a
    ``verifier(catalog, pairs, cosine) -> (scores, name)`` replaces that (e.g.
    :func:`embedding_verifier` for synthetic catalogs, :func:`verify_pairs` for lone-pair scores).
    Pairs between declared variants (different products of one item group) are scored like the
    others but reported only with ``include_variants`` (or when the user confirmed the pair);
    ``ScanResult.variant_pairs`` counts those at or above the threshold.
    ``words``: add the visual-word candidates (:mod:`engine.visual_words`: turned copies, which
    the embedding's kNN graph misses; catalogs up to ``visual_words.MAX_IMAGES`` images).
    ``dense``: an image that no pair confirms as a copy of an older image is matched again with
    more keypoints (:func:`engine.match_policy.dense_recheck`: copies under text or a logo), as
    search does with such a query. ``turned`` (with ``dense``): such an image that is also far
    from every other (a turned copy embeds far from its original) gets more candidates: where the
    visual words ran, its next best-scoring words and those of its dense keypoints
    (:func:`word_turned_pairs`); elsewhere, given
    ``model`` (the catalog's, :func:`scan_model`), it is embedded turned by 90/180/270 degrees and
    its nearest images become candidates, as search does. Without either there is no such pass.
    """
    started = time.perf_counter()
    threshold = scoring.resolve_threshold(threshold) if isinstance(threshold, str) else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise LookalikeError(f"threshold {threshold} is outside [0, 1]")
    timings: dict[str, float] = {}
    catalog_version = catalog.version
    since = -1
    if only_new:
        last = catalog.meta(SCANNED_VERSION_KEY)
        since = int(last) if last is not None else -1
    images = catalog.count_images()
    result = ScanResult(groups=[], threshold=threshold, scoring="", images=images, only_new=since >= 0,
                        include_variants=include_variants)

    t = time.perf_counter()
    index = catalog.vectors.graph_index()      # (a Milvus catalog's: a local one, see there)
    timings["index"] = time.perf_counter() - t
    if index is None or len(index) < 2:
        result.scoring = "none"
        result.seconds = time.perf_counter() - started
        remember_scan(catalog, catalog_version)
        return result

    # 1. candidates: kNN graph + byte-identical files + confirmed pairs
    t = time.perf_counter()
    pairs, cosine, result.queried = knn_candidates(
        catalog, index, since_version=since, k=k, floor=floor, expand_above=expand_above, ef=ef,
        progress=progress, cancel=cancel)
    if getattr(index, "projection", None) is not None:
        # a projected index (large catalogs) ranks by approximate similarities: good enough to
        # pick candidates, but scores are computed from the stored full embeddings
        cosine = np.full(len(pairs), np.nan)
    timings["candidates"] = time.perf_counter() - t
    words_index, ranked = None, None        # kept for the turned pass
    if words:
        # turned copies: the embedding is not rotation invariant, the ORB descriptors are
        t = time.perf_counter()
        query = None if since < 0 else catalog.image_ids(since)
        words_index = visual_words.build_index(catalog, cancel=cancel, progress=progress,
                                               queried=None if query is None else len(query))
        check_cancel(cancel)
        found = np.zeros((0, 2), np.int64)
        if words_index is not None:
            ranked = words_index.ranked(query, top=visual_words.RESERVE_TOP, cancel=cancel, progress=progress)
            check_cancel(cancel)
            found = ranked.pairs(visual_words.TOP)
        if len(found):
            pairs, cosine = unique_pairs(np.concatenate([pairs[:, 0], found[:, 0]]),
                                          np.concatenate([pairs[:, 1], found[:, 1]]),
                                          np.concatenate([cosine, np.full(len(found), np.nan)]))
        timings["words"] = time.perf_counter() - t
    t = time.perf_counter()
    same = hash_pairs(catalog, since)
    confirmed = catalog.decision_store.decided_pairs(CONFIRMED)
    ignored = catalog.decision_store.decided_pairs(NOT_DUPLICATE)
    extra = np.concatenate([same, confirmed]) if len(confirmed) else same
    if len(extra):
        all_pairs = np.concatenate([pairs, extra])
        all_cos = np.concatenate([cosine, np.where(np.arange(len(extra)) < len(same), 1.0, np.nan)])
        pairs, cosine = unique_pairs(all_pairs[:, 0], all_pairs[:, 1], all_cos)
    timings["candidates"] += time.perf_counter() - t
    check_cancel(cancel)

    # 2. user decisions, then verification
    keys = pair_keys(pairs) if len(pairs) else np.zeros(0, np.int64)
    if len(ignored):
        drop = np.isin(keys, pair_keys(ignored))
        result.ignored = int(drop.sum())
        pairs, cosine, keys = pairs[~drop], cosine[~drop], keys[~drop]
    result.candidates = len(pairs) + result.ignored
    is_confirmed = np.isin(keys, pair_keys(confirmed)) if len(confirmed) else np.zeros(len(pairs), bool)
    identical = np.isin(keys, pair_keys(same)) if len(same) else np.zeros(len(pairs), bool)

    t = time.perf_counter()
    scores = np.ones(len(pairs), np.float64)
    todo = np.nonzero(~identical)[0]
    families: dict[int, tuple[str, str]] | None = None    # image -> (item group, product)
    if verifier is None:
        # default: gather each pair's evidence (in parallel), then score every pair against its
        # images' other candidates, as search does
        evidence = np.zeros((len(pairs), len(EVIDENCE)), np.float64)
        names = verify_parallel(catalog, pair_evidence, pairs, cosine, todo, evidence, progress, cancel)
        if dense:
            started_dense = time.perf_counter()
            result.rechecked = recheck_unconfirmed(catalog, pairs, evidence, todo, progress, cancel)
            timings["recheck"] = time.perf_counter() - started_dense
            found = None
            if turned and words_index is not None:
                found = word_turned_pairs(catalog, words_index, ranked, pairs, evidence, ignored)
            elif turned and model is not None:
                found = turned_pairs(catalog, index, model, pairs, evidence, since, ignored, progress, cancel)
            if found is not None:
                result.turned = found.queried
            if found is not None and len(found.pairs):
                added = len(found.pairs)
                more = np.arange(len(pairs), len(pairs) + added)
                pairs = np.concatenate([pairs, found.pairs])
                cosine = np.concatenate([cosine, np.full(added, np.nan)])
                evidence = np.concatenate([evidence, np.zeros((added, len(EVIDENCE)))])
                scores = np.concatenate([scores, np.ones(added)])
                is_confirmed = np.concatenate([is_confirmed, np.zeros(added, bool)])
                identical = np.concatenate([identical, np.zeros(added, bool)])
                todo = np.concatenate([todo, more])
                result.candidates += added
                verify_parallel(catalog, pair_evidence, pairs, cosine, more, evidence, progress, cancel)
                result.rechecked += recheck_unconfirmed(catalog, pairs, evidence, more, progress, cancel)
            timings["dense"] = time.perf_counter() - started_dense      # the re-check and the turned pass
            timings["turned"] = timings["dense"] - timings["recheck"]
        families = variant_families(catalog, np.unique(pairs)) if len(pairs) else {}
        listed = listed_images(catalog, np.unique(pairs)) if len(pairs) else set()
        scores[todo] = competing_scores(pairs[todo], evidence[todo], families, listed)
    else:
        names = verify_parallel(catalog, verifier, pairs, cosine, todo, scores, progress, cancel)
    result.scoring = "+".join(sorted(names)) or ("identical files" if len(pairs) else "none")
    timings["verify"] = time.perf_counter() - t - timings.get("dense", 0.0)
    if keep_candidates:
        result.candidate_pairs, result.candidate_scores = pairs.copy(), scores.copy()
        if verifier is None:
            result.candidate_evidence = evidence

    keep = (scores >= threshold) | is_confirmed
    pairs, scores, is_confirmed = pairs[keep], scores[keep], is_confirmed[keep]
    result.verified = len(pairs)
    # declared variants (product feed): scored above like any pair, reported only on request
    if families is None:
        families = variant_families(catalog, np.unique(pairs)) if len(pairs) else {}
    variant = declared_variant_mask(pairs, families) & ~is_confirmed
    result.variant_pairs = int(variant.sum())
    if not include_variants and variant.any():
        pairs, scores, is_confirmed = pairs[~variant], scores[~variant], is_confirmed[~variant]
    check_cancel(cancel)

    # 3. grouping
    t = time.perf_counter()
    if progress:
        progress(0, 1, "grouping")
    area = image_areas(catalog, np.unique(pairs)) if len(pairs) else {}
    stars = group_pairs(pairs, scores, area=area, preferred=catalog.decision_store.references(), apart=ignored.tolist(),
                        family=None if include_variants else families, together=confirmed.tolist())
    confirmed_keys = set(pair_keys(pairs[is_confirmed]).tolist()) if is_confirmed.any() else set()
    stars.sort(key=lambda g: (-len(g[1]), g[0]))
    groups = []
    for gid, (rep, members) in enumerate(stars, start=1):
        groups.append(DuplicateGroup(
            group_id=gid, representative=Member(rep),
            members=[Member(m, s, confirmed=pair_key(rep, m) in confirmed_keys) for m, s in members]))
    if with_records:
        attach_records(catalog, groups)
    result.groups = groups
    timings["grouping"] = time.perf_counter() - t
    if progress:
        progress(1, 1, "grouping")
    result.timings = timings
    result.seconds = time.perf_counter() - started
    remember_scan(catalog, catalog_version)
    return result


def scan_model(catalog: Catalog, requested: str | None = None) -> Model | None:
    """The model a scan embeds turned images with: ``requested`` (a pack; errors are raised), else
    the catalog's own pack (:func:`engine.session.load_model_for`), or None when that cannot be
    loaded or does not match the catalog's embeddings (synthetic catalogs): the scan then has no
    turned pass."""
    from ..session import load_model_for

    if requested:
        return load_model_for(catalog, requested)
    try:
        return load_model_for(catalog)
    except (LookalikeError, OSError, ValueError):
        return None


def remember_scan(catalog: Catalog, version: int) -> None:
    """Note the version scanned, when the write lock is free (a note, not worth waiting for: a
    process that writes the catalog now makes the next scan start over anyway)."""
    with catalog.write_lock_if_free() as free:
        if free:
            catalog.set_meta(SCANNED_VERSION_KEY, str(version))


def image_areas(catalog: Catalog, ids: np.ndarray) -> dict[int, float]:
    """image id -> pixels (width x height; 0 where unknown): the larger image represents a group."""
    return {i: float((w or 0) * (h or 0)) for i, (w, h) in catalog.image_dimensions(ids.tolist()).items()}


def attach_records(catalog: Catalog, groups: Sequence[DuplicateGroup]) -> None:
    """Fill each member's ``record`` (path and product data) from the catalog."""
    ids = [i for g in groups for i in g.image_ids]
    records = {r["image_id"]: r for r in catalog.image_records(ids)}
    for g in groups:
        for m in [g.representative, *g.members]:
            m.record = records.get(m.image_id, {"image_id": m.image_id, "path": ""})


def rescore_group(catalog: Catalog, group: DuplicateGroup, representative: int,
                  verifier=None) -> DuplicateGroup:
    """The group re-centred on another of its images (the user's "set as reference"), every other
    image scored afresh against the new representative. Nothing is dropped: members that no longer
    reach the threshold are for the caller to show or remove."""
    verifier = verifier or verify_pairs
    everyone = {m.image_id: m for m in [group.representative, *group.members]}
    if representative not in everyone:
        raise LookalikeError(f"image {representative} is not in group {group.group_id}")
    others = [i for i in everyone if i != representative]
    pairs = np.array([(min(representative, i), max(representative, i)) for i in others], np.int64).reshape(-1, 2)
    scores, _ = verifier(catalog, pairs, np.full(len(pairs), np.nan)) if len(pairs) else (np.zeros(0), "")
    rep = everyone[representative]
    members = [Member(i, float(s), everyone[i].confirmed, everyone[i].record) for i, s in zip(others, scores)]
    members.sort(key=lambda m: (-(m.score or 0.0), m.image_id))
    return DuplicateGroup(group.group_id, Member(rep.image_id, None, False, rep.record), members)
