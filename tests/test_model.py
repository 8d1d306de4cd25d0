"""engine.model: manifests, integrity checks, preprocessing, inference on real photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import model as model_mod
from engine.errors import ModelError
from engine.model import MODELS_DIR, available_packs, load_model, resolve_pack

skdata = pytest.importorskip("skimage.data")

FP32 = "efficientnet-lite0"
INT8 = "efficientnet-lite0-int8"
CATS = {"tabby", "tiger cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def fp32():
    return load_model(FP32, providers=["CPUExecutionProvider"])


@pytest.fixture
def pack_copy(tmp_path) -> Path:
    """A private copy of the fp32 pack that a test may damage."""
    dst = tmp_path / "pack"
    shutil.copytree(MODELS_DIR / FP32, dst)
    return dst


def _rewrite_manifest(pack: Path, **changes) -> None:
    path = pack / "model.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


# ---- pack discovery and manifests


def test_shipped_packs_are_listed_and_the_default_exists():
    packs = available_packs()
    assert FP32 in packs and INT8 in packs
    assert model_mod.DEFAULT_PACK in packs


@pytest.mark.parametrize("name", [FP32, INT8])
def test_both_packs_load_with_their_manifest_values(name):
    m = load_model(name, providers=["CPUExecutionProvider"])
    manifest = json.loads((MODELS_DIR / name / "model.json").read_text())
    assert m.name == manifest["name"] == name
    assert m.model_id == f"{name}@{manifest['sha256'][:12]}"
    assert m.input_size == 224 and m.resize_short_side == 256
    assert m.embedding_dim == 1280 and m.num_classes == len(m.labels) == 1000
    assert m.provider == "CPU"
    assert m.labels[967] == "espresso" and m.labels[504] == "coffee mug"
    assert len(set(m.labels)) == 1000  # every class name is distinct


def test_default_pack_is_used_without_a_name(monkeypatch):
    monkeypatch.delenv("LOOKALIKE_MODEL", raising=False)
    assert resolve_pack() == MODELS_DIR / model_mod.DEFAULT_PACK / "model.json"
    assert load_model(providers=["CPUExecutionProvider"]).name == model_mod.DEFAULT_PACK


def test_pack_can_be_named_by_folder_or_manifest(pack_copy):
    a = load_model(pack_copy, providers=["CPUExecutionProvider"])
    b = load_model(pack_copy / "model.json", providers=["CPUExecutionProvider"])
    assert a.model_id == b.model_id and a.manifest_path == b.manifest_path


def test_env_var_overrides_the_default_pack(monkeypatch, pack_copy):
    _rewrite_manifest(pack_copy, name="my-own-model")
    monkeypatch.setenv("LOOKALIKE_MODEL", str(pack_copy))
    assert resolve_pack(None) == pack_copy / "model.json"
    assert load_model(providers=["CPUExecutionProvider"]).name == "my-own-model"
    monkeypatch.setenv("LOOKALIKE_MODEL", INT8)
    assert resolve_pack() == MODELS_DIR / INT8 / "model.json"


def test_unknown_pack_name_lists_the_available_ones():
    with pytest.raises(ModelError, match="no model pack of that name.*efficientnet-lite0"):
        load_model("no-such-model")


# ---- damaged or missing packs: one-line ModelError naming the file


def _one_line_naming(err: ModelError, path: Path) -> str:
    msg = str(err)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_sha256_mismatch_is_reported(pack_copy):
    onnx_path = pack_copy / "model.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        load_model(pack_copy)
    assert "damaged" in _one_line_naming(exc.value, onnx_path)


def test_unverified_damaged_file_fails_to_load_cleanly(pack_copy):
    onnx_path = pack_copy / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:5000])  # truncated download
    with pytest.raises(ModelError) as exc:
        load_model(pack_copy, verify=False)
    assert "cannot load model" in _one_line_naming(exc.value, onnx_path)


def test_missing_model_file(pack_copy):
    (pack_copy / "model.onnx").unlink()
    with pytest.raises(ModelError) as exc:
        load_model(pack_copy)
    assert "not found" in _one_line_naming(exc.value, pack_copy / "model.onnx")


def test_missing_manifest(pack_copy):
    (pack_copy / "model.json").unlink()
    with pytest.raises(ModelError) as exc:
        load_model(pack_copy)
    _one_line_naming(exc.value, pack_copy / "model.json")


def test_missing_labels(pack_copy):
    (pack_copy / "labels.txt").unlink()
    with pytest.raises(ModelError) as exc:
        load_model(pack_copy)
    _one_line_naming(exc.value, pack_copy / "labels.txt")


def test_labels_that_do_not_match_the_model(pack_copy):
    labels = (pack_copy / "labels.txt").read_text().splitlines()
    (pack_copy / "labels.txt").write_text("\n".join(labels[:999]) + "\n")
    with pytest.raises(ModelError) as exc:
        load_model(pack_copy)
    _one_line_naming(exc.value, pack_copy / "labels.txt")


def test_invalid_json_manifest(pack_copy):
    (pack_copy / "model.json").write_text('{"name": "x",')
    with pytest.raises(ModelError, match="not valid JSON") as exc:
        load_model(pack_copy)
    _one_line_naming(exc.value, pack_copy / "model.json")


@pytest.mark.parametrize("change, reason", [
    ({"sha256": None}, "'sha256'"),
    ({"outputs": {"logits": "logits"}}, "'outputs.embedding'"),
    ({"outputs": {"logits": "logits", "embedding": "features"}}, "no embedding output named"),
    ({"embedding_dim": 512}, "embedding output has shape"),
])
def test_inconsistent_manifest(pack_copy, change, reason):
    manifest = json.loads((pack_copy / "model.json").read_text())
    for key, value in change.items():
        if value is None:
            del manifest[key]
        else:
            manifest[key] = value
    (pack_copy / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=reason) as exc:
        load_model(pack_copy)
    assert "\n" not in str(exc.value)


# ---- preprocessing


def test_preprocess_shape_and_normalisation(fp32):
    grey = np.full((600, 400, 3), 127, np.uint8)
    x = fp32.preprocess(grey)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x, 0.0, atol=1e-6)  # (127 - 127) / 128
    white = fp32.preprocess(np.full((100, 3000, 3), 255, np.uint8))  # panorama, enlarged
    np.testing.assert_allclose(white, 128 / 128, atol=1e-6)
    black = fp32.preprocess(np.zeros((224, 224), np.uint8))  # 2-D grey is accepted
    np.testing.assert_allclose(black, -127 / 128, atol=1e-6)


def test_preprocess_keeps_channel_order_and_crops_the_centre(fp32):
    img = np.zeros((512, 768, 3), np.uint8)  # resized to 256x384, crop starts at column 80
    img[:, :, 0] = 255  # pure red
    img[:, :120] = 0  # left margin (60 px after resizing) falls outside the centre crop
    x = fp32.preprocess(img)
    np.testing.assert_allclose(x[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(x[1:], -127 / 128, atol=1e-6)


def test_preprocess_matches_the_reference_formula_in_both_layouts(fp32):
    """The in-place normalisation gives exactly (x - mean) / std, in NCHW and NHWC order."""
    import copy

    from engine.model import Model

    rgb = np.random.default_rng(3).integers(0, 256, (300, 260, 3), dtype=np.uint8)
    resized = cv2.resize(rgb, (256, 295), interpolation=cv2.INTER_AREA)
    top, left = int(round((295 - 224) / 2)), int(round((256 - 224) / 2))
    ref = (resized[top:top + 224, left:left + 224].astype(np.float32) - 127.0) / 128.0
    np.testing.assert_allclose(fp32.preprocess(rgb), ref.transpose(2, 0, 1), atol=1e-6)
    manifest = copy.deepcopy(fp32.manifest)
    manifest["input"]["layout"] = "NHWC"
    nhwc = Model(fp32.manifest_path, manifest, fp32.session, fp32.labels, fp32.sha256)
    x = nhwc.preprocess(rgb)
    assert x.shape == (224, 224, 3) and x.flags.c_contiguous
    np.testing.assert_allclose(x, ref, atol=1e-6)


def test_preprocess_rejects_wrong_input(fp32):
    with pytest.raises(ValueError):
        fp32.preprocess(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError):
        fp32.preprocess(np.zeros((10, 10, 3), np.float32))


# ---- inference


def test_output_shapes_probabilities_and_unit_embeddings(fp32):
    probs, embs = fp32.run([skdata.coffee(), skdata.chelsea(), skdata.astronaut()])
    assert probs.shape == (3, 1000) and embs.shape == (3, 1280)
    assert probs.dtype == embs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embs, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(fp32.embed([skdata.coffee()]), embs[:1])
    empty_p, empty_e = fp32.run([])
    assert empty_p.shape == (0, 1000) and empty_e.shape == (0, 1280)


def test_chunked_batches_match_one_by_one(pack_copy):
    m = load_model(pack_copy, providers=["CPUExecutionProvider"], batch_size=2)
    photos = [skdata.coffee(), skdata.chelsea(), skdata.rocket(), skdata.astronaut(), skdata.coffee()[::-1]]
    probs, embs = m.run(photos)
    for i, photo in enumerate(photos):
        p1, e1 = m.run([photo])
        np.testing.assert_allclose(p1[0], probs[i], atol=1e-5)
        np.testing.assert_allclose(e1[0], embs[i], atol=1e-5)


def test_real_photos_are_classified_sensibly(fp32):
    probs, _ = fp32.run([skdata.coffee(), skdata.chelsea()])
    coffee = fp32.top_labels(probs[0], k=3)
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5
    assert [p for _, p in coffee] == sorted((p for _, p in coffee), reverse=True)
    cat = [label for label, _ in fp32.top_labels(probs[1], k=3)]
    assert cat[0] in CATS and len(CATS & set(cat)) >= 2
    assert fp32.top_labels(probs[0], k=0) == []


def test_int8_pack_agrees_with_fp32_on_real_photos(fp32):
    int8 = load_model(INT8, providers=["CPUExecutionProvider"])
    photos = [skdata.coffee(), skdata.chelsea(), skdata.rocket(), skdata.astronaut()]
    _, e32 = fp32.run(photos)
    p8, e8 = int8.run(photos)
    assert int8.top_labels(p8[0], 1)[0][0] == "espresso"
    assert int8.top_labels(p8[1], 1)[0][0] in CATS
    assert np.all((e32 * e8).sum(axis=1) > 0.95)  # cosine between the packs' embeddings


def test_same_photo_scores_as_its_own_best_match(fp32):
    coffee = skdata.coffee()
    _, embs = fp32.run([coffee, coffee[:, ::-1], skdata.chelsea(), skdata.rocket()])
    sims = embs[1:] @ embs[0]
    assert sims[0] > 0.9 and sims[0] > sims[1:].max() + 0.2  # a mirrored copy beats other photos


def test_default_threads_respects_the_environment(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_THREADS", "3")
    assert model_mod.default_threads() == 3
    monkeypatch.setenv("LOOKALIKE_THREADS", "many")
    assert model_mod.default_threads() >= 1


def test_manifest_size_must_match_the_graph(pack_copy):
    manifest = json.loads((pack_copy / "model.json").read_text())
    manifest["input"]["size"] = 192
    (pack_copy / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="manifest says size 192"):
        load_model(pack_copy)


def test_fixed_batch_export_is_chunked_and_padded(pack_copy, fp32):
    onnx = pytest.importorskip("onnx")
    path = pack_copy / "model.onnx"
    graph = onnx.load(str(path))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # batch fixed at 2
    onnx.save(graph, str(path))
    _rewrite_manifest(pack_copy, sha256=model_mod.file_sha256(path))
    m = load_model(pack_copy, providers=["CPUExecutionProvider"], batch_size=32)
    assert m.batch_size == 2
    photos = [skdata.coffee(), skdata.chelsea(), skdata.rocket()]  # 2 + 1 padded
    p, e = m.run(photos)
    p_ref, e_ref = fp32.run(photos)
    np.testing.assert_allclose(e, e_ref, atol=1e-5)
    np.testing.assert_allclose(p, p_ref, atol=1e-5)
