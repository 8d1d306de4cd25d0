"""Same product from another photo: the learned metric, the 'same product' score, reading the
pack in a search."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine import learned_metric, scoring
from engine.catalog import Catalog
from engine.decision_store import CONFIRMED
from tests.synthetic_vectors import unit

DIM = 64


# ---------------------------------------------------------------------- learned metric
def _grouped(rng, products: int, photos: int, nuisance: float = 3.0):
    """Embeddings of ``products`` x ``photos``: each product a direction, each photo spread along
    a few shared nuisance directions (light, angle) much more than the products differ."""
    centres = rng.standard_normal((products, DIM))
    shared = rng.standard_normal((4, DIM))
    x = np.concatenate([c + nuisance * rng.standard_normal((photos, 4)) @ shared * 0.3
                        + 0.2 * rng.standard_normal((photos, DIM)) for c in centres])
    return unit(x), np.repeat(np.arange(products), photos)


def _nn_accuracy(train, train_y, test, test_y) -> float:
    return float((train_y[(test @ train.T).argmax(axis=1)] == test_y).mean())


def test_whitening_learned_on_some_products_helps_others():
    """Fitted on half the products, the metric still ranks the other half's photos better than
    the plain cosine: the nuisance directions are shared."""
    rng = np.random.default_rng(0)
    x, y = _grouped(rng, 40, 8)
    fit_part, other = y < 20, y >= 20
    metric = learned_metric.fit(x[fit_part], y[fit_part])
    xo, yo = x[other], y[other]
    gallery, queries = np.arange(len(yo)) % 8 < 4, np.arange(len(yo)) % 8 >= 4
    plain = _nn_accuracy(xo[gallery], yo[gallery], xo[queries], yo[queries])
    z = metric.apply(xo)
    learned = _nn_accuracy(z[gallery], yo[gallery], z[queries], yo[queries])
    assert learned > plain + 0.1, (plain, learned)
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_metric_round_trips_and_ignores_single_photos():
    rng = np.random.default_rng(1)
    x, y = _grouped(rng, 6, 4)
    y = np.concatenate([y, [100, 101]])             # two products of one photo: no within-spread
    x = np.concatenate([x, unit(rng.standard_normal((2, DIM)))])
    metric = learned_metric.fit(x, y)
    assert (metric.groups, metric.images) == (6, 24)
    again = learned_metric.LearnedMetric.from_bytes(metric.to_bytes())
    np.testing.assert_allclose(again.apply(x[:3]), metric.apply(x[:3]), atol=1e-6)
    with pytest.raises(ValueError):
        learned_metric.fit(x[:1], y[:1])


def _catalog_of_groups(tmp_path, rng, products: int, photos: int) -> Catalog:
    x, y = _grouped(rng, products, photos)
    cat = Catalog.open(tmp_path / "cat")
    cat.upsert_products([{"id": f"p{p}", "title": f"product {p}"} for p in range(products)])
    cat.put_images([{"path": f"/syn/{i}.jpg", "content_hash": f"h{i}", "product_id": f"p{y[i]}",
                     "model_id": "synthetic", "embedding": x[i]} for i in range(len(x))])
    return cat


def test_catalog_groups_fit_store_and_refit(tmp_path):
    rng = np.random.default_rng(2)
    with _catalog_of_groups(tmp_path, rng, 6, 4) as cat:
        ids, labels = learned_metric.training_groups(cat)
        assert len(ids) == 24 and len(np.unique(labels)) == 6
        metric = learned_metric.maybe_refit(cat)
        assert metric is not None and metric.fitted_on == 24
        assert learned_metric.stored(cat).images == 24
        assert not learned_metric.refit_due(cat, learned_metric.stored(cat))
        # a pair the user confirmed joins two bare images into a group of its own
        more = unit(rng.standard_normal((2, DIM)))
        new = cat.put_images([{"path": f"/bare/{i}.jpg", "content_hash": f"b{i}", "model_id": "synthetic",
                               "embedding": more[i]} for i in range(2)])
        cat.decision_store.mark_pairs([tuple(new)], CONFIRMED)
        ids, labels = learned_metric.training_groups(cat)
        assert set(new) <= set(ids.tolist()) and len(np.unique(labels)) == 7


def test_too_few_groups_give_no_metric(tmp_path):
    with _catalog_of_groups(tmp_path, np.random.default_rng(3), 3, 3) as cat:
        assert learned_metric.maybe_refit(cat) is None
        assert learned_metric.stored(cat) is None


def test_a_fit_leaves_out_the_excluded_photos(tmp_path):
    with _catalog_of_groups(tmp_path, np.random.default_rng(4), 6, 4) as cat:
        ids, labels = learned_metric.training_groups(cat)
        first = ids[labels == labels[0]]
        # one photo out: its product keeps three; three out: the last one is no group
        assert learned_metric.fit_for(cat, exclude={int(first[0])}).images == 23
        held = learned_metric.fit_for(cat, exclude=set(first[:3].tolist()))
        assert (held.groups, held.images) == (5, 20)


def test_held_out_queries_never_teach_their_own_comparison(tmp_path):
    """An evaluation whose queries are catalog photos searches each with a metric fitted without
    it: the catalog's own metric, fitted with the query, pulls it towards its product."""
    from engine.evaluation import HELD_OUT_FOLDS, held_out_metrics
    from engine.match_policy import prototypes

    rng = np.random.default_rng(5)
    with _catalog_of_groups(tmp_path, rng, 12, 4) as cat:
        assert held_out_metrics(cat, [frozenset()])[1] == 0          # no metric yet: nothing held out
        stored = learned_metric.maybe_refit(cat)
        ids, labels = learned_metric.training_groups(cat)
        queries = ids[::4][:10]                                     # one photo of 10 products
        owns = [frozenset([int(i)]) for i in queries] + [frozenset()]   # and a photo from outside
        plan, held = held_out_metrics(cat, owns)
        assert held == 10 and plan[-1] is None
        metrics = {id(m): m for m in plan[:-1]}
        assert len(metrics) == HELD_OUT_FOLDS
        assert all(m.images == stored.images - 2 for m in metrics.values())     # 2 queries a fold
        product_of = {r["image_id"]: r["product_id"] for r in cat.iter_records()}
        leak = []
        for q, m in zip(queries.tolist(), plan):
            emb = cat.embeddings([q])[0]
            sims = []
            for metric in (stored, m):
                proto = prototypes(cat, metric.apply, {product_of[q]}, exclude={q})[product_of[q]]
                sims.append(float(metric.apply(emb) @ proto))
            leak.append(sims[0] - sims[1])
        assert np.mean(leak) > 0, leak


