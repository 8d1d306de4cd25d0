"""The match policy: how a query image and a candidate are compared, and what counts.

Search (a query image against the catalog) and the duplicate scan (catalog images against each
other) both judge a match here, with the same constants and rules:

1. **Embedding**: candidates come by cosine similarity of the CNN embeddings (the caller's
   index); every candidate gets its colour agreement (:func:`add_colours`).
2. **Plain verification** (:func:`verify_pair`): ORB matches + RANSAC homography
   (engine.geometry); a candidate with MARGIN_MIN_INLIERS inliers is *verified* and its pixels are
   compared after alignment. A match **confirms a copy** (:func:`confirms_copy`) with
   CONFIRMED_INLIERS inliers and aligned pixels of at least ALIGNED_CONFIRMED.
3. **Mirrored**: while no candidate confirms a copy, the mirrored query is verified too (a
   nearly symmetric product matches its mirrored copy plainly, under the wrong geometry, hence
   the aligned condition). Catalog pairs use the stored mirrored descriptors.
4. **Dense**: when nothing verified, the query is matched again with DENSE_KEYPOINTS keypoints
   (overlaid text takes the strongest corners); only a confirmed copy's inlier count
   (CONFIRMED_INLIERS) counts from this pass.
5. **Turned**: a query that embeds far from everything (nearest cosine below
   ROTATION_MAX_COSINE) and is not confirmed is embedded turned by 90/180/270 degrees; the
   nearest ROTATED_TOP images of each become candidates and are verified plain and mirrored.
6. **Margin** (:func:`set_margins`, :func:`graph_margins`): a verified candidate's aligned
   agreement minus the best of the query's other verified candidates (an edited copy agrees
   with its original better than with a recoloured variant of the same photo).
7. **Score**: :mod:`engine.scoring` turns the evidence into the calibrated score.

Where search and the scan differ, on purpose (each measured on its own benchmark, see
docs/match-quality.md and docs/duplicates.md):

* search verifies its VERIFY_TOP nearest candidates from the query's pixels; the scan verifies
  every candidate pair from stored features (the newer image as the query, :func:`pair_evidence`)
  and compares aligned pixels on luminance when *either* image is grey (either may be the copy);
* search re-matches densely when nothing verified (fewer than MARGIN_MIN_INLIERS inliers); the
  scan when nothing *confirms a copy* (:func:`dense_recheck_rows`), decoding the image again;
* search skips the turned pass once any candidate has CONFIRMED_INLIERS inliers; the scan once
  one confirms a copy (:func:`settled_images`);
* the scan's margins let product data settle competition between declared variants and copies
  of one listing's photo (:func:`graph_margins`).
"""

from __future__ import annotations

from typing import Callable, Collection, Mapping

import numpy as np

from . import scoring
from .feature_store import decode, features_for, thumbnails_for
from .features import (DENSE_KEYPOINTS, Features, backdrop, catalog_features, colour_similarity, dense_features,
                       dense_of, fill_colours, mirror_of, mirrored_features)
from .geometry import Alignment, Verification, aligned_similarity, verify
from .scoring import MARGIN_MIN_INLIERS, Evidence

#: candidates (best by embedding cosine) whose local features are geometrically verified
VERIFY_TOP = 10
#: candidates verified before stopping early at a confirmed copy
VERIFY_MIN = 8
#: a match with this many inliers confirms a copy (with ALIGNED_CONFIRMED): no mirrored match
CONFIRMED_INLIERS = 25
#: ... when its aligned pixels also agree at least this much: the plain features of a nearly
#: symmetric product match its mirrored copy too, under the wrong (unmirrored) geometry
ALIGNED_CONFIRMED = 0.9
#: candidates verified against the mirrored query (a mirrored copy embeds close to its original)
MIRROR_TOP = 8
#: candidates matched again with the query's DENSE_KEYPOINTS when none verified; 0 disables
DENSE_TOP = 4
#: nearest images of each turned query (90/180/270 degrees) added and verified; 0 disables
ROTATED_TOP = 4
#: the turned queries are tried only when no candidate is closer than this (cosine)
ROTATION_MAX_COSINE = 0.8
#: mirrored pre-test of :func:`pair_evidence`: every MIRROR_PRETEST_STRIDE-th mirrored keypoint
#: is matched first, and the full mirrored match runs only when that subset alone gives at least
#: MIRROR_PRETEST_INLIERS inliers (every mirrored true copy of the Luma benchmark passes it, at a
#: quarter of the cost of a full match; docs/duplicates.md)
MIRROR_PRETEST_STRIDE = 4
MIRROR_PRETEST_INLIERS = 6
#: the same pre-test for :func:`dense_recheck`, which counts only matches of CONFIRMED_INLIERS:
#: every other dense keypoint first (such a match keeps about half its inliers in that half)
DENSE_PRETEST_STRIDE = 2
DENSE_PRETEST_INLIERS = 8
#: columns of :func:`pair_evidence`
EVIDENCE = ("cosine", "inliers", "colour", "aligned", "unchanged", "features", "product", "backdrop",
            "metric")


