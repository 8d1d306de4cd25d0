"""Model packs: manifest, sha256 check, preprocessing and the onnxruntime session.

A *model pack* is a folder holding ``model.json`` (the manifest), the ONNX file and a labels file.
Everything this module needs to know about a model comes from the manifest, so another ONNX
classifier with a pooled-embedding output can be dropped in without code changes::

    {
      "format": 1,
      "name": "efficientnet-lite0",            # Model.name; Model.model_id = name@sha256[:12]
      "version": "1.0",
      "file": "model.onnx",                    # relative to the manifest's folder
      "sha256": "…",                           # checked before the file is used
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

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import ModelError

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


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# manifest


def _require(manifest: dict, key: str, path: Path, kind: type | tuple[type, ...]) -> Any:
    section = manifest
    for part in key.split("."):
        if not isinstance(section, dict) or part not in section:
            raise ModelError(f"{path}: model manifest lacks '{key}'")
        section = section[part]
    if not isinstance(section, kind) or (isinstance(section, bool) and kind is not bool):
        raise ModelError(f"{path}: model manifest field '{key}' has the wrong type")
    return section


def _read_manifest(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: model manifest is not UTF-8 text") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{path}: model manifest is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path}: model manifest is not a JSON object")
    fmt = manifest.get("format", 1)
    if fmt != 1:
        raise ModelError(f"{path}: unsupported model manifest format {fmt!r} (expected 1)")
    return manifest


def _read_labels(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ModelError(f"{path}: labels file not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read labels file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: labels file is not UTF-8 text") from None
    # A trailing empty line is tolerated; empty lines inside would shift every index after them.
    while lines and not lines[-1].strip():
        lines.pop()
    labels = [line.strip() for line in lines]
    if not labels or any(not label for label in labels):
        raise ModelError(f"{path}: labels file has empty lines")
    return labels


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
                 sha256: str, batch_size: int = DEFAULT_BATCH_SIZE, fixed_batch: bool = False):
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
        #: Identifies model *and* weights: embeddings from different ids must not be mixed.
        self.model_id = f"{self.name}@{sha256[:12]}"
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


def _check_manifest(manifest: dict, path: Path) -> None:
    _require(manifest, "name", path, str)
    _require(manifest, "file", path, str)
    _require(manifest, "sha256", path, str)
    _require(manifest, "input.name", path, str)
    size = _require(manifest, "input.size", path, int)
    short = manifest["input"].get("resize_short_side", size)
    if not isinstance(size, int) or size < 1 or not isinstance(short, int) or short < size:
        raise ModelError(f"{path}: model manifest needs 1 <= input.size <= input.resize_short_side")
    for key in ("interpolation", "downscale_interpolation"):
        interp = manifest["input"].get(key, "bilinear")
        if interp not in _INTERPOLATIONS:
            raise ModelError(f"{path}: unknown input.{key} {interp!r} in model manifest "
                             f"(one of {', '.join(sorted(_INTERPOLATIONS))})")
    if manifest["input"].get("crop", "center") not in ("center", "centre"):
        raise ModelError(f"{path}: only crop 'center' is supported")
    if manifest["input"].get("colour_order", "RGB") not in ("RGB", "BGR"):
        raise ModelError(f"{path}: colour_order must be 'RGB' or 'BGR'")
    if manifest["input"].get("layout", "NCHW") not in ("NCHW", "NHWC"):
        raise ModelError(f"{path}: layout must be 'NCHW' or 'NHWC'")
    for key in ("mean", "std"):
        value = manifest["input"].get(key, [0, 0, 0] if key == "mean" else [1, 1, 1])
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or key == "std" and any(v == 0 for v in value)):
            raise ModelError(f"{path}: input.{key} must be three numbers"
                             + (" (non-zero)" if key == "std" else ""))
    _require(manifest, "outputs.logits", path, str)
    _require(manifest, "outputs.embedding", path, str)
    _require(manifest, "labels", path, str)
    dim = _require(manifest, "embedding_dim", path, int)
    if dim < 1:
        raise ModelError(f"{path}: embedding_dim must be positive")


def load_model(pack: str | Path | None = None, *, providers: Sequence[str] | None = None,
               verify: bool = True, batch_size: int = DEFAULT_BATCH_SIZE,
               threads: int | None = None) -> Model:
    """Load a model pack and start its onnxruntime session.

    ``pack``: a pack folder, a ``model.json`` path, or the name of a pack under ``models/``;
    ``None`` means ``$LOOKALIKE_MODEL`` if set, else :data:`DEFAULT_PACK`.
    ``providers``: onnxruntime execution providers; by default CUDA when onnxruntime offers it,
    else CPU. ``verify``: check the ONNX file's sha256 against the manifest (an 18 MB file takes
    tens of milliseconds). ``threads``: intra-op threads (default :func:`default_threads`).

    Raises :class:`ModelError` (one line naming the file and the reason) when the pack is missing,
    damaged or inconsistent.
    """
    import onnxruntime as ort

    manifest_path = resolve_pack(pack).resolve()
    manifest = _read_manifest(manifest_path)
    _check_manifest(manifest, manifest_path)
    root = manifest_path.parent
    onnx_path = root / manifest["file"]
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: model file not found")
    expected = manifest["sha256"].strip().lower()
    if verify:
        try:
            actual = file_sha256(onnx_path)
        except OSError as exc:
            raise ModelError(f"{onnx_path}: cannot read model file ({exc.strerror or exc})") from None
        if actual != expected:
            raise ModelError(
                f"{onnx_path}: model file is damaged or was replaced "
                f"(sha256 {actual[:12]}… does not match the manifest's {expected[:12]}…)"
            )
    labels = _read_labels(root / manifest["labels"])
    if "num_classes" in manifest and manifest["num_classes"] != len(labels):
        raise ModelError(f"{root / manifest['labels']}: {len(labels)} labels but the manifest "
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
    # With verify=False the manifest's hash stands in for the file's (the caller vouches for it).
    model = Model(manifest_path, manifest, session, labels, expected,
                  batch_size=max(1, int(batch_size)), fixed_batch=fixed_batch)
    log.info("loaded %s from %s on %s", model.model_id, onnx_path, model.provider)
    return model
