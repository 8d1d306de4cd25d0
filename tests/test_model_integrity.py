"""A model file that is missing or damaged is refused with one clear line (sha256 against the
manifest), from the API and from the CLI, before it is used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ModelError
from engine.model import DEFAULT_PACK, load_model
from engine.paths import models_dir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pack_copy(tmp_path):
    src = models_dir() / DEFAULT_PACK                # the pack load_model() uses by default
    dst = tmp_path / "pack"
    shutil.copytree(src, dst)
    return dst


def test_damaged_model_file_is_refused(pack_copy, tmp_path):
    onnx = pack_copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01                     # one bit flipped in the middle of the weights
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="damaged or was replaced") as exc:
        load_model(pack_copy)
    assert str(onnx) in str(exc.value) and "\n" not in str(exc.value)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOOKALIKE_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "cli", "index", str(tmp_path), "--catalog",
                           str(tmp_path / "cat"), "--model", str(pack_copy), "--quiet"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sha256" in lines[0] and str(onnx) in lines[0], proc.stderr


def test_missing_model_file_is_refused(pack_copy):
    (pack_copy / "model.onnx").unlink()
    with pytest.raises(ModelError, match="model file not found"):
        load_model(pack_copy)


def test_intact_copy_loads(pack_copy):
    assert load_model(pack_copy).model_id == load_model().model_id