def confirms_copy(inliers, aligned):
    """Whether a match confirms a copy: CONFIRMED_INLIERS inliers and aligned pixels of at least
    ALIGNED_CONFIRMED (scalars or arrays)."""
    return (np.asarray(inliers) >= CONFIRMED_INLIERS) & (np.asarray(aligned) >= ALIGNED_CONFIRMED)


def verify_pair(query: Features, candidate: Features, *, either_grey: bool = False
                ) -> tuple[Verification, Alignment | None]:
    """ORB/RANSAC verification of one candidate, and its aligned pixel agreement when the
    candidate is verified (MARGIN_MIN_INLIERS): pure, so it can run on any thread.
    ``either_grey``: compare on luminance when either image is grey (catalog pairs)."""
    v = verify(query, candidate)
    al = (aligned_similarity(query, candidate, v.homography, either_grey=either_grey)
          if v.inliers >= MARGIN_MIN_INLIERS else None)
    return v, al


# ---------------------------------------------------------------------- margins
#: another verified candidate competes with one (its margin) only with at least this share of
#: its inliers: a recoloured variant of the same photo matches with about as many, an image that
#: shares a corner of it with far fewer
MARGIN_SUPPORT = 0.3


def set_margins(evidence) -> None:
    """Fill ``Evidence.margin`` for the candidates of one query: how much better a verified
    candidate's aligned pixel agreement is than that of the best other verified candidate with
    comparable support (MARGIN_SUPPORT). A lone verified candidate's margin is its own agreement;
    unverified: 0."""
    evidence = list(evidence)
    strong = [e for e in evidence if e.inliers >= MARGIN_MIN_INLIERS]
    for e in evidence:
        if e.inliers < MARGIN_MIN_INLIERS:
            e.margin = 0.0
        else:
            e.margin = e.aligned - max((o.aligned for o in strong
                                        if o is not e and o.inliers >= MARGIN_SUPPORT * e.inliers), default=0.0)


def declared_variants(family: Mapping[int, tuple[str, str]], a: int, b: int) -> bool:
    """Whether images ``a`` and ``b`` are declared variants: different products of one item group
    (``family``: image id -> (item group, product id))."""
    fa, fb = family.get(a), family.get(b)
    return fa is not None and fb is not None and fa[0] == fb[0] and fa[1] != fb[1]


# ---------------------------------------------------------------------- a query against candidates
#: photos of one product averaged into its prototype at most (the first by id)
PROTOTYPE_IMAGES = 64


def prototypes(catalog, project, products, exclude: Collection[int] = ()) -> dict[str, np.ndarray]:
    """product id -> the normalised mean of its photos (at most PROTOTYPE_IMAGES, the first by id)
    after ``project``, for the products with two or more photos. Images in ``exclude`` (those a
    search must not return, e.g. the query itself) take no part."""
    members = catalog.images_of_products(p for p in products if p) if products else {}
    if exclude:
        members = {p: [i for i in m if i not in exclude] for p, m in members.items()}
    members = {p: m[:PROTOTYPE_IMAGES] for p, m in members.items() if len(m) > 1}
    out: dict[str, np.ndarray] = {}
    if members:
        every = sorted({i for m in members.values() for i in m})
        at = {i: n for n, i in enumerate(every)}
        vecs = project(catalog.embeddings(every))
        for product, m in members.items():
            mean = vecs[[at[i] for i in m]].mean(axis=0)
            out[product] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def add_product_similarity(catalog, metric, query: np.ndarray, evidence: dict[int, Evidence],
                           records: dict[int, dict], backdrop: float = 0.0,
                           centre: np.ndarray | None = None, exclude: Collection[int] = ()) -> None:
    """The re-shot evidence of a query's candidates: ``learned``, the cosine of the query and the
    candidate image in the catalog's learned space (engine.learned_metric; the plain cosine when
    the catalog has no metric), ``product``, the query against the mean of the candidate's
    product's photos there (several photos of a product describe it better than one; an image
    without a product is its own prototype), and the query's ``backdrop`` (how much of a studio
    photo it is, engine.features.backdrop). ``query``: the query's embedding(s) [D] or [M, D]
    (several views: the best counts). ``centre``: the query's centre view
    (engine.centre_view), measured against each candidate as ``centre``. ``exclude``: images
    left out of the prototypes (the search's excluded images)."""
    if not evidence:
        return
    project = (lambda x: np.asarray(x, np.float32)) if metric is None else metric.apply
    q = project(np.atleast_2d(np.asarray(query, np.float32)))
    ids = list(evidence)
    stored = catalog.embeddings(ids) if metric is not None or centre is not None else None
    if metric is None:          # the plain cosine: the search has measured it already
        learned = np.array([evidence[i].cosine for i in ids])
    else:
        learned = (project(stored) @ q.T).max(axis=1)
    if centre is not None:
        for image_id, c in zip(ids, (stored @ np.asarray(centre, np.float32)).tolist()):
            evidence[image_id].centre = float(c)
    protos = prototypes(catalog, project, {records.get(i, {}).get("product_id") for i in ids}, exclude)
    for n, image_id in enumerate(ids):
        ev = evidence[image_id]
        ev.learned = float(learned[n])
        proto = protos.get(records.get(image_id, {}).get("product_id"))
        ev.product = ev.learned if proto is None else float((q @ proto).max())
        ev.metric = metric is not None
        ev.backdrop = backdrop


