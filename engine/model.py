"""Model packs: manifest, sha256 check, preprocessing and the onnxruntime session.

A *model pack* is a folder holding ``model.json`` (the manifest), the ONNX file and a labels file.
Everything this module needs to know about a model comes from the manifest, so another ONNX
classifier with a pooled-embedding output can be dropped in without code changes::

    {
      "format": 1,
      "name": "efficientnet-lite0",            # Model.name; Model.model_id, see engine/model_pack
      "version": "1.0",
      "file": "model.onnx",                    # inside the manifest's folder
      "sha256": "…",                           # the model file's, checked before it is used
      "files": {"labels.txt": "…"},            # sha256 of every other file of the pack
      "input": {"name": "input", "size": 224, "resize_short_side": 256,
                "interpolation": "bicubic", "downscale_interpolation": "area",
                "crop": "center",
                "colour_order": "RGB", "layout": "NCHW",
                "mean": [127, 127, 127], "std": [128, 128, 128]},
      "outputs": {"logits": "logits", "embedding": "embedding"},
      "labels": "labels.txt",                  # one class name per line, in index order
      "num_classes": 1000,
      "embedding_dim": 1280
    }

The manifest is validated, every file it names must stay inside the pack and match its sha256,
and the pack's identity (``Model.model_id``) covers the weights, the labels and the preprocessing:
see :mod:`engine.model_pack`.

Preprocessing (``Model.preprocess``): RGB ``uint8`` ``[H, W, 3]`` in; the shorter side is resized
to ``resize_short_side`` (OpenCV; ``downscale_interpolation`` when shrinking, default
``interpolation``; ``interpolation`` when enlarging), the centre ``size``x``size`` square is cut
out, then ``(x - mean) / std`` per channel, as float32 in the manifest's layout. The shipped packs
shrink with ``area`` (an anti-aliased box filter): product photos are often 5x larger than the
input, and without anti-aliasing the embedding depends on how the JPEG was decoded (full or
reduced size) -- see docs/models.md for the measurements.

Thread safety: a :class:`Model` is immutable after :func:`load_model` returns, and
``onnxruntime.InferenceSession.run`` is thread-safe, so one ``Model`` may be shared by any number of
threads (the GUI's workers, the ingest pipeline) without a lock. Concurrent calls share the
session's intra-op thread pool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import ModelError
from .model_pack import (
    check_manifest,
    file_sha256,
    model_id_for,
    pack_file,
    read_labels,
    read_manifest,
    verify_file,
)

__all__ = [
    "DEFAULT_PACK",
    "MANIFEST_NAME",
    "MODELS_DIR",
    "Model",
    "ModelError",
    "available_packs",
    "file_sha256",
    "load_model",
    "resolve_pack",
]

log = logging.getLogger(__name__)

#: Folder holding the packs that ship with Lookalike (``<repo>/models``).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The pack :func:`load_model` uses when none is named: the int8 pack retrieves as well as the fp32
#: one at about half the inference CPU (docs/models.md, docs/benchmarks.md).
DEFAULT_PACK = "efficientnet-lite0-int8"
#: Environment variable naming another default pack (a name under MODELS_DIR, a folder or a manifest).
ENV_MODEL = "LOOKALIKE_MODEL"
#: Environment variable overriding the number of intra-op threads.
ENV_THREADS = "LOOKALIKE_THREADS"
MANIFEST_NAME = "model.json"
DEFAULT_BATCH_SIZE = 32

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "linear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
# Beyond this aspect ratio the far ends of the long side are cut before resizing (they never reach
# the centre crop); keeps a 100000x10 image from becoming a 2.5-gigapixel intermediate.
_MAX_ASPECT = 8.0


# --------------------------------------------------------------------------------------------
# pack discovery


def available_packs(models_dir: str | Path = MODELS_DIR) -> list[str]:
    """Names of the pack folders (those holding a ``model.json``) under ``models_dir``."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST_NAME).is_file())


