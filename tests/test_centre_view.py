"""The centre view of a photo taken in the world (engine.centre_view) and its use in a search."""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data as skdata

from engine import centre_view, scoring
from engine.catalog import Catalog
from engine.search import SearchFilters, Searcher


def test_studio_photos_have_no_centre_view_and_scenes_do():
    studio = np.full((300, 400, 3), 255, np.uint8)
    studio[100:200, 150:250] = (180, 40, 40)                  # a product on a white backdrop
    assert centre_view.white_share(studio) > 0.5
    assert not centre_view.wanted(studio)
    scene = skdata.astronaut()
    assert centre_view.white_share(scene) < centre_view.STUDIO_SHARE
    assert centre_view.wanted(scene)
    assert centre_view.wanted(cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY))   # grey photos too


def test_crops_are_centred_and_combined_view_is_unit():
    img = np.arange(200 * 100 * 3, dtype=np.uint32).reshape(200, 100, 3).astype(np.uint8)
    big, small = centre_view.crops(img)
    assert big.shape == (150, 75, 3) and small.shape == (100, 50, 3)
    np.testing.assert_array_equal(small, img[50:150, 25:75])
    rng = np.random.default_rng(0)
    e = rng.standard_normal((3, 16)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    v = centre_view.combine(e[0], e[1:])
    assert abs(np.linalg.norm(v) - 1) < 1e-5
    assert v @ e[0] > 0 and v @ e[2] > 0


def _product_in_scene(product: np.ndarray, share: float = 0.45) -> np.ndarray:
    """A busy scene (another photo, blurred and tiled) with ``product`` in its middle, filling
    ``share`` of each side: a product photographed in the world."""
    scene = cv2.resize(cv2.GaussianBlur(skdata.rocket(), (0, 0), 3), (640, 640))
    h, w = int(640 * share), int(640 * share)
    scene[(640 - h) // 2:(640 - h) // 2 + h, (640 - w) // 2:(640 - w) // 2 + w] = cv2.resize(product, (w, h))
    return scene


def test_centre_view_finds_a_product_photographed_in_a_scene(tmp_path, model):
    """The scene's centre view is closer to the product's catalog photo than the whole scene is,
    it is recorded as evidence and reaches the score; a studio query has none."""
    photos = {"coffee": skdata.coffee(), "chelsea": skdata.chelsea(), "astronaut": skdata.astronaut(),
              "hubble": skdata.hubble_deep_field(), "immunohistochemistry": skdata.immunohistochemistry()}
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, rgb in photos.items():
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    from engine.ingest import ingest
    cat = Catalog.open(tmp_path / "cat")
    ingest(cat, model, [str(folder)])
    searcher = Searcher(cat, model)
    result = searcher.search_image(_product_in_scene(photos["coffee"]), k=5, group="image")
    first = result.results[0]
    assert first.path.endswith("coffee.png")
    ev = first.evidence
    assert ev.centre is not None and ev.centre > ev.cosine + 0.05, (ev.centre, ev.cosine)
    assert "centre" in ev.to_json()
    assert all(m.evidence.centre is not None for m in result.results)
    # the "same product" claim reads the centre view: the same evidence without it scores lower
    # (this pasted photo also verifies as a copy, whose claim does not depend on it)
    claim = dict(inliers=ev.inliers, backdrop=ev.backdrop, colour=ev.colour)
    assert scoring.same_product(ev.cosine, centre=ev.centre, **claim) > scoring.same_product(ev.cosine, **claim)
    # a filter that leaves one image: the exact scan measures the centre view too
    only = searcher.search_image(_product_in_scene(photos["coffee"]), k=5, group="image",
                                 filters=SearchFilters(exclude_ids=frozenset(
                                     m.image_id for m in result.results if not m.path.endswith("coffee.png"))))
    assert [m.path for m in only.results] == [first.path] and only.results[0].evidence.centre is not None
    studio = np.full((400, 400, 3), 255, np.uint8)
    studio[100:300, 100:300] = cv2.resize(photos["chelsea"], (200, 200))
    assert all(m.evidence.centre is None for m in searcher.search_image(studio, k=3).results)
    # a region the user chose is the product already: no centre view of it
    roi = searcher.search_image(_product_in_scene(photos["coffee"]), k=3, roi=(200, 200, 240, 240))
    assert all(m.evidence.centre is None for m in roi.results)
    cat.close()