def add_text(index, words, evidence: dict[int, Evidence], records: dict[int, dict]) -> None:
    """The agreement of the words read on the query with each candidate's product text
    (engine.text_match; an image without a product by its own words): ``text`` and the matched
    words."""
    found = index.for_candidates(words, [(i, records.get(i, {}).get("product_id")) for i in evidence])
    for image_id, match in found.items():
        ev = evidence[image_id]
        ev.text = float(match.score)
        ev.words = [list(pair) for pair in match.pairs]


def add_colours(catalog, query: Features, evidence: dict[int, Evidence], paths: dict[int, str]) -> None:
    """Colour agreement of unverified candidates (a search's later groups), from their stored
    thumbnails."""
    stored = thumbnails_for(catalog, list(evidence), paths=paths)
    fill_colours(stored.values())
    for image_id, f in stored.items():
        evidence[image_id].colour = colour_similarity(query.colour, f.colour)


def verify_candidates(catalog, query: Features, kept: list, *, pool=None,
                      lap: Callable[[str], None] = lambda stage: None,
                      turned: Callable[[], list] | None = None) -> dict[int, Evidence]:
    """Evidence for a query's candidates ``kept`` ((image id, cosine, record), best first; a list
    this extends with the turned pass's candidates): colour agreement for all; verified ORB
    inliers and aligned pixel agreement for the VERIFY_TOP best by cosine, then the mirrored,
    dense and turned passes of the module docstring while no copy is confirmed. ``query``: the
    query's features with its kept image (``extract(..., keep_image=True)``). ``turned()``
    embeds the query turned by 90/180/270 degrees and returns the nearest ROTATED_TOP
    candidates of each, as (image id, cosine, record); None: no turned pass. ``pool``: an
    executor to verify candidates side by side; ``lap(stage)`` charges time to a stage."""
    evidence = {image_id: Evidence(cosine=float(sim)) for image_id, sim, _ in kept}
    paths = {image_id: rec["path"] for image_id, _, rec in kept}
    order = [image_id for image_id, _, _ in kept[:VERIFY_TOP]]
    stored = features_for(catalog, order, paths=paths)
    lap("load_features")

    def submit(qf, ids):
        """Start verifying ``ids`` (on the pool: the caller goes on meanwhile)."""
        ids = [i for i in ids if i in stored]
        if pool is not None and len(ids) > 1:
            return ids, pool.map(verify_pair, [qf] * len(ids), [stored[i] for i in ids])
        return ids, (verify_pair(qf, stored[i]) for i in ids)

    def finish(started, transform, min_inliers=0) -> int:
        best = 0
        for image_id, (v, al) in zip(*started):
            if v.inliers < min_inliers:
                continue
            ev = evidence[image_id]
            ev.verified = True
            if v.inliers > ev.inliers:
                ev.inliers = v.inliers
                ev.transform = transform
                if al is not None:
                    ev.aligned, ev.unchanged = al.ncc, al.unchanged
            best = max(best, ev.inliers)
        return best

    def check(qf, ids, transform, min_inliers=0) -> int:
        return finish(submit(qf, ids), transform, min_inliers)

    # a confirmed copy among the first VERIFY_MIN: its recoloured variants, the only
    # candidates that could compete with it, embed as close and are among them too
    started = submit(query, order[:VERIFY_MIN])
    # meanwhile (counted in "verify"): everyone's colour agreement, the other candidates' from
    # their stored thumbnails alone (their keypoints are read if a turned query needs them)
    first = set(order)
    looks = dict(stored)
    looks.update(thumbnails_for(catalog, [i for i in evidence if i not in first], paths=paths))
    fill_colours(looks.values())
    for image_id, f in looks.items():
        evidence[image_id].colour = colour_similarity(query.colour, f.colour)
    best = finish(started, "")
    if best < CONFIRMED_INLIERS:
        best = max(best, check(query, order[VERIFY_MIN:], ""))
    lap("verify")
    aligned = max((e.aligned for e in evidence.values() if e.inliers >= CONFIRMED_INLIERS), default=0.0)
    if confirms_copy(best, aligned):
        # a confirmed copy ends the search for mirrored ones, except among the candidates
        # that embed nearer than it and did not verify: a mirrored copy's original embeds
        # as close as ever but matches few plain features, and another photo that happens to
        # share features with the copy must not hide it
        first_strong = next(n for n, i in enumerate(order) if evidence[i].inliers >= CONFIRMED_INLIERS)
        nearer = [i for i in order[:min(first_strong, MIRROR_TOP)]
                  if evidence[i].inliers < MARGIN_MIN_INLIERS]
        if nearer:
            check(mirrored_features(query), nearer, "mirrored")
            lap("verify_mirror")
        return evidence
    flipped = mirrored_features(query)
    best = max(best, check(flipped, order[:MIRROR_TOP], "mirrored"))
    lap("verify_mirror")
    if best < MARGIN_MIN_INLIERS and DENSE_TOP > 0:
        # with more keypoints other photos (another product's back view on the same model)
        # match more too, so only a confirmed copy's inliers count from this pass
        best = max(best, check(dense_features(query), order[:DENSE_TOP], "", CONFIRMED_INLIERS))
        if best < MARGIN_MIN_INLIERS:
            best = max(best, check(dense_features(query, mirror=True),
                                   order[:DENSE_TOP], "mirrored", CONFIRMED_INLIERS))
        lap("verify_dense")
    # a turned copy embeds far from everything; a query with a close neighbour is not one
    if (best >= CONFIRMED_INLIERS or ROTATED_TOP <= 0 or turned is None
            or (kept and kept[0][1] >= ROTATION_MAX_COSINE)):
        return evidence
    new: list[int] = []
    for image_id, sim, rec in turned():
        if image_id not in evidence:
            evidence[image_id] = Evidence(cosine=float(sim))
            paths[image_id] = rec["path"]
            kept.append((image_id, sim, rec))
            new.append(image_id)
        elif sim > evidence[image_id].cosine and image_id not in order:
            evidence[image_id].cosine = float(sim)
        if image_id not in new and image_id not in order:
            new.append(image_id)
    stored.update(features_for(catalog, [i for i in new if i not in stored], paths=paths))
    fill_colours(stored[i] for i in new if i in stored)
    for image_id in new:
        if image_id in stored:
            evidence[image_id].colour = colour_similarity(query.colour, stored[image_id].colour)
    best = check(query, new, "turned")
    if best < CONFIRMED_INLIERS:
        check(flipped, new, "turned, mirrored")
    lap("verify_rotated")
    return evidence


