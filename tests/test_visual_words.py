"""Visual-word candidates (engine.visual_words): copies turned by 90/180/270 degrees, which the
embedding's kNN graph misses, are proposed from the stored ORB descriptors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine import duplicates, visual_words
from engine.catalog import Catalog

skimage_data = pytest.importorskip("skimage.data")

GALLERY = ("astronaut", "coffee", "rocket", "chelsea", "immunohistochemistry", "hubble_deep_field")


def test_words_sample_the_chosen_bits():
    rng = np.random.default_rng(1)
    desc = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    positions = visual_words._bit_positions(21)
    bits = np.unpackbits(desc, axis=1).astype(np.int64)
    expected = np.stack([bits[:, p] @ (1 << np.arange(21)) for p in positions])
    np.testing.assert_array_equal(visual_words._words(desc, positions), expected)
    assert visual_words.word_bits(900) == 20 and visual_words.word_bits(10_000) == 24


@pytest.fixture(scope="module")
def turned_catalog(tmp_path_factory, model):
    from engine.ingest import ingest

    photos = tmp_path_factory.mktemp("turned-photos")
    for name in GALLERY:
        cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(getattr(skimage_data, name)(), cv2.COLOR_RGB2BGR))
    coffee = cv2.imread(str(photos / "coffee.png"))
    cv2.imwrite(str(photos / "coffee turned.jpg"), np.rot90(coffee, 1), [cv2.IMWRITE_JPEG_QUALITY, 75])
    astronaut = cv2.imread(str(photos / "astronaut.png"))
    turned_mirrored = cv2.resize(np.ascontiguousarray(np.rot90(astronaut, 3)[:, ::-1]), None, fx=0.7, fy=0.7)
    cv2.imwrite(str(photos / "astronaut turned mirrored.jpg"), turned_mirrored, [cv2.IMWRITE_JPEG_QUALITY, 75])
    folder = tmp_path_factory.mktemp("turned-catalog")
    with Catalog.open(folder) as cat:
        assert ingest(cat, model, sorted(photos.iterdir())).added == len(GALLERY) + 2
    return folder


def _ids(cat: Catalog) -> dict[str, int]:
    return {r["path"].rsplit("/", 1)[-1]: r["image_id"] for r in cat.iter_records()}


def test_turned_copies_are_word_candidates(turned_catalog, monkeypatch):
    with Catalog.open(turned_catalog) as cat:
        ids = _ids(cat)
        turned = tuple(sorted((ids["coffee.png"], ids["coffee turned.jpg"])))
        mirrored = tuple(sorted((ids["astronaut.png"], ids["astronaut turned mirrored.jpg"])))
        found = {tuple(p) for p in visual_words.candidate_pairs(cat, top=1).tolist()}
        assert turned in found and mirrored in found        # each copy's best match is its original
        # --new: only the queried images propose pairs
        some = visual_words.candidate_pairs(cat, [ids["coffee turned.jpg"]], top=1)
        assert [tuple(p) for p in some.tolist()] == [turned]
        monkeypatch.setattr(visual_words, "MAX_IMAGES", 3)
        assert len(visual_words.candidate_pairs(cat)) == 0


def test_scan_groups_turned_copies_with_their_originals(turned_catalog):
    with Catalog.open(turned_catalog) as cat:
        ids = _ids(cat)
        names = {v: k for k, v in ids.items()}
        turned = tuple(sorted((ids["coffee.png"], ids["coffee turned.jpg"])))
        # a cosine floor no turned copy reaches: the kNN graph alone misses them...
        plain = duplicates.scan(cat, with_records=False, words=False, floor=0.99, keep_candidates=True)
        assert turned not in {tuple(p) for p in plain.candidate_pairs.tolist()}
        assert plain.groups == []
        # ...the visual words do not depend on the embedding
        result = duplicates.scan(cat, with_records=False, floor=0.99)
        groups = [{names[i] for i in g.image_ids} for g in result.groups]
        assert {"coffee.png", "coffee turned.jpg"} in groups
        assert {"astronaut.png", "astronaut turned mirrored.jpg"} in groups
        assert "words" in result.timings


def test_ranked_candidates_extend_the_first_pairs(turned_catalog):
    with Catalog.open(turned_catalog) as cat:
        ranked = visual_words.ranked_candidates(cat, top=4)
        for q in np.unique(ranked.query):
            mine = ranked.rank[ranked.query == q]
            assert list(mine) == list(range(len(mine)))       # each image's ranking starts at 0, no gaps
        assert len(ranked.query) > len(np.unique(ranked.query))
        # the first pairs of the ranking are what candidate_pairs proposes
        np.testing.assert_array_equal(ranked.pairs(visual_words.TOP), visual_words.candidate_pairs(cat))


def test_turned_pass_from_the_words_needs_no_model(turned_catalog, monkeypatch):
    """In a catalog the visual words cover, an image that nothing confirms and nothing is close to
    gets its next-ranked word candidates (here: all of them, TOP 0), so its turned copy is found
    without embedding anything turned; ``turned=False`` has no such pass."""
    monkeypatch.setattr(visual_words, "TOP", 0)
    with Catalog.open(turned_catalog) as cat:
        names = {v: k for k, v in _ids(cat).items()}

        def groups(result) -> list[set[str]]:
            return [{names[i] for i in g.image_ids} for g in result.groups]

        result = duplicates.scan(cat, with_records=False, floor=0.99, model=None)
        assert {"coffee.png", "coffee turned.jpg"} in groups(result)
        assert {"astronaut.png", "astronaut turned mirrored.jpg"} in groups(result)
        assert result.turned == len(names)          # every image is far from every other here
        skipped = duplicates.scan(cat, with_records=False, floor=0.99, model=None, turned=False)
        assert skipped.turned == 0 and skipped.groups == []


def test_word_turned_pairs_only_for_unsettled_images(turned_catalog):
    """The turned pass from the words: pairs of the images that nothing settles only (here the
    turned coffee: every other image is given a close candidate), from their next-ranked words
    and those of their dense keypoints; pairs marked "not a duplicate" stay out."""
    from engine.duplicates.candidates import word_turned_pairs
    from engine.match_policy import EVIDENCE

    with Catalog.open(turned_catalog) as cat:
        ids = _ids(cat)
        turned = ids["coffee turned.jpg"]
        pair = tuple(sorted((ids["coffee.png"], turned)))
        others = sorted(set(ids.values()) - {turned})
        pairs = np.array([[others[0], o] for o in others[1:]])
        evidence = np.zeros((len(pairs), len(EVIDENCE)))
        evidence[:, 0] = 0.95
        index = visual_words.build_index(cat)
        ranked = index.ranked(top=visual_words.RESERVE_TOP)
        none = np.zeros((0, 2), np.int64)
        found = word_turned_pairs(cat, index, ranked, pairs, evidence, none)
        assert found.queried == 1
        got = {tuple(p) for p in found.pairs.tolist()}
        assert pair in got and all(turned in p for p in got)
        ignored = word_turned_pairs(cat, index, ranked, pairs, evidence, np.array([pair]))
        assert pair not in {tuple(p) for p in ignored.pairs.tolist()}
        # the dense keypoints' words rank the original first, as the stored ones do
        dense = index.ranked_by_descriptors({turned: _dense_descriptors(cat, turned)}, top=1)
        assert list(dense.other) == [ids["coffee.png"]]


def _dense_descriptors(cat: Catalog, image_id: int) -> np.ndarray:
    from engine.feature_store import features_for
    from engine.features import dense_of

    return dense_of(features_for(cat, [image_id], dense=True)[image_id]).descriptors
