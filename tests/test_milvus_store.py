"""A catalog's vectors in Milvus Lite (engine.milvus_store): the same answers as the local HNSW
index, kept in step with imports and removals, moved there and back, and one-line errors."""

import os
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from engine import duplicates  # noqa: E402
from engine.catalog import Catalog  # noqa: E402
from engine.consistency import check_catalog, repair_catalog  # noqa: E402
from engine.errors import CatalogError  # noqa: E402
from engine.milvus_store import MilvusVectorStore  # noqa: E402
from engine.vector_moves import move_vectors  # noqa: E402
from engine.search import SearchFilters, Searcher  # noqa: E402


@pytest.fixture(scope="module")
def pair(small_luma_catalog, tmp_path_factory):
    """(local catalog, the same catalog moved to Milvus Lite), products linked to the images so
    that filters have something to filter. Tests copy them before changing them."""
    root = tmp_path_factory.mktemp("milvus-pair")
    local = root / "local"
    shutil.copytree(small_luma_catalog, local, ignore=shutil.ignore_patterns("write.lock"))
    with Catalog.open(local, create=False) as cat, cat.writer():
        paths = [r["path"] for r in cat.iter_records()]
        cat.upsert_products([{"id": f"p{i}", "title": f"product {i}", "brand": "Luma" if i % 2 else "Other",
                              "price": 10.0 + i, "category": "Gear > Bags" if i % 3 else "Gear > Shoes",
                              "extra": {}} for i in range(len(paths) // 2)])
        cat.link_images([(p, f"p{i // 2}") for i, p in enumerate(paths[: len(paths) // 2 * 2])])
        cat.vectors.save()
    lite = root / "lite"
    shutil.copytree(local, lite, ignore=shutil.ignore_patterns("write.lock"))
    with Catalog.open(lite, create=False) as cat:
        assert move_vectors(cat, "milvus-lite") == f"moved {cat.count_images()} vectors to milvus-lite"
    return local, lite


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("write.lock"))
    return dst


def _index_ok(cat) -> bool:
    findings = [f for f in check_catalog(cat).findings if f.check.startswith("index")]
    return [(f.check, f.status) for f in findings] == [("index", "ok")] and "same ids" in findings[0].message


def _results(folder, model, queries, filters, **open_args):
    with Catalog.open(folder, create=False, **open_args) as cat:
        searcher = Searcher(cat, model, read_text=False)
        out = []
        for q in queries:
            res = searcher.search_path(q, k=8, filters=filters, group="image")
            assert res.error is None
            out.append([(m.image_id, round(m.score, 4)) for m in res.results])
        return out


FILTERS = [None, SearchFilters(category="Gear > Bags"), SearchFilters(brand="Luma", price_max=20.0)]


@pytest.mark.parametrize("filters", FILTERS)
def test_search_equals_the_local_catalogs(pair, model, luma_images, filters):
    local, lite = pair
    queries = [luma_images[5], luma_images[18], luma_images[200], luma_images[401]]
    want = _results(local, model, queries, filters)
    assert any(want)
    assert _results(lite, model, queries, filters) == want
    assert _results(lite, model, queries, filters, readonly=True) == want


def test_nearest_cosines_are_exact_and_scalars_are_stored(pair):
    _, lite = pair
    with Catalog.open(lite, create=False) as cat:
        assert isinstance(cat.vectors, MilvusVectorStore)
        assert cat.vectors.info()["count"] == cat.count_images()
        all_ids = np.array(cat.image_ids())
        embs = cat.embeddings(all_ids.tolist())
        ids, sims = cat.vectors.nearest(embs[:10], 5)
        exact = embs[:10] @ embs.T
        for row in range(10):
            assert ids[row, 0] == all_ids[row]
            np.testing.assert_allclose(sims[row], exact[row][np.searchsorted(all_ids, ids[row])], atol=1e-5)
            assert list(ids[row]) == list(all_ids[np.argsort(-exact[row], kind="stable")[:5]])
        client = cat.vectors.client()
        rows = client.query(cat.vectors.collection, filter='category == "Gear > Shoes"',
                            output_fields=["id", "product_id", "brand", "price"])
        records = {r["image_id"]: r for r in cat.image_records([r["id"] for r in rows])}
        assert rows and all(records[r["id"]]["category"] == "Gear > Shoes" for r in rows)
        assert all(r["price"] == records[r["id"]]["price"] for r in rows)


def test_duplicate_scan_gives_the_same_groups(pair):
    local, lite = pair

    def groups(folder, **how):
        with Catalog.open(folder, create=False, readonly=True) as cat:
            result = duplicates.scan(cat, only_new=False, **how)
            return sorted(sorted([g.representative.image_id, *(m.image_id for m in g.members)])
                          for g in result.groups)

    # the real scan, and one scoring by the embedding alone (groups of look-alikes here)
    for how in ({}, {"threshold": 0.5, "floor": 0.5, "verifier": duplicates.embedding_verifier,
                     "words": False, "dense": False}):
        want = groups(local, **how)
        assert groups(lite, **how) == want
    assert want


def test_the_scan_builds_its_graph_locally_and_keeps_it_up_to_date(pair, model, luma_images, tmp_path,
                                                                   monkeypatch):
    # the scan's kNN self-join never asks Milvus: it queries a local index of the stored
    # embeddings, saved in the records folder and synced with later imports; moving the vectors
    # back to local deletes it
    from engine.ingest import ingest
    from engine.milvus_store import GRAPH_FILE

    local, lite = pair
    work = _copy(lite, tmp_path / "lite")
    local_work = _copy(local, tmp_path / "local")

    def no_milvus(*_args, **_kwargs):
        raise AssertionError("the scan asked Milvus")

    def groups(folder):
        with Catalog.open(folder, create=False) as cat:
            result = duplicates.scan(cat, only_new=False)
            return sorted(sorted([g.representative.image_id, *(m.image_id for m in g.members)])
                          for g in result.groups)

    with monkeypatch.context() as m:
        m.setattr(MilvusVectorStore, "nearest", no_milvus)
        before = groups(work)
    assert before == groups(local_work)
    assert (work / GRAPH_FILE).is_file()
    # a cropped copy of an image already there, imported into both: the next scans group it
    import cv2

    extra = tmp_path / "extra"
    extra.mkdir()
    original = cv2.imread(str(luma_images[18]))          # (in the catalog: every 18th)
    h, w = original.shape[:2]
    cv2.imwrite(str(extra / "again.jpg"), original[h // 10: h - h // 10, w // 10: w - w // 10])
    for folder in (work, local_work):
        with Catalog.open(folder, create=False) as cat:
            ingest(cat, model, [str(extra / "again.jpg")], read_text=False)
    with monkeypatch.context() as m:
        m.setattr(MilvusVectorStore, "nearest", no_milvus)
        after = groups(work)
    assert after == groups(local_work) and after != before
    with Catalog.open(work, create=False) as cat:
        move_vectors(cat, "local")
    assert not (work / GRAPH_FILE).exists()


def test_the_scan_of_a_milvus_catalog_another_process_writes_still_runs(pair, tmp_path, monkeypatch):
    # the graph index would fit a projection (a write) first; with the write lock taken, the scan
    # builds its graph in memory without one and gives the same groups
    import engine.vector_store as vector_store
    from engine.milvus_store import GRAPH_FILE

    monkeypatch.setattr(vector_store, "PROJECTION_MIN_IMAGES", 10)
    work = _copy(pair[1], tmp_path / "busy")
    (work / GRAPH_FILE).unlink(missing_ok=True)      # (an earlier read-only scan of the pair's)

    def groups(cat):
        return sorted(sorted(g.image_ids) for g in duplicates.scan(cat, only_new=False).groups)

    with Catalog.open(pair[0], create=False, readonly=True) as local:
        want = groups(local)
    with Catalog.open(work, create=False) as writer, writer.writer():
        with Catalog.open(work, create=False) as cat:
            assert groups(cat) == want
            assert cat.stored_projection_key() is None
    assert not (work / GRAPH_FILE).exists()


def test_milvus_lite_builds_its_ivf_index_with_the_parameters_asked_for(pair, tmp_path, monkeypatch):
    # Milvus Lite reads index parameters only from a JSON "params" entry; sent the way pymilvus
    # sends a server's, it builds with its default nlist. The writer's first sync rebuilds such
    # an index.
    import engine.milvus_store as ms

    monkeypatch.setattr(ms, "IVF_MIN_IMAGES", 10)
    work = _copy(pair[0], tmp_path / "ivf")

    def built_nlist(cat):
        store = cat.vectors
        desc = store.client().describe_index(store.collection, "embedding")
        assert desc["index_type"] == "IVF_FLAT"
        return (desc.get("params") or {}).get("nlist")

    with Catalog.open(work, create=False) as cat:
        move_vectors(cat, "milvus-lite")
        want = ms.best_nlist(cat.count_images())
        assert str(built_nlist(cat)) == str(want)
        store = cat.vectors
        client = store.client()
        client.release_collection(store.collection)
        client.drop_index(store.collection, "embedding")
        params = client.prepare_index_params()
        params.add_index("embedding", index_type="IVF_FLAT", metric_type="IP", nlist=want)
        client.create_index(store.collection, params)
        client.load_collection(store.collection)
        assert built_nlist(cat) is None
    with Catalog.open(work, create=False) as cat:
        cat.vectors.sync()
        assert str(built_nlist(cat)) == str(want)


def test_imports_and_removals_reach_the_collection(pair, model, luma_images, tmp_path):
    from engine.ingest import ingest

    lite = _copy(pair[1], tmp_path / "lite")
    new = luma_images[300:303]
    with Catalog.open(lite, create=False) as cat:
        report = ingest(cat, model, new)
        assert report.added == 3
        assert cat.vectors.ids() == set(cat.image_ids())
        added = [cat.image_by_path(str(p))["id"] for p in new]
        ids, sims = cat.vectors.nearest(cat.embeddings(added), 1)
        assert ids[:, 0].tolist() == added and np.allclose(sims[:, 0], 1.0, atol=1e-5)
        cat.remove_images(added[:2])
        assert cat.vectors.ids() == set(cat.image_ids())
        assert not set(added[:2]) & set(cat.vectors.nearest(cat.embeddings(added[2:]), 50)[0].ravel())
        assert cat.vectors.reflected_version() == cat.version
        assert _index_ok(cat)


def test_a_reader_behind_the_collection_still_answers_exactly(pair, model, luma_images, tmp_path,
                                                              monkeypatch):
    from engine.ingest import ingest

    lite = _copy(pair[1], tmp_path / "lite")
    with Catalog.open(lite, create=False) as cat:
        gone = cat.image_ids()[:3]
        cat.remove_images(gone)
    # the next import's writer leaves Milvus behind (a crash before its sync)
    monkeypatch.setattr(MilvusVectorStore, "sync", lambda self, *a, **k: 0)
    with Catalog.open(lite, create=False) as cat:
        assert cat.vectors.reflected_version() == cat.version
        ingest(cat, model, luma_images[500:502])
        added = cat.image_ids(cat.vectors.reflected_version())
        assert len(added) == 2
    monkeypatch.undo()
    with Catalog.open(lite, create=False, readonly=True) as cat:
        assert cat.vectors.reflected_version() < cat.version
        embs = cat.embeddings(cat.image_ids())
        ids, sims = cat.vectors.nearest(cat.embeddings(added), 3)
        assert ids[:, 0].tolist() == added
        exact = np.sort(cat.embeddings(added) @ embs.T, axis=1)[:, ::-1][:, :3]
        np.testing.assert_allclose(sims, exact, atol=1e-5)
        assert not set(gone) & set(cat.vectors.nearest(embs, 10)[0].ravel())
        assert check_catalog(cat).find("index-version").status == "note"


def test_check_finds_a_damaged_collection_and_repair_rebuilds_it(pair, tmp_path):
    lite = _copy(pair[1], tmp_path / "lite")
    with Catalog.open(lite, create=False) as cat:
        store = cat.vectors
        store.client().delete(store.collection, ids=cat.image_ids()[:4])
        store.client().flush(store.collection)
        finding = check_catalog(cat).find("index-ids")
        assert finding.status == "problem" and finding.count == 4
        repair_catalog(cat)
        assert _index_ok(cat)
        assert store.ids() == set(cat.image_ids())


def test_moving_back_to_local_gives_identical_results(pair, model, luma_images, tmp_path):
    local, lite = pair
    back = _copy(lite, tmp_path / "back")
    with Catalog.open(back, create=False) as cat:
        assert move_vectors(cat, "local").startswith("moved")
        assert not (back / "vectors.milvus.db").exists() and cat.meta("vector_store") == ""
    queries = [luma_images[7], luma_images[333]]
    assert _results(back, model, queries, None) == _results(local, model, queries, None)


def test_a_new_milvus_lite_catalog_and_the_cli(tmp_path, luma_images, capsys):
    from cli.main import main

    folder = tmp_path / "new"
    assert main(["index", "--catalog", f"milvus-lite:{folder}", *map(str, luma_images[:3])]) == 0
    with Catalog.open(folder, create=False, readonly=True) as cat:
        assert cat.meta("vector_store") == "milvus-lite"
        assert cat.vectors.info()["count"] == 3
    capsys.readouterr()
    assert main(["info", "--catalog", str(folder)]) == 0
    assert "milvus-lite" in capsys.readouterr().out
    assert main(["vectors", "--catalog", str(folder), "--to", "local"]) == 0
    assert "HNSW cosine, 3 vectors" in capsys.readouterr().out
    assert main(["check", "--catalog", str(folder)]) == 0


@pytest.mark.parametrize("uri, text", [
    ("milvus://localhost/x", "expected milvus://HOST:PORT/NAME"),
    ("milvus://localhost:19530/bad-name", "expected milvus://HOST:PORT/NAME"),
    ("milvus-lite:", "expected milvus-lite:PATH"),
])
def test_bad_uris_are_one_line_errors(uri, text):
    with pytest.raises(CatalogError, match=text) as exc:
        Catalog.open(uri)
    assert "\n" not in str(exc.value)


def test_an_unreachable_server_is_a_one_line_error(tmp_path, monkeypatch, pair):
    import socket

    import engine.milvus_store as ms

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(ms, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:               # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"milvus://127.0.0.1:{port}/team"
    with Catalog.open(uri) as cat:
        assert str(tmp_path) in str(cat.directory) and cat.directory.name == f"127.0.0.1-{port}-team"
        cat.vectors.catalog.set_meta("milvus_version", "-2")  # behind: the next use connects
        with pytest.raises(CatalogError, match=f"milvus://127.0.0.1:{port}/team: Milvus error") as exc:
            cat.vectors.index()
        assert "\n" not in str(exc.value)
        stats = cat.stats()                  # the records still answer `lookalike info`
        assert stats["images"] == 0 and "Milvus error" in stats["index"]["error"]
        report = check_catalog(cat)          # unreachable, not another catalog's
        assert report.find("index-file") is not None and report.find("index-owner") is None


def test_a_milvus_catalog_without_pymilvus_says_what_to_install(pair, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(CatalogError, match=r'pip install "lookalike\[milvus\]"'):
        Catalog.open(pair[1], create=False, readonly=True)


def test_a_local_catalog_opened_as_milvus_lite_says_to_move_it(pair):
    with pytest.raises(CatalogError, match="lookalike vectors --to"):
        Catalog.open(f"milvus-lite:{pair[0]}", create=False, readonly=True)


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """A Milvus "server": the real one at $LOOKALIKE_TEST_MILVUS_SERVER (HOST:PORT; its
    collections shop and team are dropped), else a Milvus Lite file that clients of http:// URIs
    open."""
    import pymilvus

    real = pymilvus.MilvusClient
    server = os.environ.get("LOOKALIKE_TEST_MILVUS_SERVER")
    if server:
        client = real(f"http://{server}")
        for name in ("shop", "team"):
            client.drop_collection(name)
        client.close()
        return f"milvus://{server}"
    server_file = str(tmp_path / "server.db")

    def client(uri, **kw):
        if not str(uri).startswith("http://"):
            return real(uri, **kw)
        server_tokens.append(kw.get("token"))
        return real(server_file)
    monkeypatch.setattr(pymilvus, "MilvusClient", client)
    return "milvus://127.0.0.1:19530"


server_tokens: list = []                    # the token each fake server client was given


def test_moving_to_a_server_and_back(pair, model, luma_images, fake_server, tmp_path, capsys):
    from cli.main import main

    local = pair[0]
    moved = _copy(local, tmp_path / "moved")
    queries = [luma_images[7], luma_images[333]]
    want = _results(local, model, queries, None)
    assert main(["vectors", "--catalog", str(moved), "--to", f"{fake_server}/shop"]) == 0
    assert f"{fake_server}/shop, collection shop, HNSW IP" in capsys.readouterr().out
    with Catalog.open(moved, create=False) as cat:
        assert cat.meta("vector_store") == f"{fake_server}/shop" and not cat.index_path.exists()
        assert cat.vectors.ids() == set(cat.image_ids())
    assert _results(moved, model, queries, None) == want
    # another catalog may not take that collection over
    other = tmp_path / "other"
    assert main(["index", "--catalog", str(other), "-q", *map(str, luma_images[:2])]) == 0
    assert main(["vectors", "--catalog", str(other), "--to", f"{fake_server}/shop"]) != 0
    assert "holds the vectors of another catalog" in capsys.readouterr().err
    with Catalog.open(other, create=False, readonly=True) as cat:
        assert not cat.meta("vector_store") and _index_ok(cat)
    # a server with authentication: the token comes from the environment, never the catalog
    if not os.environ.get("LOOKALIKE_TEST_MILVUS_SERVER"):
        server_tokens.clear()
        with pytest.MonkeyPatch.context() as m:
            m.setenv("LOOKALIKE_MILVUS_TOKEN", "team:secret")
            with Catalog.open(moved, create=False, readonly=True) as cat:
                assert cat.vectors.count() == cat.count_images()
                assert "secret" not in (cat.meta("vector_store") or "")
        assert server_tokens == ["team:secret"]
    # and back: the collection goes, the HNSW index comes
    assert main(["vectors", "--catalog", str(moved), "--to", "local"]) == 0
    assert "HNSW cosine" in capsys.readouterr().out
    assert _results(moved, model, queries, None) == want
    assert main(["vectors", "--catalog", str(moved), "--to", "milvus:/x"]) != 0
    assert "expected local, milvus-lite or milvus://HOST:PORT/NAME" in capsys.readouterr().err


def test_a_second_desktop_cannot_overwrite_or_search_a_server_collection(tmp_path, luma_images,
                                                                          monkeypatch, capsys,
                                                                          fake_server):
    # A milvus:// catalog's records are per desktop. A second desktop (its own records folder)
    # pointed at the same collection must get a one-line error, and the first desktop's rows must
    # stay as they were: its sync would otherwise upsert its own ids over them, then drop the
    # collection to refill it. The "server" here is a Milvus Lite file.
    from cli.main import main
    from engine.milvus_store import OWNER_PROPERTY

    uri = f"{fake_server}/team"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "desktop-a"))
    assert main(["index", "--catalog", uri, "-q", *map(str, luma_images[:4])]) == 0
    with Catalog.open(uri, create=False, readonly=True) as cat:
        owner, first_ids = cat.catalog_id, set(cat.image_ids())
        assert cat.vectors.ids() == first_ids
        props = cat.vectors.client().describe_collection("team")["properties"]
        assert props[OWNER_PROPERTY] == owner

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "desktop-b"))
    capsys.readouterr()
    assert main(["index", "--catalog", uri, "-q", *map(str, luma_images[10:12])]) != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"lookalike: error: {uri}: collection team holds the vectors of another "
                          f"catalog ({owner})")
    with Catalog.open(uri, create=False) as cat:
        assert cat.catalog_id != owner
        finding = check_catalog(cat).find("index-owner")
        assert "another catalog" in finding.message and finding.repair is None
        with pytest.raises(CatalogError, match="another catalog"):
            repair_catalog(cat)                 # (it leaves the rows alone)
        with pytest.raises(CatalogError, match="another catalog"):
            cat.vectors.nearest(np.ones((1, cat.embedding_dim or 1280), np.float32), 3)

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "desktop-a"))
    with Catalog.open(uri, create=False) as cat:      # the first desktop's catalog is intact
        assert cat.vectors.ids() == first_ids and _index_ok(cat)


def test_server_searches_read_their_own_writes_without_waiting(pair, fake_server, tmp_path):
    # "Strong" searches wait for the server's time tick (~390 ms each on Milvus 2.3.5): the
    # process that synced searches "Session" (its own writes), another one "Bounded" once the
    # last sync is older than Milvus's staleness bound, "Strong" before that.
    import time

    from engine import milvus_store as ms

    moved = _copy(pair[0], tmp_path / "moved")
    with Catalog.open(moved, create=False) as cat:
        move_vectors(cat, f"{fake_server}/shop")
        assert cat.vectors._consistency() == {"consistency_level": "Session"}
        with Catalog.open(moved, create=False, readonly=True) as other:
            assert other.vectors._consistency() == {"consistency_level": "Strong"}
            synced = float(cat.meta(ms.SYNCED_AT_KEY))
            assert abs(synced - time.time()) < ms.BOUNDED_AFTER_S
        with Catalog.open(moved, create=False) as other, other.writer():     # another sync
            other.set_meta(ms.SYNCED_AT_KEY, str(time.time()))
        assert cat.vectors._consistency() == {"consistency_level": "Strong"}
    with Catalog.open(moved, create=False) as cat, cat.writer():
        cat.set_meta(ms.SYNCED_AT_KEY, str(synced - ms.BOUNDED_AFTER_S - 1))
    with Catalog.open(moved, create=False, readonly=True) as cat:
        assert cat.vectors._consistency() == {"consistency_level": "Bounded"}
    with Catalog.open(pair[1], create=False, readonly=True) as cat:
        assert cat.vectors._consistency() == {}              # Milvus Lite: no such wait


def test_filter_expressions_say_what_the_filters_accept():
    from engine.milvus_filters import filter_expression

    assert filter_expression(SearchFilters()) is None
    assert filter_expression(SearchFilters(exclude_ids=frozenset({3}))) is None
    assert filter_expression(SearchFilters(category='Gear > "Bags"', price_max=20, exclude_ids=frozenset({9, 2}))) == (
        '(category == "Gear > \\"Bags\\"" or category like "Gear > \\"Bags\\" >%") and price <= 20.0 '
        'and id not in [2, 9]')
    assert filter_expression(SearchFilters(brand="Luma", price_min=1.5)) == 'brand == "Luma" and price >= 1.5'
    assert filter_expression(SearchFilters(category="50%_off")) is None      # LIKE wildcards: scan
    assert filter_expression(SearchFilters(price_max=float("inf"))) is None


@pytest.mark.parametrize("filters", FILTERS[1:] + [SearchFilters(category="Gear", price_min=12.0,
                                                                 price_max=30.0)])
@pytest.mark.parametrize("exact_max", [4096, 0], ids=["scored-exactly", "searched-with-filter"])
def test_selective_filters_are_searched_inside_milvus(pair, model, luma_images, filters, exact_max,
                                                      monkeypatch):
    # a filter too selective for the nearest images: the local catalog scans every image's
    # filter fields; a Milvus catalog asks Milvus with the filter as an expression (few images
    # pass: their ids, then exact scores; more: a search with the filter). Same answers.
    from engine import milvus_store as ms
    from engine import search as search_module

    monkeypatch.setattr(ms, "FILTER_EXACT_MAX", exact_max)

    local, lite = pair
    with Catalog.open(lite, create=False, readonly=True) as cat:
        records = {r["image_id"]: r for r in cat.iter_records()}
        embs = cat.embeddings(sorted(records))
        ids, sims = cat.vectors.filtered_nearest(embs[:3], 1000, filters)
        want = {i for i, r in records.items() if filters.accepts(r)}
        for row in range(3):                 # exactly the images the filters accept, by cosine
            got = ids[row][ids[row] >= 0]
            assert set(got.tolist()) == want and np.all(np.diff(sims[row][: len(got)]) <= 1e-6)
    monkeypatch.setattr(search_module, "MIN_CANDIDATES", 5)       # take the selective path on
    monkeypatch.setattr(search_module, "MAX_INDEX_FETCH", 4)      # this small catalog
    pushed = []
    real = MilvusVectorStore.filtered_nearest
    monkeypatch.setattr(MilvusVectorStore, "filtered_nearest",
                        lambda self, *a, **k: pushed.append(1) or real(self, *a, **k))
    queries = [luma_images[7], luma_images[333]]
    want = _results(local, model, queries, filters)
    assert any(want) and _results(lite, model, queries, filters) == want
    assert pushed


def test_a_read_only_scan_keeps_its_graph_index_for_the_next(pair, tmp_path):
    # `lookalike dupes` opens the catalog read-only (it runs beside the desktop); the scan's
    # graph index is a derived file, so it is saved all the same, and the next scan loads it
    # as it is (a rebuilt one would be saved again)
    from engine.milvus_store import GRAPH_FILE

    work = _copy(pair[1], tmp_path / "lite")
    groups = []
    for _ in range(2):
        with Catalog.open(work, create=False, readonly=True) as cat:
            groups.append(len(duplicates.scan(cat, only_new=False).groups))
        assert (work / GRAPH_FILE).is_file()
        if len(groups) == 1:
            saved = (work / GRAPH_FILE).stat().st_mtime_ns
    assert (work / GRAPH_FILE).stat().st_mtime_ns == saved and groups[0] == groups[1]