def test_prototypes_leave_out_excluded_photos(tmp_path):
    from engine.match_policy import prototypes

    with _catalog_of_groups(tmp_path, np.random.default_rng(6), 3, 3) as cat:
        members = cat.images_of_products(["p0"])["p0"]
        embs = cat.embeddings(members)
        mean = embs[1:].mean(axis=0)
        got = prototypes(cat, lambda x: np.asarray(x, np.float32), {"p0"}, exclude={members[0]})["p0"]
        np.testing.assert_allclose(got, mean / np.linalg.norm(mean), atol=1e-5)
        # two photos out of three: no prototype (one photo is compared as itself)
        assert "p0" not in prototypes(cat, lambda x: x, {"p0"}, exclude=set(members[:2]))


def test_pairs_of_one_product_get_no_learned_comparison(tmp_path):
    """The duplicate finder compares a pair in the learned space only across products: the
    metric was fitted to pull one product's photos together."""
    from engine.match_policy import _pair_products

    with _catalog_of_groups(tmp_path, np.random.default_rng(7), 6, 4) as cat:
        learned_metric.maybe_refit(cat)
        p0, p1 = cat.images_of_products(["p0"])["p0"], cat.images_of_products(["p1"])["p1"]
        pairs = np.array([[p0[0], p0[1]], [p0[0], p1[0]]])
        embs = dict(zip(map(int, pairs.ravel()), cat.embeddings(pairs.ravel().tolist())))
        same, other = _pair_products(cat, pairs, embs)
        assert same is None
        assert other[1] == 1.0 and -1.0 <= other[0] <= 1.0


