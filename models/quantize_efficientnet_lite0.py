"""Build the static int8 (QDQ) pack ``models/efficientnet-lite0-int8/`` from the fp32 pack.

Static quantisation with onnxruntime (``quantize_static``, QDQ format, per-channel int8 weights,
uint8 activations), calibrated on real photos preprocessed by exactly the app's code
(``engine.model.Model.preprocess`` of the fp32 pack). Dynamic quantisation is deliberately not used:
on this network it is far slower than fp32 (per-call activation ranges) and changes answers.

Calibration photos: an evenly spaced, sorted subset of the Luma product photos
(``../shared/datasets/luma/images``, studio shots on white) plus scikit-image's bundled natural
photos, so the activation ranges also cover everyday pictures. The result is deterministic for
a given set of photos.

Run from the repository root, after ``models/export_efficientnet_lite0.py``::

    python models/quantize_efficientnet_lite0.py [--images DIR] [--count 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.model import file_sha256, load_model  # noqa: E402

DEFAULT_IMAGES = REPO.parent / "shared" / "datasets" / "luma" / "images"
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "retina", "camera", "clock", "coins", "brick", "gravel"]


def _photo_paths(images_dir: Path) -> list[Path]:
    return sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def calibration_images(images_dir: Path, count: int) -> list[tuple[str, np.ndarray]]:
    paths = _photo_paths(images_dir)
    if not paths:
        raise SystemExit(f"{images_dir}: no photos to calibrate on")
    step = max(1, len(paths) // count)
    chosen = paths[::step][:count]
    out = []
    for p in chosen:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"{p}: cannot decode")
        out.append((p.name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    try:
        from skimage import data as skdata

        for name in SKIMAGE_PHOTOS:
            img = getattr(skdata, name)()
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            out.append((f"skimage:{name}", np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)))
    except ImportError:
        print("scikit-image not installed: calibrating on the product photos only")
    return out


def quantize(fp32_pack: Path, out: Path, images_dir: Path, count: int, *, method: str = "minmax",
             activation: str = "uint8", reduce_range: bool = False) -> dict:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = load_model(fp32_pack, providers=["CPUExecutionProvider"])
    photos = calibration_images(images_dir, count)
    tensors = [model.preprocess(img)[None] for _, img in photos]
    print(f"calibrating on {len(tensors)} photos ({method}, activations {activation})")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(tensors)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {model.input_name: x}

        def rewind(self):
            self._it = iter(tensors)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(model.pack_dir / model.manifest["file"]), str(pre), skip_symbolic_shape=True)
        t = time.perf_counter()
        quantize_static(
            str(pre), str(out / "model.onnx"), Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax,
                              "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            extra_options={"ActivationSymmetric": activation == "int8"},
        )
        print(f"quantize_static took {time.perf_counter() - t:.1f} s")

    n_products = sum(not n.startswith("skimage:") for n, _ in photos)
    step = max(1, len(_photo_paths(images_dir)) // count)
    shutil.copyfile(model.pack_dir / model.manifest["labels"], out / "labels.txt")
    manifest = json.loads(json.dumps(model.manifest))
    manifest.update(
        name=f"{model.name}-int8",
        precision="int8",
        description=f"{model.name} statically quantised to int8 (QDQ, per-channel int8 weights, "
                    f"{activation} activations, {method} calibration)",
        sha256=file_sha256(out / "model.onnx"),
        labels="labels.txt",
        files={"labels.txt": file_sha256(out / "labels.txt")},  # every other file is hashed too
    )
    manifest["source"] = dict(
        model.manifest.get("source", {}),
        quantized_from=f"{model.model_id} by models/quantize_efficientnet_lite0.py",
        calibration=f"{n_products} product photos from {images_dir.name}/ (one in {step} by sorted "
                    f"name) + {len(photos) - n_products} scikit-image photos; {method}, per-channel, "
                    f"reduce_range={reduce_range}",
    )
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", type=Path, default=REPO / "models" / "efficientnet-lite0")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "efficientnet-lite0-int8")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    ap.add_argument("--activation", choices=["uint8", "int8"], default="uint8")
    ap.add_argument("--reduce-range", action="store_true")
    args = ap.parse_args()
    m = quantize(args.fp32, args.out, args.images, args.count, method=args.method,
                 activation=args.activation, reduce_range=args.reduce_range)
    size = (args.out / "model.onnx").stat().st_size / 1e6
    print(f"wrote {args.out / 'model.onnx'} ({size:.1f} MB), sha256 {m['sha256'][:12]}")


if __name__ == "__main__":
    main()
