"""Duplicate finder: grouping policy, scans on synthetic catalogs, decisions, CSV, CLI, one real pair."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import duplicates, features, match_policy, scoring
from engine.catalog import Catalog
from engine.duplicates import (
    CONFIRMED,
    NOT_DUPLICATE,
    DuplicateGroup,
    Member,
    ScanCancelled,
    embedding_verifier,
    group_pairs,
)
from tests.synthetic_vectors import near, unit

DIM = 64

#: the embedding score of cosine 0.9 (synthetic catalogs are scored by their embeddings alone)
COSINE_0_9 = float(scoring.embedding_score(0.9))


# ---------------------------------------------------------------------- helpers
def make_catalog(folder: Path, vectors, *, sizes=None, titles=None) -> Catalog:
    """A catalog of synthetic images (no pixels): one row per vector, path /syn/NNNN.jpg."""
    cat = Catalog.open(folder)
    add(cat, vectors, start=0, sizes=sizes, titles=titles)
    return cat


def add(cat: Catalog, vectors, *, start: int, sizes=None, titles=None, hashes=None) -> list[int]:
    rows, products = [], []
    for n, v in enumerate(np.atleast_2d(vectors)):
        i = start + n
        w, h = sizes[n] if sizes else (800, 1000)
        pid = f"P{i:04d}"
        products.append({"id": pid, "title": titles[n] if titles else f"product {i}"})
        rows.append({"path": f"/syn/{i:04d}.jpg", "content_hash": hashes[n] if hashes else f"h{i:031d}",
                     "file_size": 1, "mtime": 0.0, "width": w, "height": h, "product_id": pid,
                     "model_id": "synthetic", "embedding": unit(v), "labels": []})
    cat.upsert_products(products)
    return cat.put_images(rows)


def spread(rng, n, dim=DIM):
    """n vectors far from each other (random directions in DIM dimensions)."""
    return unit(rng.standard_normal((n, dim)))


def scan(cat, **kw):
    kw.setdefault("verifier", embedding_verifier)
    kw.setdefault("threshold", COSINE_0_9)
    return duplicates.scan(cat, **kw)


def groups_of(result):
    return [set(g.image_ids) for g in result.groups]


# ---------------------------------------------------------------------- grouping policy
def test_chain_does_not_merge_the_ends():
    # 1~2~3~4~5 (each neighbour pair verified, nothing else): every member is linked to its
    # representative, so no group spans more than two links (connected components would give one
    # group of five)
    pairs = np.array([(1, 2), (2, 3), (3, 4), (4, 5)])
    groups = group_pairs(pairs, np.full(4, 0.95))
    edges = {tuple(p) for p in pairs.tolist()}
    for rep, members in groups:
        for m, _ in members:
            assert (min(rep, m), max(rep, m)) in edges
    together = [{rep, *(m for m, _ in members)} for rep, members in groups]
    assert not any({1, 4} <= g or {2, 5} <= g or {1, 5} <= g for g in together)
    # greedy: 2 (two free links, lowest id among ties) takes 1 and 3; then 4 takes 5
    assert groups == [(2, [(1, 0.95), (3, 0.95)]), (4, [(5, 0.95)])]


def test_one_representative_with_many_copies():
    # the original is linked to 60 copies; the copies are linked to nothing else
    pairs = np.array([(0, i) for i in range(1, 61)])
    scores = np.linspace(0.91, 0.99, 60)
    groups = group_pairs(pairs, scores)
    assert len(groups) == 1
    rep, members = groups[0]
    assert rep == 0 and len(members) == 60
    assert [s for _, s in members] == sorted(scores.tolist(), reverse=True)


def test_representative_prefers_reference_then_links_then_size_then_age():
    pairs = np.array([(1, 2)])
    assert group_pairs(pairs, [0.95])[0][0] == 1                          # oldest
    assert group_pairs(pairs, [0.95], area={2: 4e6, 1: 1e6})[0][0] == 2  # larger
    assert group_pairs(pairs, [0.95], area={2: 4e6}, preferred=[1])[0][0] == 1   # user's choice
    # a reference with a single link still wins over a hub; the hub keeps what is left
    star = np.array([(10, 11), (10, 12), (10, 13), (13, 14)])
    groups = group_pairs(star, np.full(4, 0.95), preferred=[14])
    assert groups[0] == (14, [(13, 0.95)])
    assert groups[1] == (10, [(11, 0.95), (12, 0.95)])


def test_images_kept_apart_never_share_a_group():
    # 1 is the hub; the user said 2 and 3 are not duplicates of each other
    pairs = np.array([(1, 2), (1, 3), (1, 4)])
    groups = group_pairs(pairs, np.array([0.97, 0.95, 0.93]), apart=[(2, 3)])
    assert groups[0] == (1, [(2, 0.97), (4, 0.93)])
    assert all(not {2, 3} <= {r, *(m for m, _ in ms)} for r, ms in groups)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=120),
       st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=10),
       st.sets(st.integers(0, 30), max_size=3))
def test_grouping_invariants(edges, apart, preferred):
    edges = sorted({(min(a, b), max(a, b)) for a, b in edges if a != b})
    apart = [(a, b) for a, b in apart if a != b]
    pairs = np.array(edges, np.int64).reshape(-1, 2)
    rng = np.random.default_rng(len(edges))
    scores = rng.uniform(0.9, 1.0, len(edges))
    groups = group_pairs(pairs, scores, preferred=preferred, apart=apart)
    assert groups == group_pairs(pairs, scores, preferred=preferred, apart=apart)   # deterministic
    score_of = {e: s for e, s in zip(edges, scores.tolist())}
    seen = set()
    apart_set = {(min(a, b), max(a, b)) for a, b in apart}
    for rep, members in groups:
        assert members, "a group holds at least two images"
        ids = [rep] + [m for m, _ in members]
        assert not seen & set(ids), "an image is in one group at most"
        seen |= set(ids)
        for m, s in members:                     # every member is a verified copy of the representative
            assert score_of[(min(rep, m), max(rep, m))] == s
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                assert (min(a, b), max(a, b)) not in apart_set
    # maximal: no verified pair (not kept apart) is left with both of its images ungrouped
    for a, b in edges:
        if a not in seen and b not in seen and (a, b) not in apart_set:
            pytest.fail(f"pair {(a, b)} left ungrouped")


# ---------------------------------------------------------------------- scans (synthetic catalogs)
def test_scan_finds_copies_and_not_lookalikes(tmp_path):
    rng = np.random.default_rng(1)
    base = spread(rng, 40)
    copies = np.stack([near(rng, base[i], 0.97) for i in range(5)])        # 5 copies of 0..4
    lookalikes = np.stack([near(rng, base[i], 0.8) for i in range(5, 10)])  # similar, not copies
    cat = make_catalog(tmp_path / "c", np.concatenate([base, copies, lookalikes]),
                       sizes=[(1000, 1000)] * 40 + [(500, 500)] * 10)
    result = scan(cat, k=10)
    ids = [r[0] for r in cat.db.conn.execute("SELECT id FROM images ORDER BY path")]
    expected = [{ids[i], ids[40 + i]} for i in range(5)]
    assert sorted(groups_of(result), key=min) == expected
    for g in result.groups:    # the original (larger) represents; the copy scores ~0.97
        assert g.representative.image_id in ids[:5]
        assert scoring.embedding_score(0.96) < g.members[0].score < scoring.embedding_score(0.98)
        assert g.representative.record["title"].startswith("product ")
    assert result.scoring == "embedding" and result.images == 50 and result.queried == 50
    cat.close()


def test_scan_keeps_hundreds_of_copies_of_one_image_together(tmp_path):
    # far more copies than k: the kNN query is widened until the neighbours stop being copies
    rng = np.random.default_rng(2)
    original = spread(rng, 1)[0]
    copies = np.stack([near(rng, original, 0.995) for _ in range(150)])
    cat = make_catalog(tmp_path / "c", np.concatenate([original[None], copies, spread(rng, 30)]),
                       sizes=[(2000, 2000)] + [(900, 900)] * 180)
    result = scan(cat, k=10)
    assert len(result.groups) == 1
    g = result.groups[0]
    assert g.size == 151 and g.representative.record["path"] == "/syn/0000.jpg"
    cat.close()


def test_projected_index_scores_are_exact_cosines(tmp_path):
    # large catalogs index PCA-projected vectors; the scores must still be the exact cosines
    rng = np.random.default_rng(11)
    base = spread(rng, 60)
    cat = make_catalog(tmp_path / "c", np.concatenate([base, [near(rng, base[i], 0.95) for i in range(3)]]))
    cat.vectors.fit_projection(dim=16)
    assert cat.vectors.index().projection is not None
    result = scan(cat, k=10)
    assert len(result.groups) == 3
    for g in result.groups:
        a, b = cat.embeddings([g.representative.image_id, g.members[0].image_id])
        assert g.members[0].score == pytest.approx(float(scoring.embedding_score(float(a @ b))), abs=1e-5)
    cat.close()


def test_byte_identical_files_are_grouped_with_score_one(tmp_path):
    rng = np.random.default_rng(3)
    vecs = spread(rng, 10)
    cat = Catalog.open(tmp_path / "c")
    add(cat, vecs, start=0)
    ids = add(cat, vecs[:1], start=100, hashes=["h" + "0" * 31])   # same bytes as image 0
    result = scan(cat, k=5)
    assert len(result.groups) == 1
    assert result.groups[0].members[0].score == 1.0 and ids[0] in result.groups[0].image_ids
    cat.close()


def test_not_duplicate_is_remembered_and_confirmed_is_kept(tmp_path):
    rng = np.random.default_rng(4)
    base = spread(rng, 20)
    cat = make_catalog(tmp_path / "c", np.concatenate([base, [near(rng, base[0], 0.95)],
                                                       [near(rng, base[1], 0.7)]]))
    ids = [r[0] for r in cat.db.conn.execute("SELECT id FROM images ORDER BY path")]
    assert groups_of(scan(cat)) == [{ids[0], ids[20]}]
    cat.decision_store.mark_pairs([(ids[20], ids[0])], NOT_DUPLICATE)
    cat.decision_store.mark_pairs([(ids[1], ids[21])], CONFIRMED)       # below the threshold, confirmed
    cat.close()
    with Catalog.open(tmp_path / "c") as cat:                           # persists across sessions
        result = scan(cat)
        assert groups_of(result) == [{ids[1], ids[21]}]
        assert result.ignored == 1
        member = result.groups[0].members[0]
        assert member.confirmed and member.score < 0.9
        stored = cat.decision_store.decisions()
        assert {(d["decision"], frozenset((d["a_id"], d["b_id"]))) for d in stored} == {
            (NOT_DUPLICATE, frozenset((ids[0], ids[20]))), (CONFIRMED, frozenset((ids[1], ids[21])))}
        # changing one's mind: the later decision replaces the earlier one
        cat.decision_store.mark_pairs([(ids[0], ids[20])], CONFIRMED)
        assert len(cat.decision_store.decisions()) == 2
        assert {ids[0], ids[20]} in groups_of(scan(cat))
        assert cat.decision_store.forget_pairs([(ids[0], ids[20]), (ids[1], ids[21])]) == 2
        assert groups_of(scan(cat)) == [{ids[0], ids[20]}]


def test_decisions_follow_the_content_not_the_path(tmp_path):
    rng = np.random.default_rng(5)
    base = spread(rng, 10)
    copy = near(rng, base[0], 0.96)
    cat = make_catalog(tmp_path / "c", np.concatenate([base, [copy]]))
    a, b = cat.image_by_path("/syn/0000.jpg")["id"], cat.image_by_path("/syn/0010.jpg")["id"]
    cat.decision_store.mark_pairs([(a, b)], NOT_DUPLICATE)
    # the copy is removed and imported again from another folder: still not a duplicate
    cat.remove_images([b])
    add(cat, [copy], start=500, hashes=["h" + "10".zfill(31)])
    assert scan(cat).groups == []
    cat.close()


def test_reference_choice_is_remembered(tmp_path):
    rng = np.random.default_rng(6)
    base = spread(rng, 10)
    cat = make_catalog(tmp_path / "c", np.concatenate([base, [near(rng, base[0], 0.96)]]),
                       sizes=[(2000, 2000)] * 10 + [(100, 100)])
    small = cat.image_by_path("/syn/0010.jpg")["id"]
    assert scan(cat).groups[0].representative.image_id != small            # the larger one
    cat.decision_store.set_reference(small)
    assert cat.decision_store.references() == {small}
    assert scan(cat).groups[0].representative.image_id == small
    cat.decision_store.set_reference(small, False)
    assert scan(cat).groups[0].representative.image_id != small
    cat.close()


def test_only_new_checks_new_images_against_the_catalog(tmp_path):
    rng = np.random.default_rng(7)
    base = spread(rng, 200)
    cat = make_catalog(tmp_path / "c", np.concatenate([base, [near(rng, base[0], 0.97)]]))
    assert len(scan(cat).groups) == 1
    new = add(cat, np.stack([near(rng, base[5], 0.97), near(rng, base[6], 0.5)]), start=1000)
    result = scan(cat, only_new=True)
    assert result.only_new and result.queried == 2
    assert groups_of(result) == [{cat.image_by_path("/syn/0005.jpg")["id"], new[0]}]
    again = scan(cat, only_new=True)                                     # nothing new since
    assert again.queried == 0 and again.groups == []
    assert len(scan(cat).groups) == 2                                    # a full scan sees both
    cat.close()


def test_progress_and_cancel(tmp_path):
    rng = np.random.default_rng(8)
    cat = make_catalog(tmp_path / "c", spread(rng, 30))
    seen = []
    scan(cat, progress=lambda d, t, m: seen.append((d, t, m)))
    stages = [m for _, _, m in seen]
    assert stages[0] == "finding neighbours" and stages[-1] == "grouping"
    assert all(0 <= d <= t for d, t, _ in seen)
    cancel = threading.Event()

    def stop_after_first(d, t, m):
        cancel.set()

    with pytest.raises(ScanCancelled):
        scan(cat, progress=stop_after_first, cancel=cancel)
    cat.close()


def test_empty_and_single_image_catalogs(tmp_path):
    with Catalog.open(tmp_path / "empty") as cat:
        assert scan(cat).groups == []
    with make_catalog(tmp_path / "one", spread(np.random.default_rng(0), 1)) as cat:
        assert scan(cat).groups == []


def test_rescore_group_on_a_new_reference(tmp_path):
    rng = np.random.default_rng(9)
    base = spread(rng, 10)
    cat = make_catalog(tmp_path / "c", np.concatenate([base, [near(rng, base[0], 0.97)],
                                                       [near(rng, base[0], 0.95)]]),
                       sizes=[(2000, 2000)] * 10 + [(10, 10)] * 2)
    g = scan(cat).groups[0]
    other = g.members[-1].image_id
    regrouped = duplicates.rescore_group(cat, g, other)
    assert regrouped.representative.image_id == other and regrouped.representative.score is None
    assert {m.image_id for m in regrouped.members} == set(g.image_ids) - {other}
    vec = {i: v for i, v in zip(g.image_ids, cat.embeddings(g.image_ids))}
    for m in regrouped.members:
        assert m.score == pytest.approx(float(scoring.embedding_score(float(vec[other] @ vec[m.image_id]))), abs=1e-5)
    cat.close()


# ---------------------------------------------------------------------- CSV / JSON / CLI
def test_csv_one_row_per_image_and_formulas_defused():
    rep = Member(1, None, record={"path": "/a/rep.jpg", "product_id": "=1+1", "title": "@SUM(A1)"})
    copy = Member(2, 0.93, True, record={"path": "/a/-copy.jpg", "product_id": "+33", "title": "\tx",
                                          "price": -5.0})
    out = io.StringIO()
    assert duplicates.write_groups_csv([DuplicateGroup(7, rep, [copy])], out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0])[:6] == ["group_id", "path", "product_id", "title", "score", "representative"]
    assert rows[0]["role"] == "representative" and rows[0]["score"] == ""
    assert rows[0]["product_id"] == "'=1+1" and rows[0]["title"] == "'@SUM(A1)"
    assert rows[1]["product_id"] == "'+33" and rows[1]["title"] == "'\tx"
    assert rows[1]["score"] == "0.93" and rows[1]["representative"] == "/a/rep.jpg"
    assert rows[1]["price"] == "-5.0" and rows[1]["confirmed"] == "true" and rows[1]["group_id"] == "7"


def test_cli_scan_decide_export(tmp_path, capsys):
    from cli.main import main

    rng = np.random.default_rng(10)
    base = spread(rng, 30)
    folder = tmp_path / "c"
    make_catalog(folder, np.concatenate([base, [near(rng, base[3], 0.96)]]),
                 titles=[f"t{i}" for i in range(30)] + ["=cmd|' /C calc'!A0"]).close()
    assert main(["dupes", "--catalog", str(folder), "--json", "--threshold", str(COSINE_0_9)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scoring"] in ("embedding", "verified") and len(out["groups"]) >= 1
    assert main(["dupes", "--catalog", str(folder), "--threshold", str(COSINE_0_9), "--csv", str(tmp_path / "d.csv"),
                 "-q"]) == 0
    text = (tmp_path / "d.csv").read_text(encoding="utf-8-sig")
    assert "'=cmd|" in text and ",=cmd" not in text
    assert main(["dupes", "--catalog", str(folder), "--not-duplicate", "/syn/0003.jpg", "/syn/0030.jpg"]) == 0
    assert main(["dupes", "--catalog", str(folder), "--decisions", "--json"]) == 0
    capsys.readouterr()
    assert main(["dupes", "--catalog", str(folder), "--threshold", str(COSINE_0_9), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"] == []
    assert main(["dupes", "--catalog", str(folder), "--threshold", "loose"]) == 2
    assert "unknown threshold" in capsys.readouterr().err
    assert main(["dupes", "--catalog", str(folder), "--confirm", "/nope.jpg", "3"]) == 2
    assert "/nope.jpg: not an image of catalog" in capsys.readouterr().err


# ---------------------------------------------------------------------- a real photo and its edited copy
def test_real_edited_copy_is_found(small_luma_catalog, catalog_copy, model, tmp_path):
    from engine.ingest import ingest

    folder = catalog_copy(small_luma_catalog)
    with Catalog.open(folder) as cat:
        # a photo with detail: a copy is confirmed geometrically (local features), and a plain
        # texture-less object (the foam roller) has too few for that
        from engine.feature_store import features_for
        records = list(cat.iter_records())
        feats = features_for(cat, [r["image_id"] for r in records])
        original = max(records, key=lambda r: len(feats[r["image_id"]]))["path"]
        img = cv2.imread(original)
        h, w = img.shape[:2]
        edited = cv2.resize(img[h // 20: h - h // 20, w // 20: w - w // 20], (w // 2, h // 2))
        cv2.putText(edited, "SALE -50%", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 255), 3)
        path = tmp_path / "edited copy.jpg"
        cv2.imwrite(str(path), edited, [cv2.IMWRITE_JPEG_QUALITY, 60])
        ingest(cat, model, [path])
        result = duplicates.scan(cat, only_new=False)
        found = [g for g in result.groups if str(path) in {m.path for m in [g.representative, *g.members]}]
        assert found, result.summary()
        g = found[0]
        assert g.representative.path == original            # the larger, older photo represents
        assert g.members[0].score >= result.threshold


def test_competing_scores_prefer_the_original_over_a_recoloured_variant():
    from engine import scoring

    # images 1 (an original), 2 (a recoloured variant of the same photo), 3 (an edited copy of 1,
    # added last), 4 and 5 (a lone verified pair), 6 and 7 (no local features), 8 (gone)
    pairs = np.array([[1, 3], [2, 3], [1, 2], [4, 5], [6, 7], [1, 8]])
    # evidence as pair_evidence measures it: the newer image of each pair is the query
    #                 cosine inliers colour aligned unchanged features
    ev = np.array([[0.90, 120, 0.90, 0.95, 0.90, 1],      # 3 -> 1: the copy finds its original
                   [0.88, 110, 0.30, 0.60, 0.20, 1],      # 3 -> 2: ... and the variant
                   [0.90, 150, 0.30, 0.65, 0.20, 1],      # 2 -> 1: variant and original
                   [0.85, 60, 0.80, 0.90, 0.80, 1],
                   [0.97, 0, 0.00, 0.00, 0.00, 0],
                   [np.nan, 0, 0, 0, 0, 0]])
    s = match_policy.competing_scores(pairs, ev)
    scored = lambda *row: float(scoring.score_arrays(*row, backdrop=1.0))  # noqa: E731  (studio photos)
    alone = []
    for row in ev[:3]:
        e = scoring.Evidence(cosine=row[0], inliers=int(row[1]), colour=row[2], aligned=row[3],
                             unchanged=row[4], verified=True, backdrop=1.0)
        match_policy.set_margins([e])
        alone.append(scoring.score(e))
    assert s[0] > s[1] and s[0] > s[2]                   # the original wins
    assert s[1] < alone[1] and s[2] < alone[2]           # the variant loses to the competition
    # the margins are the newer image's, as a search with it would give them: image 3's other
    # candidate is the variant (0.60); image 2's other candidate is the copy (0.60), not image
    # 1's best other (0.95), which the older image's search would see
    assert s[0] == pytest.approx(scored(0.90, 120, 0.90, 0.95, 0.90, 0.95 - 0.60))
    assert s[1] == pytest.approx(scored(0.88, 110, 0.30, 0.60, 0.20, 0.60 - 0.95))
    assert s[2] == pytest.approx(scored(0.90, 150, 0.30, 0.65, 0.20, 0.65 - 0.60))
    # no competitor: the score match_policy.pair_scores gives the pair alone
    e = scoring.Evidence(cosine=0.85, inliers=60, colour=0.8, aligned=0.9, unchanged=0.8, verified=True,
                         backdrop=1.0)
    match_policy.set_margins([e])
    assert s[3] == pytest.approx(scoring.score(e))
    assert s[4] == pytest.approx(scoring.embedding_score(0.97)) and s[5] == 0.0   # embedding score; missing image


def test_declared_variants_do_not_compete_with_the_variant_a_copy_matches_best():
    """Images 1 and 2 are declared variants (one item group, two products) sharing a photo, 3 is
    another product; 9, added last, is a recoloured copy of 1. Without product data 2 competes
    with 1 (margin 0.02); with it, 1 is the variant 9 agrees with best, so only 3 competes. 2 is
    not 9's best variant and keeps competing with 1. A rival needs MARGIN_SUPPORT of the pair's
    inliers either way: 3 matches 9 with 80 of 200, with 20 it would not compete at all."""
    pairs = np.array([[1, 9], [2, 9], [3, 9]])
    #                 cosine inliers colour aligned unchanged features
    ev = np.array([[0.90, 200, 0.30, 0.99, 0.70, 1],
                   [0.90, 190, 0.30, 0.97, 0.40, 1],
                   [0.70, 80, 0.50, 0.50, 0.60, 1]])
    family = {1: ("JKT", "JKT-red"), 2: ("JKT", "JKT-green")}
    plain = match_policy.competing_scores(pairs, ev)
    aware = match_policy.competing_scores(pairs, ev, family)
    calibrated = lambda row, margin: float(scoring.score_arrays(*row[:5], margin, backdrop=1.0))  # noqa: E731
    assert plain[0] == pytest.approx(calibrated(ev[0], 0.99 - 0.97))
    assert aware[0] == pytest.approx(calibrated(ev[0], 0.99 - 0.50))
    assert aware[0] >= scoring.THRESHOLDS["copy"] > plain[0]
    assert aware[1] == pytest.approx(plain[1]) and aware[2] == pytest.approx(plain[2])
    # one family's variants are nobody else's: another item group's images compete as before
    other = {1: ("JKT", "JKT-red"), 2: ("TEE", "TEE-green")}
    np.testing.assert_allclose(match_policy.competing_scores(pairs, ev, other), plain)
    weak = ev.copy()
    weak[2, 1] = 20
    assert match_policy.competing_scores(pairs, weak, family)[0] == pytest.approx(calibrated(ev[0], 0.99))


def test_another_copy_of_a_listings_photo_is_no_rival_original():
    """Listings 1 and 2 are declared variants sharing a photo (red and green), 3 another product.
    Bare uploads: 5, a copy of the green 2; 9, added last, a copy of the red 1 that agrees with
    the earlier copy 5 a little better than with 1. 5 is itself a copy of the family's photo, not
    a rival original: with the listings known, it does not compete with 1 for 9."""
    pairs = np.array([[1, 9], [5, 9], [2, 9], [3, 9], [2, 5], [1, 5], [1, 2]])
    #                 cosine inliers colour aligned unchanged features
    ev = np.array([[0.90, 200, 0.80, 0.981, 0.90, 1],
                   [0.90, 210, 0.50, 0.986, 0.50, 1],
                   [0.88, 180, 0.30, 0.950, 0.40, 1],
                   [0.70, 80, 0.50, 0.500, 0.60, 1],       # a rival with support (MARGIN_SUPPORT)
                   [0.92, 220, 0.80, 0.990, 0.90, 1],      # 5's best older match: 2
                   [0.88, 190, 0.30, 0.960, 0.40, 1],
                   [0.90, 230, 0.30, 0.900, 0.40, 1]])
    family = {1: ("JKT", "JKT-red"), 2: ("JKT", "JKT-green"), 3: ("TEE", "TEE")}
    listed = {1, 2, 3}
    calibrated = lambda n, margin: float(scoring.score_arrays(*ev[n, :5], margin, backdrop=1.0))  # noqa: E731
    variants_only = match_policy.competing_scores(pairs, ev, family)
    settled = match_policy.competing_scores(pairs, ev, family, listed)
    assert variants_only[0] == pytest.approx(calibrated(0, 0.981 - 0.986))
    assert settled[0] == pytest.approx(calibrated(0, 0.981 - 0.500))
    assert variants_only[0] < scoring.THRESHOLDS["copy"] <= settled[0]
    # 9 against the other copy, a bare image: competed for as before (1 competes)
    assert settled[1] == pytest.approx(variants_only[1])
    assert settled[1] == pytest.approx(calibrated(1, 0.986 - 0.981))
    # a listing as the query (a new listing, not an upload) keeps every competitor
    np.testing.assert_allclose(match_policy.competing_scores(pairs, ev, family, listed | {9}), variants_only)
    # without item groups nobody is a variant: 5, a copy of 2, still competes with 1 for 9, and is
    # set aside only where 9 is measured against 2 itself
    plain, listed_only = match_policy.competing_scores(pairs, ev), match_policy.competing_scores(pairs, ev, None, listed)
    assert listed_only[0] == pytest.approx(plain[0])
    assert listed_only[2] == pytest.approx(calibrated(2, 0.950 - 0.981))
    assert plain[2] == pytest.approx(calibrated(2, 0.950 - 0.986))


def test_pair_evidence_measures_with_the_newer_image_as_the_query(small_luma_catalog):
    from engine.match_policy import pair_scores

    with Catalog.open(small_luma_catalog) as cat:
        ids = [r["image_id"] for r in cat.iter_records()][:8]
        pairs = np.array([(ids[0], i) for i in ids[1:]] + [(ids[1], ids[2]), (ids[0], 10 ** 6)])
        ev, name = duplicates.pair_evidence(cat, pairs)
        assert name == "verified" and ev.shape == (len(pairs), len(duplicates.EVIDENCE))
        newer_first = [(max(a, b), min(a, b)) for a, b in pairs.tolist()]
        np.testing.assert_allclose(ev, match_policy.pair_evidence(cat, newer_first), atol=1e-9)
        # either order given: the same evidence
        np.testing.assert_allclose(duplicates.pair_evidence(cat, pairs[:, ::-1])[0], ev, atol=1e-9)
        alone = [match_policy.competing_scores(p[None], e[None])[0] for p, e in zip(pairs, ev)]
        np.testing.assert_allclose(alone, pair_scores(cat, newer_first), atol=1e-9)
        lone, _ = duplicates.verify_pairs(cat, pairs, np.full(len(pairs), np.nan))
        np.testing.assert_allclose(lone, alone, atol=1e-9)


# ---------------------------------------------------------------------- mirrored copies
def _sample_photos(folder: Path) -> Path:
    """Five of the photos scikit-image ships, as PNG files in ``folder``."""
    import skimage.data

    folder.mkdir()
    for name in ("astronaut", "coffee", "rocket", "chelsea", "immunohistochemistry"):
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR))
    return folder


def _cli_groups(capsys, folder) -> list[set[str]]:
    from cli.main import main

    capsys.readouterr()
    assert main(["dupes", "--catalog", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    return [{Path(m["path"]).name for m in [g["representative"], *g["members"]]} for g in out["groups"]]


def test_mirrored_copy_is_found_and_old_catalogs_still_scan(tmp_path, model, capsys):
    import shutil
    import sqlite3

    from cli.main import main
    from engine.ingest import ingest

    photos = _sample_photos(tmp_path / "photos")
    astronaut = cv2.imread(str(photos / "astronaut.png"))
    h, w = astronaut.shape[:2]
    mirrored = cv2.resize(astronaut[h // 12:, : w - w // 12, :][:, ::-1], None, fx=0.6, fy=0.6,
                          interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(photos / "mirrored copy.jpg"), mirrored, [cv2.IMWRITE_JPEG_QUALITY, 70])
    folder = tmp_path / "catalog"
    with Catalog.open(folder) as cat:
        assert ingest(cat, model, sorted(photos.iterdir())).added == 6
    pair = {"astronaut.png", "mirrored copy.jpg"}
    assert pair in _cli_groups(capsys, folder)

    # the same catalog as made before mirrored descriptors existed: no such columns
    old = tmp_path / "old"
    shutil.copytree(folder, old, ignore=shutil.ignore_patterns("write.lock"))
    with sqlite3.connect(old / "catalog.db") as conn:
        conn.execute("ALTER TABLE local_features DROP COLUMN mirrored")
        conn.execute("ALTER TABLE local_features DROP COLUMN dense")
    capsys.readouterr()
    assert main(["check", "--catalog", str(old), "--no-files"]) == 0       # read-only: not migrated
    assert ("6 images lack stored local features, their mirrored descriptors or their dense keypoints"
            in capsys.readouterr().out)
    # it still scans (the column is added, empty): stored data cannot verify the mirrored copy;
    # the scan finds it by decoding the unconfirmed copy again (dense_recheck: mirrored too)
    assert pair in _cli_groups(capsys, old)

    def stored_only_groups(folder) -> list[set[str]]:
        with Catalog.open(folder) as cat:
            result = duplicates.scan(cat, dense=False)
        return [{Path(m.path).name for m in [g.representative, *g.members]} for g in result.groups]

    assert pair not in stored_only_groups(old)
    with Catalog.open(old) as cat:
        assert len(cat.images_without_local_features(features.FEATURES_VERSION, complete=True)) == 6
    assert main(["check", "--catalog", str(old), "--repair", "--no-files"]) == 0
    assert "computed the local features of 6 images" in capsys.readouterr().out
    assert pair in stored_only_groups(old) and pair in _cli_groups(capsys, old)


# ---------------------------------------------------------------------- copies under text
def test_dense_recheck_rows_pick_the_unconfirmed_queries_nearest_candidates():
    #                   query candidate
    pairs = np.array([[9, 1], [9, 2], [9, 3], [9, 4], [9, 5], [9, 6],   # 9: nothing confirmed
                      [8, 1], [8, 2],                                   # 8: a confirmed copy of 1
                      [7, 1], [7, 2]])                                  # 7: 25 inliers that disagree
    #                 cosine inliers colour aligned unchanged features
    ev = np.array([[0.70, 0, 0.9, 0.0, 0.0, 1],
                   [0.95, 16, 0.9, 0.6, 0.5, 1],
                   [0.80, 0, 0.9, 0.0, 0.0, 0],                          # no local features
                   [0.90, 3, 0.9, 0.0, 0.0, 1],
                   [0.85, 0, 0.9, 0.0, 0.0, 1],
                   [np.nan, 0, 0, 0, 0, 0],                               # image gone
                   [0.90, 40, 0.9, 0.95, 0.9, 1],
                   [0.99, 0, 0.9, 0.0, 0.0, 1],
                   [0.90, 30, 0.9, 0.50, 0.9, 1],
                   [0.80, 0, 0.9, 0.0, 0.0, 1]])
    rows = match_policy.dense_recheck_rows(pairs, ev)
    assert match_policy.DENSE_TOP == 4
    # by query; 9's four nearest usable candidates (2, 4, 5, 1), 7's two; 8 is confirmed
    assert [tuple(pairs[r]) for r in rows] == [(7, 1), (7, 2), (9, 2), (9, 4), (9, 5), (9, 1)]
    assert match_policy.dense_recheck_rows(pairs[:0], ev[:0]).size == 0


def test_copy_under_text_is_found_from_stored_dense_keypoints(tmp_path, luma_dir, model):
    """The feature pass stores each image's dense keypoints, so the re-check of a copy under text
    needs no file: found with the copy's file gone. Where they are not stored (a catalog made
    before them), the re-check decodes the file instead and finds the same pair."""
    import shutil
    import sqlite3

    from engine.ingest import ingest

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in [luma_dir / "images" / "wb07-brown-0.jpg", *sorted((luma_dir / "images").glob("wb0*.jpg"))[:5]]:
        shutil.copy(p, photos / p.name)
    folder = tmp_path / "catalog"
    with Catalog.open(folder) as cat:
        ingest(cat, model, sorted(photos.iterdir()))
        shutil.copy(luma_dir / "eval" / "copies" / "pos_q00049.jpg", photos / "copy.jpg")
        ingest(cat, model, [photos / "copy.jpg"])
        ids = {Path(r["path"]).name: r["image_id"] for r in cat.iter_records()}
        assert len(cat.dense_feature_blobs(list(ids.values()), features.FEATURES_VERSION)) == len(ids)

    def copy_score(folder) -> float:
        with Catalog.open(folder) as cat:
            result = duplicates.scan(cat, keep_candidates=True)
        assert result.rechecked >= 1
        pair = tuple(sorted((ids["wb07-brown-0.jpg"], ids["copy.jpg"])))
        at = [n for n, p in enumerate(result.candidate_pairs.tolist()) if tuple(sorted(p)) == pair]
        return float(result.candidate_scores[at[0]])

    (photos / "copy.jpg").rename(tmp_path / "moved.jpg")        # nothing to decode now
    assert copy_score(folder) >= scoring.THRESHOLDS["copy"]
    (tmp_path / "moved.jpg").rename(photos / "copy.jpg")
    with sqlite3.connect(folder / "catalog.db") as conn:
        conn.execute("UPDATE local_features SET dense = NULL")
    assert copy_score(folder) >= scoring.THRESHOLDS["copy"]      # decoded from the file
    (photos / "copy.jpg").unlink()
    assert copy_score(folder) < scoring.THRESHOLDS["copy"]       # neither: stored data alone


def test_copy_under_text_is_found_from_its_file(tmp_path, luma_dir, model, capsys):
    """Luma's pos_q00049 is wb07-brown-0 with a text overlay: the text has the strongest corners
    and takes the copy's stored keypoints, so stored data verify nothing (0 inliers). The scan
    decodes such an image again and matches it with more keypoints, as search does."""
    from cli.main import main
    from engine.ingest import ingest

    original = luma_dir / "images" / "wb07-brown-0.jpg"
    copy = luma_dir / "eval" / "copies" / "pos_q00049.jpg"
    others = sorted((luma_dir / "images").glob("wb0*.jpg"))[:6]
    folder = tmp_path / "catalog"
    with Catalog.open(folder) as cat:
        ingest(cat, model, sorted({original, *others}))
        ingest(cat, model, [copy])                   # added later: the suspected copy
        ids = {Path(r["path"]).name: r["image_id"] for r in cat.iter_records()}
        pair = np.array([[ids["wb07-brown-0.jpg"], ids["pos_q00049.jpg"]]])
        stored, _ = duplicates.pair_evidence(cat, pair)
        assert stored[0, 1] < scoring.MARGIN_MIN_INLIERS        # stored data cannot verify it

        def grouped(result) -> bool:
            return any({original.name, copy.name} <= {Path(m.path).name for m in [g.representative, *g.members]}
                       for g in result.groups)

        assert not grouped(duplicates.scan(cat, dense=False))
        result = duplicates.scan(cat)
        assert grouped(result) and result.rechecked >= 1, result.summary()
        member = next(m for g in result.groups for m in g.members if Path(m.path).name == copy.name)
        assert member.score >= scoring.THRESHOLDS["copy"]
        # each pair alone ("set as reference" rescoring) measures it the same way
        lone, _ = duplicates.verify_pairs(cat, pair, np.full(1, np.nan))
        assert lone[0] >= scoring.THRESHOLDS["copy"]

        # the passes that decode report their progress and can be cancelled
        for stage, kw in (("re-checking unmatched images", {}), ("searching turned images", {"model": model, "words": False})):
            seen, cancel = [], threading.Event()

            def stop_at(done, total, message, stage=stage, seen=seen, cancel=cancel):
                seen.append(message)
                if message == stage:
                    cancel.set()

            with pytest.raises(ScanCancelled):
                duplicates.scan(cat, progress=stop_at, cancel=cancel, **kw)
            assert seen[-1] == stage
        # the re-check counts images (its chunks hold whole images), not their pairs
        counts = []
        result = duplicates.scan(cat, turned=False,
                                 progress=lambda d, t, m: m == "re-checking unmatched images" and counts.append((d, t)))
        assert counts and counts[-1] == (result.rechecked, result.rechecked)
        assert all(0 <= d <= t == result.rechecked for d, t in counts)

    # the CLI: by default, and --stored-only (no decoding)
    names = {original.name, copy.name}
    assert any(names <= g for g in _cli_groups(capsys, folder))
    assert main(["dupes", "--catalog", str(folder), "--json", "--stored-only"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rechecked"] == 0
    assert not any(names <= {Path(m["path"]).name for m in [g["representative"], *g["members"]]}
                   for g in out["groups"])
    # --no-turned: the re-check still runs and groups the copy; no image is embedded turned,
    # where the default scan embeds the unmatched ones turned
    runs = {}
    for flag in ([], ["--no-turned"]):
        assert main(["dupes", "--catalog", str(folder), "--json", *flag]) == 0
        runs[tuple(flag)] = json.loads(capsys.readouterr().out)
    assert runs[()]["turned"] > 0 and runs[("--no-turned",)]["turned"] == 0
    assert runs[("--no-turned",)]["rechecked"] >= 1
    assert any(names <= {Path(m["path"]).name for m in [g["representative"], *g["members"]]}
               for g in runs[("--no-turned",)]["groups"])
    # the model that embeds turned images: the catalog's own unless named; a wrong one is refused
    assert main(["dupes", "--catalog", str(folder), "--model", "efficientnet-lite0"]) == 2
    assert "not efficientnet-lite0@" in capsys.readouterr().err
    assert main(["dupes", "--catalog", str(folder), "-q"]) == 0
    assert "re-checked with more keypoints" in capsys.readouterr().out

    with Catalog.open(folder) as cat:
        # the copy's file gone: its stored evidence stands, nothing fails
        moved = tmp_path / "moved.jpg"
        cat.db.conn.execute("UPDATE images SET path = ? WHERE id = ?", (str(moved), int(ids[copy.name])))
        assert not grouped(duplicates.scan(cat))


# ---------------------------------------------------------------------- turned copies
def test_turned_copy_far_from_everything_is_searched_turned(tmp_path, model):
    """The embedding is not rotation invariant: a copy turned by 90 degrees is not among its
    original's neighbours (here the graph's floor keeps every embedding pair out). An image that
    nothing confirms and nothing is close to is embedded turned, as search does; only such images
    are (with --new, only new ones), and pairs marked "not a duplicate" stay out."""
    from engine.ingest import ingest

    photos = _sample_photos(tmp_path / "photos")
    astronaut = cv2.imread(str(photos / "astronaut.png"))
    h, w = astronaut.shape[:2]
    turned = cv2.rotate(cv2.resize(astronaut[h // 10:, w // 16:], None, fx=0.7, fy=0.7), cv2.ROTATE_90_CLOCKWISE)
    copy = tmp_path / "turned copy.jpg"
    cv2.imwrite(str(copy), turned, [cv2.IMWRITE_JPEG_QUALITY, 80])
    pair = {"astronaut.png", copy.name}

    def groups(result) -> list[set[str]]:
        return [{Path(m.path).name for m in [g.representative, *g.members]} for g in result.groups]

    with Catalog.open(tmp_path / "catalog") as cat:
        ingest(cat, model, sorted(photos.iterdir()))
        first = duplicates.scan(cat, floor=0.99, words=False, model=model)
        assert first.turned == 5 and not first.groups        # every image isolated, nothing turned matches
        ingest(cat, model, [copy])
        found = duplicates.scan(cat, floor=0.99, words=False, only_new=True, model=model)
        assert found.turned == 1 and pair in groups(found), found.summary()   # the new image only
        member = next(m for g in found.groups for m in g.members if Path(m.path).name in pair)
        assert member.score >= scoring.THRESHOLDS["copy"]
        no_model = duplicates.scan(cat, floor=0.99, words=False)
        assert no_model.turned == 0 and pair not in groups(no_model)
        assert duplicates.scan(cat, floor=0.99, words=False, model=model, dense=False).turned == 0
        ids = sorted(r["image_id"] for r in cat.iter_records() if Path(r["path"]).name in pair)
        cat.decision_store.mark_pairs([tuple(ids)], NOT_DUPLICATE)
        assert pair not in groups(duplicates.scan(cat, floor=0.99, words=False, model=model))


def test_a_match_with_little_support_does_not_compete():
    """A copy matches its original with 193 inliers (aligned 0.95); another image that shares a
    corner of the photo matches the copy with 25 (aligned 0.97). That corner is no rival for the
    whole photo (MARGIN_SUPPORT), in search's margins and in the scan's alike; a rival with
    comparable support (a recoloured variant of the same photo) still competes."""
    strong = dict(cosine=0.93, inliers=193, colour=0.98, aligned=0.95, unchanged=1.0, verified=True)
    corner = scoring.Evidence(cosine=0.8, inliers=25, colour=0.9, aligned=0.97, unchanged=1.0, verified=True)
    whole = scoring.Evidence(**strong)
    match_policy.set_margins([whole, corner])
    assert whole.margin == pytest.approx(0.95)                 # as if alone
    assert corner.margin == pytest.approx(0.97 - 0.95)         # the whole photo does compete with it
    variant = scoring.Evidence(**{**strong, "inliers": 150, "aligned": 0.97})
    whole = scoring.Evidence(**strong)
    match_policy.set_margins([whole, variant])
    assert whole.margin == pytest.approx(0.95 - 0.97)
    # the scan's graph: image 3 (the copy, newer) against 1 (original) and 2 (the corner's image)
    pairs = np.array([[1, 3], [2, 3]])
    #                 cosine inliers colour aligned unchanged features
    ev = np.array([[0.93, 193, 0.98, 0.95, 1.0, 1],
                   [0.80, 25, 0.90, 0.97, 1.0, 1]])
    margins = match_policy.graph_margins(pairs, ev)
    assert margins[0] == pytest.approx(0.95) and margins[1] == pytest.approx(0.97 - 0.95)
    ev[1, 1] = 150
    assert match_policy.graph_margins(pairs, ev)[0] == pytest.approx(0.95 - 0.97)