# ---------------------------------------------------------------------- the score
def test_same_product_score_stays_below_copy_and_rises_with_evidence():
    cos = np.linspace(0.2, 1.0, 9)
    for backdrop in (0.0, 0.5):
        s = scoring.same_product(cos, colour=0.8, backdrop=backdrop)
        assert (np.diff(s) > 0).all() and s.max() < scoring.THRESHOLDS["copy"]
    # words that match the product's text raise a phone photo's score
    plain = scoring.same_product(0.6, text=0.0)
    read = scoring.same_product(0.6, text=0.9)
    assert read > plain
    # on a phone photo the colours are the scene's: they do not count; on a studio photo they do
    assert scoring.same_product(0.6, colour=1.0) == scoring.same_product(0.6, colour=0.0)
    assert scoring.same_product(0.6, colour=1.0, backdrop=0.5) > scoring.same_product(0.6, colour=0.0, backdrop=0.5)


def test_a_studio_photo_is_compared_with_the_learned_prototype():
    """With a learned metric, a studio photo's same-product score follows its similarity to the
    candidate's product prototype in the learned space (and still its colours); without one,
    only the plain cosine counts."""
    product = np.linspace(0.1, 0.9, 5)
    learned = scoring.same_product(0.5, product=product, colour=0.7, backdrop=0.5, learned=True)
    assert (np.diff(learned) > 0).all() and learned.max() < scoring.THRESHOLDS["copy"]
    plain = scoring.same_product(0.5, product=product, colour=0.7, backdrop=0.5, learned=False)
    assert np.ptp(plain) == 0
    assert (scoring.same_product(0.5, product=0.5, colour=1.0, backdrop=0.5, learned=True)
            > scoring.same_product(0.5, product=0.5, colour=0.2, backdrop=0.5, learned=True))


def test_score_is_the_stronger_claim():
    """A verified copy keeps its copy score; an unverified re-shot photo gets its same-product
    score, and only verified geometry reaches "copy"."""
    copy = scoring.score(scoring.Evidence(cosine=0.9, inliers=200, colour=0.9, aligned=0.98, unchanged=0.95,
                                          margin=0.5, verified=True, backdrop=0.5))
    assert copy >= scoring.THRESHOLDS["copy"]
    reshot = scoring.Evidence(cosine=0.85, product=0.85, text=0.9)
    s = scoring.score(reshot)
    assert scoring.THRESHOLDS["same product"] <= s < scoring.THRESHOLDS["copy"]
    assert scoring.strength(s) == "same product"
    assert scoring.best_unverified_score(0.85) >= s


# ---------------------------------------------------------------------- reading the pack
def _pack(word: str, colour) -> np.ndarray:
    img = np.full((360, 300, 3), 255, np.uint8)
    cv2.rectangle(img, (40, 30), (260, 330), colour, -1)
    cv2.putText(img, word, (55, 190), cv2.FONT_HERSHEY_DUPLEX, 1.6, (255, 255, 255), 3)
    return img


@pytest.mark.slow
def test_search_reads_the_pack_and_names_the_matched_words(tmp_path, model):
    """Two cartons that look alike; the words on the query's pack name its product."""
    from engine.ingest import ingest
    from engine.search import Searcher

    folder = tmp_path / "shop"
    folder.mkdir()
    cartons = {"bravo": ("BRAVO", (40, 120, 40)), "arla": ("ARLA", (40, 110, 50))}
    for name, (word, colour) in cartons.items():
        cv2.imwrite(str(folder / f"{name}.png"), _pack(word, colour)[:, :, ::-1])
    (folder / "feed.csv").write_text("id,title,brand,image_link\n"
                                     "bravo-juice,Apple Juice,BRAVO,bravo.png\n"
                                     "arla-milk,Mellanmjolk,ARLA,arla.png\n", encoding="utf-8")
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [str(folder / "feed.csv")])
        query = cv2.GaussianBlur(_pack("BRAVO", (45, 115, 45)), (3, 3), 0)
        result = Searcher(cat, model).search_image(query, k=2)
        assert any("BRAVO" in line.upper() for line in result.read), result.read
        top = result.results[0]
        assert top.product.get("product_id") == "bravo-juice"
        assert ["bravo", "bravo"] in [[q.lower(), p.lower()] for q, p in top.evidence.words]
        assert top.evidence.text > 0.5
        quiet = Searcher(cat, model, read_text=False).search_image(query, k=2)
        assert quiet.read == [] and all(m.evidence.text == 0 for m in quiet.results)