def resolve_pack(pack: str | Path | None = None) -> Path:
    """The manifest path for ``pack``: a manifest file, a pack folder, or a pack name under
    :data:`MODELS_DIR`. ``None`` means ``$LOOKALIKE_MODEL`` if set, else :data:`DEFAULT_PACK`."""
    if pack is None or (isinstance(pack, str) and not pack.strip()):
        pack = os.environ.get(ENV_MODEL, "").strip() or DEFAULT_PACK
    path = Path(pack).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        manifest = path / MANIFEST_NAME
        if not manifest.is_file():
            raise ModelError(f"{manifest}: model manifest not found")
        return manifest
    # A bare name (no separators) is looked up among the shipped packs.
    if isinstance(pack, str) and len(path.parts) == 1 and not path.suffix:
        manifest = MODELS_DIR / pack / MANIFEST_NAME
        if manifest.is_file():
            return manifest
        names = ", ".join(available_packs()) or "none"
        raise ModelError(f"{MODELS_DIR / pack}: no model pack of that name (available: {names})")
    raise ModelError(f"{path}: model pack not found")


# --------------------------------------------------------------------------------------------
# session


def _threads_per_core() -> int:
    """Hardware threads per physical core (1 when it cannot be read, e.g. not Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 1
    siblings = cores = None
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "siblings" and siblings is None:
            siblings = int(value)
        elif key == "cpu cores" and cores is None:
            cores = int(value)
        if siblings and cores:
            return max(1, siblings // cores)
    return 1


def default_threads() -> int:
    """Intra-op threads: ``$LOOKALIKE_THREADS``, else the physical cores this process may use."""
    env = os.environ.get(ENV_THREADS, "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            log.warning("ignoring %s=%r (not an integer)", ENV_THREADS, env)
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        logical = os.cpu_count() or 1
    return max(1, logical // _threads_per_core())


def _default_providers(ort) -> list[str]:
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


# --------------------------------------------------------------------------------------------
# the model


class Model:
    """A loaded model pack: preprocessing, inference, labels. Build it with :func:`load_model`.

    Thread-safe (see the module docstring): share one instance between threads.
    """

    def __init__(self, manifest_path: Path, manifest: dict, session, labels: list[str],
                 sha256: str, batch_size: int = DEFAULT_BATCH_SIZE, fixed_batch: bool = False,
                 model_id: str | None = None):
        self.manifest_path = manifest_path
        self.manifest = manifest
        self.session = session
        self.labels = labels
        self.sha256 = sha256
        #: Images per onnxruntime call; ``run``/``run_tensor`` accept any number and chunk.
        self.batch_size = batch_size
        self._fixed_batch = fixed_batch  # the graph takes exactly batch_size images per call
        self.name: str = manifest["name"]
        self.version: str = str(manifest.get("version", ""))
        #: Identifies the weights, labels and preprocessing (engine.model_pack.model_id_for):
        #: embeddings from different ids must not be mixed. ``name@sha256[:12]`` when not given.
        self.model_id = model_id or f"{self.name}@{sha256[:12]}"
        inp = manifest["input"]
        self.input_name: str = inp["name"]
        self.input_size: int = int(inp["size"])
        self.resize_short_side: int = int(inp.get("resize_short_side", self.input_size))
        self.interpolation: str = inp.get("interpolation", "bilinear")
        self.downscale_interpolation: str = inp.get("downscale_interpolation", self.interpolation)
        self._cv_interp = _INTERPOLATIONS[self.interpolation]
        self._cv_interp_down = _INTERPOLATIONS[self.downscale_interpolation]
        self.crop: str = inp.get("crop", "center")
        self.colour_order: str = inp.get("colour_order", "RGB")
        self.layout: str = inp.get("layout", "NCHW")
        self._mean = np.asarray(inp.get("mean", [0.0, 0.0, 0.0]), dtype=np.float32).reshape(3)
        self._inv_std = 1.0 / np.asarray(inp.get("std", [1.0, 1.0, 1.0]), dtype=np.float32).reshape(3)
        self.logits_name: str = manifest["outputs"]["logits"]
        self.embedding_name: str = manifest["outputs"]["embedding"]
        self.num_classes = len(labels)
        self.embedding_dim = int(manifest["embedding_dim"])
        providers = session.get_providers()
        #: The execution provider in use, short form: "CUDA", "CPU", ...
        self.provider = providers[0].removesuffix("ExecutionProvider") if providers else "CPU"

    def __repr__(self) -> str:
        return f"<Model {self.model_id} on {self.provider}>"

    @property
    def pack_dir(self) -> Path:
        return self.manifest_path.parent

    # ---- preprocessing

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """One RGB ``uint8`` image ``[H, W, 3]`` (or grey ``[H, W]``) -> float32 ``[3, S, S]``
        (``[S, S, 3]`` for an NHWC model), exactly as the manifest describes."""
        img = np.asarray(rgb)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an RGB image [H, W, 3], got shape {img.shape}")
        if img.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {img.dtype}")
        h, w = img.shape[:2]
        if h < 1 or w < 1:
            raise ValueError(f"empty image of shape {img.shape}")
        if self.colour_order == "BGR":
            img = img[:, :, ::-1]
        short = min(h, w)
        # Cut the far ends of an extreme panorama first: only the middle reaches the crop.
        if max(h, w) > _MAX_ASPECT * short:
            keep = int(_MAX_ASPECT * short)
            if h > w:
                top = (h - keep) // 2
                img = img[top:top + keep]
            else:
                left = (w - keep) // 2
                img = img[:, left:left + keep]
            h, w = img.shape[:2]
        s = self.resize_short_side
        if h <= w:
            nh, nw = s, max(s, int(round(w * s / h)))
        else:
            nh, nw = max(s, int(round(h * s / w))), s
        if (nh, nw) != (h, w):
            interp = self._cv_interp_down if nh * nw < h * w else self._cv_interp
            img = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=interp)
        c = self.input_size
        top = int(round((nh - c) / 2.0))
        left = int(round((nw - c) / 2.0))
        img = img[top:top + c, left:left + c]
        # one float32 buffer in the output layout, normalised in place: 6x cheaper than
        # astype + subtract + multiply + transpose + copy (0.10 vs 0.63 ms at 224x224)
        if self.layout == "NCHW":
            x = np.empty((3, c, c), np.float32)
            x[...] = img.transpose(2, 0, 1)
            x -= self._mean[:, None, None]
            x *= self._inv_std[:, None, None]
        else:
            x = np.empty((c, c, 3), np.float32)
            x[...] = img
            x -= self._mean
            x *= self._inv_std
        return x

    # ---- inference

    def run_tensor(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inference on already preprocessed input ``[N, 3, S, S]`` float32, chunked to
        :attr:`batch_size`. Returns (probabilities ``[N, C]``, L2-normalised embeddings ``[N, D]``)."""
        batch = np.asarray(batch, dtype=np.float32)
        n = batch.shape[0]
        probs = np.empty((n, self.num_classes), dtype=np.float32)
        embs = np.empty((n, self.embedding_dim), dtype=np.float32)
        outputs = [self.logits_name, self.embedding_name]
        for start in range(0, n, self.batch_size):
            chunk = np.ascontiguousarray(batch[start:start + self.batch_size])
            m = chunk.shape[0]
            if self._fixed_batch and m < self.batch_size:
                pad = np.zeros((self.batch_size - m, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            logits, emb = self.session.run(outputs, {self.input_name: chunk})
            probs[start:start + m] = _softmax(logits[:m])
            embs[start:start + m] = _l2_normalise(emb[:m])
        return probs, embs

    def run(self, batch_rgb: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """RGB ``uint8`` images (any number) -> (probabilities ``[N, C]``, embeddings ``[N, D]``).

        Probabilities are the softmax of the logits; embeddings are float32 and L2-normalised,
        so their dot product is the cosine similarity."""
        if len(batch_rgb) == 0:
            return (np.empty((0, self.num_classes), np.float32),
                    np.empty((0, self.embedding_dim), np.float32))
        probs, embs = [], []
        # Preprocess per chunk so a long list never holds every tensor at once.
        for start in range(0, len(batch_rgb), self.batch_size):
            x = np.stack([self.preprocess(im) for im in batch_rgb[start:start + self.batch_size]])
            p, e = self.run_tensor(x)
            probs.append(p)
            embs.append(e)
        return np.concatenate(probs), np.concatenate(embs)

    def embed(self, batch_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings ``[N, D]`` of RGB ``uint8`` images."""
        return self.run(batch_rgb)[1]

    def top_labels(self, probs_row: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(label, probability)`` pairs of one row, best first."""
        row = np.asarray(probs_row).ravel()
        k = max(0, min(int(k), row.shape[0]))
        if k == 0:
            return []
        idx = np.argpartition(-row, k - 1)[:k]
        idx = idx[np.argsort(-row[idx], kind="stable")]
        return [(self.labels[i], float(row[i])) for i in idx]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32, copy=False)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    x /= norms
    return x


# --------------------------------------------------------------------------------------------
# loading


def load_model(pack: str | Path | None = None, *, providers: Sequence[str] | None = None,
               verify: bool = True, batch_size: int = DEFAULT_BATCH_SIZE,
               threads: int | None = None) -> Model:
    """Load a model pack and start its onnxruntime session.

    ``pack``: a pack folder, a ``model.json`` path, or the name of a pack under ``models/``;
    ``None`` means ``$LOOKALIKE_MODEL`` if set, else :data:`DEFAULT_PACK`.
    ``providers``: onnxruntime execution providers; by default CUDA when onnxruntime offers it,
    else CPU. ``verify``: check every file's sha256 against the manifest (an 18 MB ONNX file takes
    tens of milliseconds, once per process). ``threads``: intra-op threads (default :func:`default_threads`).

    Raises :class:`ModelError` (one line naming the file and the reason) when the pack is missing,
    damaged or inconsistent.
    """
    import onnxruntime as ort

    manifest_path = resolve_pack(pack).resolve()
    manifest = read_manifest(manifest_path)
    effective = check_manifest(manifest, manifest_path)
    root = manifest_path.parent
    onnx_path = pack_file(root, manifest_path, "file", manifest["file"])
    labels_path = pack_file(root, manifest_path, "labels", effective["labels"])
    others = {name: pack_file(root, manifest_path, "files", name)
              for name in effective["files"] if name != effective["labels"]}
    verify_file(onnx_path, effective["sha256"] if verify else None, "model file")
    for name, path in others.items():
        verify_file(path, effective["files"][name] if verify else None, "pack file")
    labels = read_labels(labels_path, effective["files"][effective["labels"]] if verify else None)
    if "num_classes" in manifest and manifest["num_classes"] != len(labels):
        raise ModelError(f"{labels_path}: {len(labels)} labels but the manifest "
                         f"says num_classes = {manifest['num_classes']}")

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads if threads else default_threads()
    options.inter_op_num_threads = 1
    # Idle intra-op threads would otherwise spin between operators, taking CPU from the decode
    # threads that run beside inference (ingest cost 28 -> 20 CPU ms/image, docs/benchmarks.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only; a missing CUDA library is not the user's business
    if providers is None:
        providers = _default_providers(ort)
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                       providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(f"{onnx_path}: cannot load model ({_one_line(exc)})") from None

    inputs = {i.name: i for i in session.get_inputs()}
    if manifest["input"]["name"] not in inputs:
        raise ModelError(f"{onnx_path}: the model has no input named "
                         f"{manifest['input']['name']!r} (it has {', '.join(inputs)})")
    in_shape = inputs[manifest["input"]["name"]].shape
    size = manifest["input"]["size"]
    if len(in_shape) != 4:
        raise ModelError(f"{onnx_path}: input has shape {in_shape}, expected 4 dimensions")
    spatial = in_shape[2:] if manifest["input"].get("layout", "NCHW") == "NCHW" else in_shape[1:3]
    if any(isinstance(d, int) and d != size for d in spatial):
        raise ModelError(f"{onnx_path}: input is {in_shape} but the manifest says size {size}")
    fixed_batch = isinstance(in_shape[0], int) and in_shape[0] > 0
    if fixed_batch:
        batch_size = in_shape[0]  # a fixed-batch export takes exactly that many images per call
    outputs = {o.name: o for o in session.get_outputs()}
    for role in ("logits", "embedding"):
        name = manifest["outputs"][role]
        if name not in outputs:
            raise ModelError(f"{onnx_path}: the model has no {role} output named {name!r} "
                             f"(it has {', '.join(outputs)})")
    for role, want in (("logits", len(labels)), ("embedding", manifest["embedding_dim"])):
        shape = outputs[manifest["outputs"][role]].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != want):
            raise ModelError(f"{onnx_path}: {role} output has shape {shape}, expected [N, {want}]")
    # With verify=False the manifest's hashes stand in for the files' (the caller vouches for them).
    model = Model(manifest_path, manifest, session, labels, effective["sha256"],
                  batch_size=max(1, int(batch_size)), fixed_batch=fixed_batch,
                  model_id=model_id_for(effective))
    log.info("loaded %s from %s on %s", model.model_id, onnx_path, model.provider)
    return model
