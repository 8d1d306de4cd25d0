"""A model pack that is missing, damaged, edited or hostile is refused with one clear line before
it is used, from the API and from the CLI: every file is hashed, file names stay inside the pack,
numeric fields have sane ranges, and the pack's identity (model_id) covers its manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from cli.main import main as cli_main
from engine import model_pack
from engine.errors import ModelError
from engine.model import DEFAULT_PACK, MODELS_DIR, load_model
from engine.paths import models_dir

ROOT = Path(__file__).resolve().parent.parent
CPU = ["CPUExecutionProvider"]
SHIPPED = {"efficientnet-lite0": "efficientnet-lite0@4f56c79632d7",
           "efficientnet-lite0-int8": "efficientnet-lite0-int8@2a19072035c1"}


@pytest.fixture
def pack_copy(tmp_path):
    src = models_dir() / DEFAULT_PACK                # the pack load_model() uses by default
    dst = tmp_path / "pack"
    shutil.copytree(src, dst)
    return dst


def _edit(pack: Path, change) -> None:
    """Apply ``change(manifest)`` to the pack's model.json (allowing NaN/Infinity literals)."""
    path = pack / "model.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def _refused(pack: Path, *needles: str) -> str:
    with pytest.raises(ModelError) as exc:
        load_model(pack, providers=CPU)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ---- every file is hashed


def test_damaged_model_file_is_refused(pack_copy, tmp_path):
    onnx = pack_copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01                     # one bit flipped in the middle of the weights
    onnx.write_bytes(bytes(data))
    _refused(pack_copy, str(onnx), "sha256 does not match the manifest", "reinstall")

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOOKALIKE_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "cli", "index", str(tmp_path), "--catalog",
                           str(tmp_path / "cat"), "--model", str(pack_copy), "--quiet"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sha256" in lines[0] and str(onnx) in lines[0], proc.stderr


def test_edit_after_a_cached_hash_is_still_refused(pack_copy):
    load_model(pack_copy, providers=CPU)             # hashes the files once for this process
    onnx = pack_copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 3] ^= 0x01
    with open(onnx, "r+b") as f:                     # same inode, same size
        f.write(bytes(data))
    _refused(pack_copy, str(onnx), "sha256 does not match")


def test_the_hash_of_an_unchanged_file_is_computed_once(pack_copy, monkeypatch):
    calls = []
    real = model_pack.file_sha256
    monkeypatch.setattr(model_pack, "file_sha256", lambda p: calls.append(p) or real(p))
    load_model(pack_copy, providers=CPU)
    load_model(pack_copy, providers=CPU)
    assert calls == [pack_copy / "model.onnx"]


def test_missing_model_file_is_refused(pack_copy):
    (pack_copy / "model.onnx").unlink()
    _refused(pack_copy, "model file not found")


def test_intact_copy_loads_with_the_shipped_id(pack_copy):
    assert load_model(pack_copy).model_id == load_model().model_id == SHIPPED[DEFAULT_PACK]


def test_edited_labels_are_refused(pack_copy):
    labels = pack_copy / "labels.txt"
    lines = labels.read_text().splitlines()
    lines[504] = "HACKED LABEL"
    labels.write_text("\n".join(lines) + "\n")
    _refused(pack_copy, f"{labels}: sha256 does not match the manifest; the pack is damaged or "
                        f"edited — reinstall it")


def test_a_manifest_without_the_labels_hash_is_refused(pack_copy):
    _edit(pack_copy, lambda m: m.pop("files"))
    _refused(pack_copy, str(pack_copy / "model.json"), "no sha256 for 'labels.txt'")


def test_every_file_listed_is_checked(pack_copy):
    (pack_copy / "notes.txt").write_text("calibration notes\n")
    good = model_pack.file_sha256(pack_copy / "notes.txt")
    _edit(pack_copy, lambda m: m["files"].update({"notes.txt": good}))
    load_model(pack_copy, providers=CPU)
    (pack_copy / "notes.txt").write_text("edited\n")
    _refused(pack_copy, str(pack_copy / "notes.txt"), "sha256 does not match")


# ---- file names stay inside the pack


@pytest.mark.parametrize("key", ["file", "labels"])
@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "sub/../../x.txt",
                                  "..\\..\\x.txt", "C:\\Windows\\win.ini"])
def test_file_names_outside_the_pack_are_refused(pack_copy, key, name):
    def change(m):
        if key == "labels":
            m["files"][name] = m["files"].pop("labels.txt")
        m[key] = name
    _edit(pack_copy, change)
    _refused(pack_copy, str(pack_copy / "model.json"), f"field '{key}'", "inside the pack folder")