# ---------------------------------------------------------------------- catalog pairs (the duplicate scan)
def pair_evidence(catalog, pairs) -> np.ndarray:
    """What :func:`pair_scores` scores, per (image_id, image_id) pair, as an array
    [m, len(EVIDENCE)]: embedding cosine, ORB/RANSAC inliers (first image's features matched to
    the second's), colour similarity, aligned pixel agreement, unchanged share, and ``features``
    = 1 where the calibrated score applies (0 where neither image has local features: only the
    embedding can score it), the first image against the second's product prototype in the
    catalog's learned space (``product``, with ``metric`` = 1; the plain cosine and 0 without a
    learned metric) and the first image's ``backdrop`` share. Cosine is NaN where an image is
    missing. All from stored data.

    Mirrored copies: when the plain match does not confirm a copy (fewer than CONFIRMED_INLIERS
    inliers, or aligned pixels below ALIGNED_CONFIRMED: search's rule),
    the stored mirrored descriptors of the first image (else of the second) are matched too
    (after a pre-test on a quarter of them, MIRROR_PRETEST_*), and the pair is scored from the
    geometry with more inliers (the aligned comparison then warps the mirrored thumbnail)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    ev = np.zeros((len(pairs), len(EVIDENCE)), np.float64)
    ev[:, 0] = np.nan
    if len(pairs) == 0:
        return ev
    ids = np.unique(pairs).tolist()
    existing = {r["image_id"] for r in catalog.image_records(ids)}
    ids = [i for i in ids if i in existing]
    if not ids:
        return ev
    embs = dict(zip(ids, catalog.embeddings(ids)))
    product = _pair_products(catalog, pairs, embs)
    feats = features_for(catalog, ids)
    fill_colours(feats.values())            # all at once: a pass per pair costs 4x more
    backdrops = {i: backdrop(feats[i].thumb) for i in np.unique(pairs[:, 0]).tolist() if i in feats}
    mirrors: dict[int, Features | None] = {}

    def mirror(i: int) -> Features | None:
        if i not in mirrors:
            mirrors[i] = mirror_of(feats[i])
        return mirrors[i]

    for n, (a, b) in enumerate(pairs.tolist()):
        if a not in embs or b not in embs:
            continue
        ev[n, 0] = float(np.dot(embs[a], embs[b]))
        learned = product[n] if product is not None else None
        ev[n, 6], ev[n, 8] = learned if learned is not None else (ev[n, 0], 0.0)
        fa, fb = feats.get(a), feats.get(b)
        if fa is not None:
            ev[n, 7] = backdrops[a]
        if (fa is None or not len(fa)) and (fb is None or not len(fb)):
            continue                          # no pixels (or blank ones): embedding only
        ev[n, 5] = 1.0
        if fa is None or fb is None:
            continue                          # colour and geometry need both images' features
        ev[n, 2] = colour_similarity(fa.colour, fb.colour)
        v, al = verify_pair(fa, fb, either_grey=True)
        q, c = fa, fb
        if al is None or not confirms_copy(v.inliers, al.ncc):
            m, other = (mirror(a), fb) if mirror(a) is not None else (mirror(b), fa)
            if m is not None and _pretest(m, other, MIRROR_PRETEST_STRIDE, MIRROR_PRETEST_INLIERS):
                vm = verify(m, other)
                if vm.inliers > v.inliers:
                    q, c, v, al = m, other, vm, None
        if v.homography is not None:
            ev[n, 1] = v.inliers
            if v.inliers >= MARGIN_MIN_INLIERS:     # as verify_pair: only a verified match's pixels count
                if al is None:
                    al = aligned_similarity(q, c, v.homography, either_grey=True)
                ev[n, 3], ev[n, 4] = al.ncc, al.unchanged
    return ev


def _columns(evidence: np.ndarray) -> list[np.ndarray]:
    """The columns of EVIDENCE. Rows of the first six columns only (evidence gathered before the
    re-shot columns existed, on catalogs of studio photos) read as: product = cosine, a studio
    backdrop, no learned metric."""
    ev = np.asarray(evidence, np.float64).reshape(len(evidence), -1)
    cols = [ev[:, i] for i in range(min(ev.shape[1], len(EVIDENCE)))]
    if len(cols) < len(EVIDENCE):
        cols += [cols[0], np.ones(len(ev)), np.zeros(len(ev))][len(cols) - 6:]
    return cols


def _pair_products(catalog, pairs: np.ndarray, embs: dict[int, np.ndarray]) -> list | None:
    """Per pair (a, b): (a against b's product prototype in the learned space, 1), or None when
    the catalog has no learned metric. A pair of one product's photos gets None, no learned
    comparison: the metric was fitted to pull exactly such photos together, so it is no
    evidence about them."""
    from . import learned_metric

    metric = learned_metric.stored(catalog)
    if metric is None:
        return None
    ids = list(embs)
    at = {i: n for n, i in enumerate(ids)}
    proj = metric.apply(np.stack([embs[i] for i in ids]))
    product_of = {r["image_id"]: r.get("product_id") for r in catalog.image_records(ids)}
    protos = prototypes(catalog, metric.apply, set(product_of.values()))
    out = []
    for a, b in pairs.tolist():
        if a not in at or b not in at:
            out.append((np.nan, 1.0))
            continue
        if product_of.get(a) and product_of.get(a) == product_of.get(b):
            out.append(None)
            continue
        proto = protos.get(product_of.get(b))
        target = proj[at[b]] if proto is None else proto
        out.append((float(proj[at[a]] @ target), 1.0))
    return out


def dense_recheck_rows(pairs, evidence) -> np.ndarray:
    """The rows of (query image, candidate image) ``pairs`` that :func:`dense_recheck` matches
    again: for every query image that none of its rows confirms as a copy (CONFIRMED_INLIERS
    inliers with aligned pixels of at least ALIGNED_CONFIRMED, in ``evidence``, as
    :func:`pair_evidence` gives it), its DENSE_TOP rows nearest by embedding cosine among those
    with local features. Sorted by query image."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not len(pairs):
        return np.zeros(0, np.int64)
    ev = np.asarray(evidence, np.float64).reshape(len(pairs), -1)
    confirmed = confirms_copy(ev[:, 1], ev[:, 3])
    done = np.unique(pairs[confirmed, 0])
    usable = np.nonzero((ev[:, 5] > 0) & ~np.isnan(ev[:, 0]) & ~np.isin(pairs[:, 0], done))[0]
    # by query image, nearest first; then the first DENSE_TOP of each
    order = usable[np.lexsort((-ev[usable, 0], pairs[usable, 0]))]
    query = pairs[order, 0]
    start = np.r_[0, np.nonzero(query[1:] != query[:-1])[0] + 1] if len(order) else np.zeros(0, np.int64)
    rank = np.arange(len(order)) - np.repeat(start, np.diff(np.r_[start, len(order)]))
    return order[rank < DENSE_TOP]


def dense_recheck(catalog, pairs, evidence) -> np.ndarray:
    """``evidence`` (:func:`pair_evidence`'s, [m, len(EVIDENCE)]) of (query image, candidate image)
    ``pairs``, with each query image matched again with its DENSE_KEYPOINTS keypoints, as search
    does with a query that nothing verified (engine.search, DENSE_TOP): text or a logo laid over a
    copy has the strongest corners of the photo and takes most of the MAX_KEYPOINTS stored at
    import, leaving too few on the product to verify the copy from stored data. The dense
    keypoints come from the catalog (stored by the feature pass, engine.features.dense_of); an
    image without them is decoded once (give all its rows together, as
    :func:`dense_recheck_rows` selects them). Its candidates' stored features are used as they
    are, and their stored mirrored features for mirrored copies, unless the plain match confirms
    a copy (inliers and aligned pixels, as :func:`pair_evidence` decides for stored data). As in
    search, only a confirmed match (CONFIRMED_INLIERS) from this pass counts, and only where it
    has more inliers than the row had: with more keypoints, other photos (another product on the
    same model) match more too. A query without dense keypoints whose file cannot be read keeps
    its evidence. Returns the updated evidence (a copy)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    out = np.array(evidence, np.float64, copy=True)
    if not len(pairs):
        return out
    out = out.reshape(len(pairs), -1)
    rows: dict[int, list[int]] = {}
    for n, q in enumerate(pairs[:, 0].tolist()):
        rows.setdefault(q, []).append(n)
    # candidates without stored features (an import's feature pass not done) get them computed
    stored = features_for(catalog, np.unique(pairs[:, 1]).tolist())
    queries = features_for(catalog, list(rows), dense=True, compute_missing=False)
    paths = None
    for q, mine in rows.items():
        mine = [n for n in mine if len(stored.get(int(pairs[n, 1]), ()))]
        if not mine:
            continue
        dense, rgb = dense_of(queries.get(q)), None
        if dense is None:
            if paths is None:
                paths = {r["image_id"]: r["path"] for r in catalog.image_records(list(rows))}
            rgb = decode(paths[q]) if q in paths else None
            if rgb is None:
                continue
            dense = dense_of(catalog_features(rgb, dense=True))
        flipped = None      # the query's own mirrored dense features (candidates without mirrored ones)
        for mirrored in (False, True):
            confirmed = False
            for n in mine:
                query, candidate = dense, stored[int(pairs[n, 1])]
                if mirrored:        # the query mirrored is the candidate mirrored, the other way
                    candidate = mirror_of(candidate)
                    if candidate is None:       # stored before mirrored descriptors existed
                        if rgb is None:
                            continue
                        if flipped is None:
                            flipped = mirror_of(catalog_features(rgb, keypoints=DENSE_KEYPOINTS))
                        query, candidate = flipped, stored[int(pairs[n, 1])]
                        if query is None:
                            continue
                if not _pretest(query, candidate, DENSE_PRETEST_STRIDE, DENSE_PRETEST_INLIERS):
                    continue
                v = verify(query, candidate)
                if v.inliers < CONFIRMED_INLIERS or v.homography is None:
                    continue
                al = aligned_similarity(query, candidate, v.homography, either_grey=True)
                confirmed |= bool(confirms_copy(v.inliers, al.ncc))
                if v.inliers > out[n, 1]:
                    out[n, 1], out[n, 3], out[n, 4] = v.inliers, al.ncc, al.unchanged
            if confirmed:       # as pair_evidence: no mirrored match after a confirmed plain one
                break
    return out


def _pretest(query: Features, candidate: Features, stride: int, min_inliers: int) -> bool:
    """Whether every ``stride``-th keypoint of ``query`` alone verifies ``min_inliers`` against
    ``candidate``: a match worth running in full (at about 1/``stride`` of its cost)."""
    subset = Features(query.points[::stride], query.descriptors[::stride], query.size, query.thumb)
    return verify(subset, candidate).inliers >= min_inliers


def pair_scores(catalog, pairs) -> np.ndarray:
    """The calibrated score of each (image_id, image_id) pair of catalog images, each pair alone:
    the score a search with the first image gives the second when no other catalog image
    competes (:func:`pair_evidence` from stored data, then :func:`dense_recheck` of a first image
    that no pair confirms as a copy). Pairs naming a missing image score 0; pairs of two images
    without local features get the embedding score."""
    pairs = np.asarray([(int(a), int(b)) for a, b in pairs], np.int64).reshape(-1, 2)
    ev = pair_evidence(catalog, pairs)
    rows = dense_recheck_rows(pairs, ev)
    if rows.size:
        ev[rows] = dense_recheck(catalog, pairs[rows], ev[rows])
    cos, inl, col, al, un, has, product, back, metric = _columns(ev)
    margin = np.where(inl >= MARGIN_MIN_INLIERS, al, 0.0)      # a lone verified candidate
    return scoring.score_arrays(cos, inl, col, al, un, margin, features=has > 0, product=product,
                                backdrop=back, learned=metric > 0)


def settled_images(pairs, evidence) -> set[int]:
    """The images of catalog ``pairs`` that the scan does not search turned: those in a pair that
    confirms a copy, and those with a candidate at ROTATION_MAX_COSINE or closer (a turned copy
    embeds far from its original). ``evidence``: :func:`pair_evidence`'s rows (NaN cosine:
    missing image, ignored)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if not len(pairs):
        return set()
    ev = np.asarray(evidence, np.float64).reshape(len(pairs), -1)
    rows = np.nonzero(~np.isnan(ev[:, 0]))[0]
    confirmed = rows[confirms_copy(ev[rows, 1], ev[rows, 3])]
    near = rows[ev[rows, 0] >= ROTATION_MAX_COSINE]
    return set(np.unique(pairs[confirmed]).tolist()) | set(np.unique(pairs[near]).tolist())


