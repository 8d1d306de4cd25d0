"""A model pack's manifest: reading, validation, file containment, hashes and identity.

Every check here ends in a :class:`ModelError` of one line naming the manifest (or the file) and
the field, so a damaged, edited or hostile pack is refused before anything is computed with it:

* the manifest is read only up to :data:`MAX_MANIFEST_BYTES`, must be UTF-8 JSON, an object, and
  nested at most :data:`MAX_DEPTH` deep (a 100k-deep list is refused, not a RecursionError);
* every field the engine uses has a type and a sane range (:func:`check_manifest`); NaN,
  Infinity and absurd sizes are refused with the field's name;
* every file the manifest names (``file``, ``labels``, the keys of ``files``) is a relative path
  that stays inside the pack folder, symlinks resolved, and is a regular file;
* every file is hashed: ``sha256`` is the model file's, ``files`` maps each other file (at least
  the labels) to its sha256, and :func:`verify_file` checks them (cached per process by inode,
  size and times, so loading one pack repeatedly hashes it once);
* :func:`pack_identity` digests everything that decides what the pack computes (weights, labels,
  preprocessing, outputs) into the pack's identity, from which ``Model.model_id`` is made
  (:func:`model_id_for`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import threading
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import ModelError

#: A manifest is a few KB; anything past this is not one (refused before parsing).
MAX_MANIFEST_BYTES = 1 << 20
#: Nesting depth of the manifest's JSON (the shipped ones are 3 deep).
MAX_DEPTH = 16
#: Largest labels file read (1000 ImageNet names are 10 KB).
MAX_LABELS_BYTES = 16 << 20
#: Largest image side a manifest may ask for (input.size, input.resize_short_side).
MAX_SIDE = 4096
MAX_EMBEDDING_DIM = 65536
MAX_CLASSES = 100_000
MAX_FILES = 64
#: Per-channel normalisation on 0..255 values: |mean| and std within these bounds.
MAX_MEAN = 10_000.0
STD_RANGE = (1e-3, 10_000.0)

INTERPOLATIONS = ("nearest", "bilinear", "linear", "bicubic", "cubic", "area", "lanczos")
# Stored in catalogs (meta.model_pack, the prefix of model_id) and looked up again as a pack name.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_SHA_RE = re.compile(r"[0-9a-fA-F]{64}")

#: Identities of the shipped packs exactly as published -> their model id from before the id
#: covered the manifest (``name@sha256[:12]``), so catalogs built with them keep working. Any
#: change to one of these packs (weights, labels, preprocessing) gives another identity and so the
#: new id form ``name@sha256[:12]+identity[:12]``. Regenerate with ``python -m engine.model_pack``.
STABLE_IDS = {
    "fd95981c87e6ec154fcca9232f16028d7af497ec1ce26eb5adedc5e0b478e0a2": "efficientnet-lite0@4f56c79632d7",
    "809c84b70ebd35b9dcc287802434b025d743fd1b1d1f31aba4db7b2383871198": "efficientnet-lite0-int8@2a19072035c1",
}


# --------------------------------------------------------------------------------------------
# reading


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def read_manifest(path: Path) -> dict:
    """The manifest at ``path`` as a dict, or ModelError for an unreadable, oversized, non-UTF-8,
    non-JSON, too deeply nested or non-object file, or an unsupported ``format``."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model manifest ({exc.strerror or exc})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ModelError(f"{path}: model manifest is larger than {MAX_MANIFEST_BYTES >> 20} MiB; "
                         f"this is not a model pack's manifest")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: model manifest is not UTF-8 text") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{path}: model manifest is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise ModelError(f"{path}: model manifest is nested too deeply (at most {MAX_DEPTH} "
                         f"levels)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ModelError(f"{path}: model manifest is not valid JSON ({_clip(str(exc))})") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{path}: model manifest is not a JSON object")
    if _depth_exceeds(manifest, MAX_DEPTH):
        raise ModelError(f"{path}: model manifest is nested too deeply (at most {MAX_DEPTH} "
                         f"levels)")
    fmt = manifest.get("format", 1)
    if type(fmt) is not int or fmt != 1:
        raise ModelError(f"{path}: unsupported model manifest format {_show(fmt)} (expected 1)")
    return manifest


# --------------------------------------------------------------------------------------------
# validation


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


def _show(value: Any) -> str:
    return _clip(repr(value))


def _bad(path: Path, key: str, want: str, value: Any) -> ModelError:
    return ModelError(f"{path}: model manifest field '{key}' must be {want} (got {_show(value)})")


_MISSING = object()