def test_a_catalog_without_text_is_not_read(tmp_path, model, monkeypatch):
    """Images without product data and without read words: nothing to match, no OCR."""
    from engine import search
    from engine.ingest import ingest

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), _pack("BRAVO", (40, 120, 40)))
    monkeypatch.setattr(search, "read_text", lambda rgb: pytest.fail("read a catalog without text"))
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [str(folder)])
        result = search.Searcher(cat, model).search_image(_pack("BRAVO", (40, 120, 40)), k=1)
        assert result.read == [] and result.results


@pytest.mark.slow
def test_words_bring_a_product_that_is_not_among_the_nearest(tmp_path, model, monkeypatch):
    """A large catalog: a dozen other green cartons look more like the query than the product's
    own (red) catalog photo, which is not among the nearest images the search verifies. The words
    read on the pack bring the product in as a candidate, with the matched words. (Where it ranks
    is the score's business; these drawn cartons are near-identical drawings of each other.)"""
    from engine import search
    from engine.ingest import ingest

    rng = np.random.default_rng(3)
    folder = tmp_path / "shop"
    folder.mkdir()
    cv2.imwrite(str(folder / "bravo.png"), _pack("BRAVO", (170, 40, 40))[:, :, ::-1])
    cv2.imwrite(str(folder / "arla.png"), _pack("ARLA", (40, 40, 160))[:, :, ::-1])
    (folder / "feed.csv").write_text("id,title,brand,image_link\n"
                                     "bravo-juice,Apple Juice,BRAVO,bravo.png\n"
                                     "arla-milk,Mellanmjolk,ARLA,arla.png\n", encoding="utf-8")
    others = tmp_path / "others"
    others.mkdir()
    for n, word in enumerate(("SAFT", "MJOLK", "JUICE", "SODA", "DRINK", "FRUKT", "TROPIC", "VALIO",
                              "OATLY", "ALPRO", "GARANT", "KEFIR")):      # photos without product data
        img = np.full((360, 300, 3), 255, np.uint8)
        x, y = int(rng.integers(20, 60)), int(rng.integers(10, 50))
        cv2.rectangle(img, (x, y), (x + 200 + int(rng.integers(0, 30)), y + 280 + int(rng.integers(0, 20))),
                      (40 + int(rng.integers(0, 20)), 115 + int(rng.integers(0, 10)), 45), -1)
        cv2.putText(img, word, (x + 15, y + int(rng.integers(60, 220))), cv2.FONT_HERSHEY_DUPLEX, 1.4,
                    (255, 255, 255), 3)
        cv2.imwrite(str(others / f"other{n}.png"), img[:, :, ::-1])
    monkeypatch.setattr(search, "MIN_CANDIDATES", 10)
    query = cv2.GaussianBlur(_pack("BRAVO", (45, 115, 45)), (3, 3), 0)
    with Catalog.open(tmp_path / "cat") as cat:
        ingest(cat, model, [str(folder / "feed.csv"), str(others)])
        searcher = search.Searcher(cat, model)
        # the product's photo is farther than the first group of candidates
        bravo = cat.image_by_path(str(folder / "bravo.png"))["id"]
        nearest, _ = searcher._candidates(cat.vectors.index(), model.embed([query]), 10, search.SearchFilters(),
                                          search._Clock())
        assert bravo not in [i for i, _, _ in nearest]
        monkeypatch.setattr(search, "TEXT_CANDIDATE_PRODUCTS", 0)
        without = searcher.search_image(query, k=10)
        assert "bravo-juice" not in [m.product.get("product_id") for m in without.results]
        monkeypatch.setattr(search, "TEXT_CANDIDATE_PRODUCTS", 5)
        result = searcher.search_image(query, k=10)
        found = {m.product.get("product_id"): m for m in result.results}
        assert "bravo-juice" in found and "arla-milk" not in found
        ev = found["bravo-juice"].evidence
        assert ev.verified and ev.text > 0.5 and ["bravo", "bravo"] in [[q.lower(), p.lower()] for q, p in ev.words]
        # the first group stays the first: a longer list does not reorder it
        longer = searcher.search_image(query, k=14)
        assert [m.image_id for m in longer.results[:len(result.results)]] == [m.image_id for m in result.results]