def test_a_listed_file_outside_the_pack_is_refused(pack_copy):
    _edit(pack_copy, lambda m: m["files"].update({"../../../../etc/passwd": "0" * 64}))
    _refused(pack_copy, "field 'files'", "inside the pack folder")


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="symlinks")
@pytest.mark.parametrize("name", ["labels.txt", "model.onnx"])
def test_a_symlink_out_of_the_pack_is_refused(pack_copy, tmp_path, name):
    outside = tmp_path / "outside" / name            # the very same bytes, so only the link counts
    outside.parent.mkdir()
    shutil.move(pack_copy / name, outside)
    os.symlink(outside, pack_copy / name)
    _refused(pack_copy, str(pack_copy / name), "outside the pack folder")


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="symlinks")
def test_a_symlink_inside_the_pack_is_fine(pack_copy):
    (pack_copy / "data").mkdir()
    shutil.move(pack_copy / "labels.txt", pack_copy / "data" / "labels.txt")
    os.symlink(Path("data") / "labels.txt", pack_copy / "labels.txt")
    assert load_model(pack_copy, providers=CPU).model_id == SHIPPED[DEFAULT_PACK]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_a_fifo_in_place_of_the_labels_is_refused(pack_copy):
    (pack_copy / "labels.txt").unlink()
    os.mkfifo(pack_copy / "labels.txt")              # reading it would block forever
    _refused(pack_copy, str(pack_copy / "labels.txt"), "not a regular file")


# ---- numeric and other fields: sane ranges, one line naming the manifest and the field


def _set(key: str, value):
    def change(m):
        section = m
        *parents, last = key.split(".")
        for part in parents:
            section = section[part]
        section[last] = value
    return change


@pytest.mark.parametrize("key, value", [
    ("input.resize_short_side", 10**9),
    ("input.resize_short_side", 100),                # smaller than input.size
    ("input.resize_short_side", 256.0),
    ("input.size", 0),
    ("input.size", True),
    ("input.std", [float("nan"), 128, 128]),
    ("input.std", [128, 0, 128]),
    ("input.std", [128, -1, 128]),
    ("input.mean", [float("inf"), 127, 127]),
    ("input.mean", [1e9, 127, 127]),
    ("input.mean", [127, 127]),
    ("input.mean", [127, 127, 127, 127]),
    ("input.mean", ["127", 127, 127]),
    ("input.mean", 127),
    ("embedding_dim", 10**9),
    ("embedding_dim", 0),
    ("num_classes", -1),
    ("sha256", "abc"),
    ("name", "../../evil"),
    ("name", "two\nlines"),
    ("input.interpolation", "magic"),
    ("input", [1, 2, 3]),
])
def test_out_of_range_fields_are_refused(pack_copy, key, value):
    _edit(pack_copy, _set(key, value))
    field = "input" if key == "input" else key
    _refused(pack_copy, str(pack_copy / "model.json"), f"'{field}'")


def test_infinity_written_as_a_huge_number_is_refused(pack_copy):
    path = pack_copy / "model.json"
    path.write_text(path.read_text().replace("128.0", "1e999", 1))
    _refused(pack_copy, str(path), "'input.std'")


def test_a_huge_integer_is_refused(pack_copy):
    path = pack_copy / "model.json"
    path.write_text(path.read_text().replace('"size": 224', '"size": ' + "9" * 5000))
    _refused(pack_copy, str(path))


# ---- the manifest file itself


def test_deeply_nested_manifest_is_one_line(pack_copy):
    path = pack_copy / "model.json"
    text = path.read_text()
    path.write_text(text.replace('"source": {', '"deep": ' + "[" * 100_000 + "]" * 100_000
                                 + ', "source": {'))
    _refused(pack_copy, str(path), "nested too deeply")
    path.write_text(text.replace('"source": {', '"deep": ' + "[" * 50 + "]" * 50 + ', "source": {'))
    _refused(pack_copy, str(path), "nested too deeply")


def test_huge_manifest_is_refused_before_parsing(pack_copy):
    path = pack_copy / "model.json"
    _edit(pack_copy, _set("description", "x" * (model_pack.MAX_MANIFEST_BYTES + 10)))
    _refused(pack_copy, str(path), "larger than")