def competing_scores(pairs: np.ndarray, evidence: np.ndarray,
                     family: Mapping[int, tuple[str, str]] | None = None,
                     listed: set[int] | None = None) -> np.ndarray:
    """Calibrated scores of candidate pairs, each scored the way a search with the pair's *newer*
    image (the larger id: a listing added later, the one suspected of copying) scores its older
    one. Such a search verifies the query's nearest neighbours and gives each verified one a
    *margin*: its aligned pixel agreement minus the best of the query's other verified candidates
    (:func:`set_margins`), so the original of an edited copy outranks a recoloured variant of
    the same photograph. Here the query's candidates are its pairs in the kNN graph, older and
    newer; ``evidence`` is :func:`pair_evidence`'s (newer image as the query). The score model
    was fitted on searches by the copy (docs/match-quality.md): scored from the other direction
    (the original as the query, the copy as the candidate), an overlay or a recolouring of the
    copy counts against its pixels, and letting either image's competition decide admitted more
    look-alike products than copies (docs/duplicates.md). ``family``
    (``duplicates.variant_families``): declared variants of a candidate do not compete with it when it is
    the variant the query agrees with best (a copy of a photo that the variants of one style
    share is a copy of the family's photo; it is reported with the closest variant, and the other
    variants still compete with each other). ``listed`` (``duplicates.listed_images``): the images with
    product data; an image without any that is itself a copy of a listing's family photo does not
    compete with that listing (:func:`_settled_margins`). Pairs without local features get
    the embedding score; pairs naming a missing image 0. Byte-identical pairs are the caller's
    (score 1)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return np.zeros(0)
    ev = np.asarray(evidence, np.float64)
    cos, inl, col, al, un, has, product, back, metric = _columns(ev)
    margin = graph_margins(pairs, ev, family, listed)
    return scoring.score_arrays(cos, inl, col, al, un, margin, features=has > 0, product=product,
                                backdrop=back, learned=metric > 0)


def graph_margins(pairs: np.ndarray, evidence: np.ndarray,
                  family: Mapping[int, tuple[str, str]] | None = None,
                  listed: set[int] | None = None) -> np.ndarray:
    """:func:`set_margins` for a graph of candidate pairs (:func:`competing_scores`): a verified
    pair's aligned agreement minus the best other verified pair of its newer image (the query),
    with the competition that product data settle (:func:`_settled_margins`)."""
    ev = np.asarray(evidence, np.float64)
    m = len(pairs)
    inl, al, has = ev[:, 1], ev[:, 3], ev[:, 5]
    strong = (inl >= MARGIN_MIN_INLIERS) & (has > 0)
    margin = np.zeros(m)
    idx = np.nonzero(strong)[0]
    if not idx.size:
        return margin
    # per image: its best and second-best aligned agreement over its strong pairs
    node = np.concatenate([pairs[idx, 0], pairs[idx, 1]])
    edge = np.concatenate([idx, idx])
    val = al[edge]
    order = np.lexsort((-val, node))
    node, edge, val = node[order], edge[order], val[order]
    first = np.ones(len(node), bool)
    first[1:] = node[1:] != node[:-1]
    start = np.nonzero(first)[0]
    nodes = node[start]
    best = val[start]
    best_edge = edge[start]
    has_second = np.append(start[1:], len(node)) - start > 1
    second = np.where(has_second, val[np.minimum(start + 1, len(node) - 1)], 0.0)
    newer = np.maximum(pairs[idx, 0], pairs[idx, 1])
    at = np.searchsorted(nodes, newer)
    margin[idx] = al[idx] - np.where(best_edge[at] == idx, second[at], best[at])
    if MARGIN_SUPPORT > 0:
        # the best competitor may lack the support to compete (set_margins): those pairs again,
        # against the image's strong pairs with enough inliers
        weak = (best_edge[at] != idx) & (inl[best_edge[at]] < MARGIN_SUPPORT * inl[idx])
        weak |= (best_edge[at] == idx) & has_second[at]
        bounds = np.append(start, len(node))
        for n in np.nonzero(weak)[0].tolist():
            e, a = idx[n], at[n]
            rivals = edge[bounds[a]:bounds[a + 1]]
            rivals = rivals[(rivals != e) & (inl[rivals] >= MARGIN_SUPPORT * inl[e])]
            margin[e] = al[e] - (al[rivals].max() if rivals.size else 0.0)
    if family or listed:
        _settled_margins(pairs, al, inl, idx, family or {}, listed or set(), margin)
    return margin


def _settled_margins(pairs: np.ndarray, al: np.ndarray, inl: np.ndarray, idx: np.ndarray,
                     family: Mapping[int, tuple[str, str]], listed: set[int], margin: np.ndarray) -> None:
    """:func:`graph_margins`, in place, for the strong pairs ``idx`` whose competition
    product data settle. For a pair of a query (the newer image) and a candidate (the older one):

    * declared variants of the candidate do not compete with it when it is the variant the query
      agrees with best (a copy of a photo that the variants of one style share);
    * when the query has no product data (an upload) and the candidate is a listing, an image
      without product data whose own best older match is the candidate or a declared variant of
      it does not compete either: it is another copy of that family's photo (an earlier
      re-upload, or a copy of the family's other colour), not a rival original. Without this,
      every copy of a listing's photo would make the next one ambiguous. A listing as the query
      keeps every competitor (two listings' photos are rivals).

    Any other competitor competes as in the vectorised margins (with MARGIN_SUPPORT)."""
    sub = pairs[idx]
    newer, older = sub.max(axis=1), sub.min(axis=1)
    a, support = al[idx], inl[idx]
    by_image: dict[int, list[int]] = {}
    for j, (x, y) in enumerate(sub.tolist()):
        by_image.setdefault(x, []).append(j)
        by_image.setdefault(y, []).append(j)
    # each image's best older match (as the newer image: what it is a copy of, if anything)
    best_older: dict[int, tuple[float, int]] = {}
    for j, (q, o) in enumerate(zip(newer.tolist(), older.tolist())):
        if q not in best_older or a[j] > best_older[q][0]:
            best_older[q] = (float(a[j]), o)

    def copy_of(c: int, o: int) -> bool:
        """Whether image ``c``'s best older match is ``o`` or a declared variant of it."""
        m = best_older.get(c, (0.0, None))[1]
        return m is not None and (m == o or declared_variants(family, m, o))

    for j, (q, o) in enumerate(zip(newer.tolist(), older.tolist())):
        mine = by_image[q]
        if len(mine) < 2 or (o not in family and o not in listed):
            continue
        rivals = {k: int(newer[k] if older[k] == q else older[k]) for k in mine
                  if k != j and support[k] >= MARGIN_SUPPORT * support[j]}
        drop = set()
        siblings = [k for k, c in rivals.items() if declared_variants(family, o, c)]
        if siblings and not any(a[k] > a[j] for k in siblings):
            drop.update(siblings)
        if o in listed and q not in listed:
            drop.update(k for k, c in rivals.items() if c not in listed and copy_of(c, o))
        if drop:
            margin[idx[j]] = a[j] - max((a[k] for k in rivals if k not in drop), default=0.0)