def _get(manifest: dict, key: str, path: Path, default: Any = _MISSING) -> Any:
    section: Any = manifest
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(section, dict):
            raise _bad(path, ".".join(parts[:i]), "an object", section)
        if part not in section:
            if default is _MISSING:
                raise ModelError(f"{path}: model manifest lacks '{key}'")
            return default
        section = section[part]
    return section


def _int(manifest: dict, key: str, path: Path, lo: int, hi: int, default: Any = _MISSING) -> int:
    value = _get(manifest, key, path, default)
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(path, key, f"an integer from {lo} to {hi}", value)
    return value


def _text(manifest: dict, key: str, path: Path, default: Any = _MISSING,
          choices: tuple[str, ...] | None = None) -> str:
    value = _get(manifest, key, path, default)
    if choices is not None:
        if value not in choices:
            raise _bad(path, key, "one of " + ", ".join(choices), value)
    elif (not isinstance(value, str) or not value or len(value) > 256
          or not value.isprintable()):
        raise _bad(path, key, "a non-empty printable string of at most 256 characters", value)
    return value


def _finite(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _triple(manifest: dict, key: str, path: Path, lo: float, hi: float,
            default: list[float]) -> list[float]:
    value = _get(manifest, key, path, default)
    if (not isinstance(value, list) or len(value) != 3
            or not all(_finite(v) and lo <= v <= hi for v in value)):
        raise _bad(path, key, f"three finite numbers from {lo:g} to {hi:g}", value)
    return [float(v) for v in value]


def _sha(manifest: dict, key: str, path: Path) -> str:
    value = _get(manifest, key, path)
    if not isinstance(value, str) or not _SHA_RE.fullmatch(value.strip()):
        raise _bad(path, key, "a sha256 (64 hex digits)", value)
    return value.strip().lower()


def check_manifest(manifest: dict, path: Path) -> dict:
    """Validate every field the engine uses; return the *effective* configuration: the
    normalised values with defaults filled in, from which :func:`pack_identity` is made."""
    name = _get(manifest, "name", path)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise _bad(path, "name", "1 to 100 letters, digits, '.', '_', '+' or '-'", name)
    _check_inside(path, "file", _text(manifest, "file", path))
    model_sha = _sha(manifest, "sha256", path)
    labels = _text(manifest, "labels", path)
    _check_inside(path, "labels", labels)
    files = _get(manifest, "files", path, {})
    if not isinstance(files, dict) or len(files) > MAX_FILES:
        raise _bad(path, "files", f"an object of at most {MAX_FILES} file names and sha256s", files)
    hashes = {}
    for file_name, digest in files.items():
        if not file_name or len(file_name) > 256 or not file_name.isprintable():
            raise _bad(path, "files", "an object of file names and sha256s", file_name)
        _check_inside(path, "files", file_name)
        if not isinstance(digest, str) or not _SHA_RE.fullmatch(digest.strip()):
            raise _bad(path, f"files.{file_name}", "a sha256 (64 hex digits)", digest)
        hashes[file_name] = digest.strip().lower()
    if labels not in hashes:
        raise ModelError(f"{path}: model manifest lists no sha256 for '{labels}' (every file of "
                         f"a pack is hashed: add it to 'files', or reinstall the pack)")

    _get(manifest, "input", path)
    size = _int(manifest, "input.size", path, 1, MAX_SIDE)
    short = _int(manifest, "input.resize_short_side", path, size, MAX_SIDE, default=size)
    interp = _text(manifest, "input.interpolation", path, "bilinear", INTERPOLATIONS)
    down = _text(manifest, "input.downscale_interpolation", path, interp, INTERPOLATIONS)
    crop = _text(manifest, "input.crop", path, "center", ("center", "centre"))
    effective_input = {
        "name": _text(manifest, "input.name", path),
        "size": size,
        "resize_short_side": short,
        "interpolation": interp,
        "downscale_interpolation": down,
        "crop": "center" if crop == "centre" else crop,
        "colour_order": _text(manifest, "input.colour_order", path, "RGB", ("RGB", "BGR")),
        "layout": _text(manifest, "input.layout", path, "NCHW", ("NCHW", "NHWC")),
        "mean": _triple(manifest, "input.mean", path, -MAX_MEAN, MAX_MEAN, [0.0, 0.0, 0.0]),
        "std": _triple(manifest, "input.std", path, *STD_RANGE, [1.0, 1.0, 1.0]),
    }
    outputs = {role: _text(manifest, f"outputs.{role}", path) for role in ("logits", "embedding")}
    dim = _int(manifest, "embedding_dim", path, 1, MAX_EMBEDDING_DIM)
    if "num_classes" in manifest:
        _int(manifest, "num_classes", path, 1, MAX_CLASSES)
    return {"name": name, "sha256": model_sha, "labels": labels, "files": hashes,
            "input": effective_input, "outputs": outputs, "embedding_dim": dim}


# --------------------------------------------------------------------------------------------
# files


def _check_inside(manifest_path: Path, key: str, name: str) -> None:
    """Refuse a file name that is absolute or climbs out of its folder (POSIX or Windows)."""
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (posix.is_absolute() or windows.is_absolute() or windows.drive or "\0" in name
            or ".." in posix.parts or ".." in windows.parts):
        raise ModelError(f"{manifest_path}: model manifest field '{key}' must name a file inside "
                         f"the pack folder (got {_show(name)}); the pack is damaged or hostile")


def pack_file(root: Path, manifest_path: Path, key: str, name: str) -> Path:
    """The file ``name`` (manifest field ``key``) of the pack in ``root`` (a resolved folder):
    refused unless it is a relative path that stays inside ``root`` with links resolved."""
    _check_inside(manifest_path, key, name)
    target = root / name
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise ModelError(f"{target}: cannot resolve the file named by the model manifest's "
                         f"'{key}' (a link loop?); reinstall the pack") from None
    if not resolved.is_relative_to(root):
        raise ModelError(f"{target}: links to {resolved}, outside the pack folder {root}; "
                         f"the pack is damaged or hostile — reinstall it")
    return resolved


def _regular_stat(path: Path, what: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{path}: {what} is not a regular file")
    return st


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_hash_cache: dict[tuple, str] = {}
_hash_lock = threading.Lock()


def cached_sha256(path: Path, st: os.stat_result) -> str:
    """:func:`file_sha256`, remembered for this process while the file's inode, size, mtime and
    ctime stay the same (any write changes ctime, which no tool can set back)."""
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _hash_lock:
        digest = _hash_cache.get(key)
    if digest is None:
        digest = file_sha256(path)
        with _hash_lock:
            _hash_cache[key] = digest
    return digest


def verify_file(path: Path, expected: str | None, what: str) -> None:
    """Refuse ``path`` unless it is a regular file whose sha256 is ``expected`` (not hashed when
    ``expected`` is None)."""
    st = _regular_stat(path, what)
    if expected is None:
        return
    try:
        actual = cached_sha256(path, st)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if actual != expected:
        raise ModelError(f"{path}: sha256 does not match the manifest; the pack is damaged or "
                         f"edited — reinstall it")


def read_labels(path: Path, expected: str | None) -> list[str]:
    """The class names in ``path``, one a line; with ``expected``, its sha256 is checked first
    (on the very bytes that are then parsed)."""
    st = _regular_stat(path, "labels file")
    if st.st_size > MAX_LABELS_BYTES:
        raise ModelError(f"{path}: labels file is larger than {MAX_LABELS_BYTES >> 20} MiB")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read labels file ({exc.strerror or exc})") from None
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ModelError(f"{path}: sha256 does not match the manifest; the pack is damaged or "
                         f"edited — reinstall it")
    try:
        lines = data.decode("utf-8").splitlines()
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
# identity


def pack_identity(effective: dict) -> str:
    """Hex sha256 of the canonical JSON of the effective configuration (:func:`check_manifest`):
    the weights' and every other file's sha256, the preprocessing, the outputs. Descriptive
    fields (description, licence, source, version) and the spelling of the manifest (key order,
    ``127`` vs ``127.0``, omitted defaults) do not change it."""
    canonical = json.dumps(effective, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def model_id_for(effective: dict) -> str:
    """``name@sha256[:12]`` for a shipped pack as published (:data:`STABLE_IDS`), else
    ``name@sha256[:12]+identity[:12]``: embeddings of two packs with the same weights but another
    preprocessing never share an id."""
    identity = pack_identity(effective)
    stable = STABLE_IDS.get(identity)
    if stable is not None:
        return stable
    return f"{effective['name']}@{effective['sha256'][:12]}+{identity[:12]}"


if __name__ == "__main__":  # print the identity of each shipped pack (for STABLE_IDS)
    from .model import MODELS_DIR, available_packs

    for pack_name in available_packs():
        manifest_path = MODELS_DIR / pack_name / "model.json"
        eff = check_manifest(read_manifest(manifest_path), manifest_path)
        print(f'    "{pack_identity(eff)}": "{eff["name"]}@{eff["sha256"][:12]}",')