@pytest.mark.parametrize("data, reason", [
    (b'{"name": "\xff\xfe"}', "not UTF-8"),
    (b"\x00\x01binary\x02", "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'{"format": "1"}', "unsupported model manifest format"),
])
def test_unreadable_manifest_is_one_line(pack_copy, data, reason):
    (pack_copy / "model.json").write_bytes(data)
    _refused(pack_copy, str(pack_copy / "model.json"), reason)


# ---- identity: the manifest is part of model_id


def test_shipped_packs_keep_their_ids():
    for name, model_id in SHIPPED.items():
        assert load_model(name, providers=CPU).model_id == model_id


def test_a_preprocessing_change_gives_a_new_identity(pack_copy):
    original = load_model(pack_copy, providers=CPU).model_id
    _edit(pack_copy, _set("input.mean", [127.5, 127.0, 127.0]))
    changed = load_model(pack_copy, providers=CPU).model_id
    assert changed != original and changed.startswith(original + "+")
    _edit(pack_copy, _set("input.resize_short_side", 288))
    assert load_model(pack_copy, providers=CPU).model_id not in (original, changed)


def test_a_labels_change_gives_a_new_identity(pack_copy):
    original = load_model(pack_copy, providers=CPU).model_id
    labels = pack_copy / "labels.txt"
    labels.write_text(labels.read_text().replace("espresso", "espresso coffee"))
    _edit(pack_copy, lambda m: m["files"].update({"labels.txt": model_pack.file_sha256(labels)}))
    assert load_model(pack_copy, providers=CPU).model_id != original


def test_descriptive_fields_and_spelling_keep_the_identity(pack_copy):
    original = load_model(pack_copy, providers=CPU).model_id

    def change(m):
        m["description"] = "my notes"
        m["source"] = {}
        m["input"]["mean"] = [127, 127, 127]         # 127 and 127.0 are the same number
        del m["input"]["crop"]                       # the default
    _edit(pack_copy, change)
    assert load_model(pack_copy, providers=CPU).model_id == original


# ---- through the CLI: rc 2 and one line, never "internal error"


@pytest.fixture
def indexed(tmp_path, pack_copy):
    """A catalog indexed with an intact copy of the default pack, and a query photo."""
    skdata = pytest.importorskip("skimage.data")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee", "chelsea"):
        cv2.imwrite(str(photos / f"{name}.jpg"), getattr(skdata, name)()[:, :, ::-1])
    catalog = tmp_path / "cat"
    assert cli_main(["index", str(photos), "--catalog", str(catalog), "--model", str(pack_copy),
                     "--quiet"]) == 0
    return catalog, photos / "coffee.jpg"


def _search_fails_in_one_line(capsys, catalog, query, pack, *needles):
    capsys.readouterr()
    rc = cli_main(["search", str(query), "--catalog", str(catalog), "--model", str(pack)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, (rc, err)
    assert "internal error" not in err
    for needle in needles:
        assert needle in err, err
    return err


def test_search_with_the_original_pack_works(capsys, indexed, pack_copy):
    catalog, query = indexed
    assert cli_main(["search", str(query), "--catalog", str(catalog), "--model",
                     str(pack_copy)]) == 0
    assert cli_main(["search", str(query), "--catalog", str(catalog)]) == 0


def test_changed_preprocessing_cannot_mix_into_a_catalog(capsys, indexed, pack_copy, tmp_path):
    catalog, query = indexed
    changed = tmp_path / "changed"
    shutil.copytree(pack_copy, changed)
    _edit(changed, _set("input.mean", [0.0, 0.0, 0.0]))   # same name, same weights
    _search_fails_in_one_line(capsys, catalog, query, changed, str(catalog),
                              SHIPPED[DEFAULT_PACK])


@pytest.mark.parametrize("damage", ["labels", "traversal", "std-nan", "resize", "nested"])
def test_cli_refuses_a_damaged_pack_in_one_line(capsys, indexed, pack_copy, damage):
    catalog, query = indexed
    manifest = pack_copy / "model.json"
    if damage == "labels":
        labels = pack_copy / "labels.txt"
        labels.write_text(labels.read_text().replace("coffee mug", "HACKED LABEL"))
        needle = f"{labels}: sha256 does not match"
    elif damage == "traversal":
        _edit(pack_copy, _set("labels", "../../../../etc/passwd"))
        needle = "field 'labels'"
    elif damage == "std-nan":
        _edit(pack_copy, _set("input.std", [float("nan")] * 3))
        needle = "field 'input.std'"
    elif damage == "resize":
        _edit(pack_copy, _set("input.resize_short_side", 10**9))
        needle = "field 'input.resize_short_side'"
    else:
        manifest.write_text("[" * 100_000 + "]" * 100_000)
        needle = "nested too deeply"
    _search_fails_in_one_line(capsys, catalog, query, pack_copy, needle)


def test_the_shipped_manifests_hash_every_file_they_name():
    for name in SHIPPED:
        manifest = json.loads((MODELS_DIR / name / "model.json").read_text())
        assert manifest["sha256"] == model_pack.file_sha256(MODELS_DIR / name / manifest["file"])
        assert manifest["files"] == {
            manifest["labels"]: model_pack.file_sha256(MODELS_DIR / name / manifest["labels"])}
