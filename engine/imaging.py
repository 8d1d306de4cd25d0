"""Decode any common image file to an RGB ``uint8`` array, or fail with one clear reason.

Everything that reads image pixels in Lookalike goes through this module:

* the real format is sniffed from the file's first bytes, never from its extension;
* width and height are read from the header (Pillow opens lazily) and the image is refused
  *before* any pixel is decoded when it is above the pixel limit (decompression bombs);
* JPEGs are decoded by OpenCV (libjpeg-turbo), at 1/2, 1/4 or 1/8 scale in the DCT domain when
  the caller only needs a short side of ``min_short_side`` pixels (1/4 scale took 1.4-1.6x less CPU
  than a full decode on the Luma product photos, see ``docs/image-inputs.md``);
* PNG, WebP, BMP, AVIF, JPEG 2000 and PNM are decoded by OpenCV with ``IMREAD_UNCHANGED`` so that
  alpha and 16-bit samples survive; GIF, TIFF, ICO and PSD by Pillow;
* the result is always HxWx3 ``uint8`` RGB, C-contiguous: grey is expanded, 16-bit is scaled
  (``round(v / 257)``), alpha and palette transparency are composited on white, CMYK is
  converted, only the first frame/page of an animation or multi-page file is used, and the
  EXIF orientation is applied (from Pillow's header read, the same way for every format);
* every failure raises :class:`engine.errors.ImageError` with a short reason; no OpenCV or
  Pillow exception escapes, whatever the file holds.

See ``docs/image-inputs.md`` for the table of inputs and outcomes.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import zlib
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, PngImagePlugin, features

from engine.errors import ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "UNSUPPORTED_IMAGE_EXTENSIONS",
    "decode_image_bytes",
    "image_size",
    "is_image_path",
    "load_image",
    "max_file_bytes",
    "reduced_factor",
]

log = logging.getLogger(__name__)

#: Images with more pixels than this (width x height, from the header) are refused unread.
#: The caller can pass ``max_pixels=``; the environment variable ``LOOKALIKE_MAX_PIXELS``
#: changes the default.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "LOOKALIKE_MAX_PIXELS"

_AVIF_DECODABLE = features.check("avif")

# OpenCV logs "[ERROR] imdecode_(...): can't read data" and PNG warnings to stderr for every
# damaged file; each failure is reported as an ImageError instead, so keep OpenCV's own log to
# fatal errors unless the user asked for more with OPENCV_LOG_LEVEL. (libjpeg's and libpng's
# own "Corrupt JPEG data" / "libpng error" lines bypass this log and still appear.)
if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)

#: Memory glibc keeps at the top of the heap instead of handing it back to the system (its
#: M_TOP_PAD). A progressive JPEG decode allocates the DCT coefficients of the whole image (~12 MB
#: for a 1300x1600 photo, at any reduced scale) and frees them at the end; with glibc's default
#: the heap shrank after every decode and the next one page-faulted those megabytes in again:
#: 12-18 ms per Luma photo, 7-8 ms with the pad (docs/benchmarks.md).
HEAP_TOP_PAD = 64 << 20


def keep_heap_for_decoding() -> bool:
    """Ask glibc's allocator to keep HEAP_TOP_PAD bytes at the top of the heap (``mallopt``).
    True when it did; False on other C libraries and systems, where nothing changes. Called once
    when this module is imported: it concerns the whole process, which decodes images all the
    time (search, import, thumbnails)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):       # no glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(-2, HEAP_TOP_PAD) == 1   # -2: M_TOP_PAD in glibc's malloc.h


keep_heap_for_decoding()

#: Extensions of files this module decodes (lower case, with the dot). Used to pick image files
#: out of folders; the decoder itself trusts the file's content, not its name.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".webp",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".jp2",
        ".j2k",
        ".jpx",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
    }
    | ({".avif"} if _AVIF_DECODABLE else set())
)

#: Image formats people commonly have but this module cannot decode: callers that walk folders
#: may report these files ("unsupported format HEIC") instead of skipping them silently.
UNSUPPORTED_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".heic", ".heif", ".hif", ".svg", ".svgz", ".jxl", ".exr"}
    | (set() if _AVIF_DECODABLE else {".avif"})
)

# Bytes read before deciding whether a file is an image at all (SVG/HTML sniffing needs a few
# hundred; everything else a dozen).
_SNIFF_BYTES = 4096

# Largest file accepted, as bytes per allowed pixel: an uncompressed 16-bit RGBA TIFF at the
# pixel limit needs 8 bytes a pixel; the constant covers headers, thumbnails and metadata.
_FILE_BYTES_PER_PIXEL = 8
_FILE_BYTES_SLACK = 64 * 1024 * 1024

# EXIF orientation tag.
_ORIENTATION = 0x0112

# Sniffed format (also its name in messages) -> (Pillow format name, decoders to try in order).
# OpenCV first where it is fastest and complete; Pillow as the fallback (and for GIF, ICO, PSD,
# QOI; and first for TIFF, where it handles unassociated alpha, CMYK and palettes, which
# OpenCV's libtiff RGBA path premultiplies or drops). PNG has no fallback: libpng checks every
# chunk CRC and refuses truncated data, Pillow ignores IDAT CRCs, so libpng's verdict is final.
_CV2 = "OpenCV"
_PIL = "Pillow"
_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "JPEG": ("JPEG", (_CV2, _PIL)),
    "PNG": ("PNG", (_CV2,)),
    "WebP": ("WEBP", (_CV2, _PIL)),
    "BMP": ("BMP", (_CV2, _PIL)),
    "AVIF": ("AVIF", (_CV2, _PIL)),
    "JPEG 2000": ("JPEG2000", (_CV2, _PIL)),
    "PNM": ("PPM", (_CV2, _PIL)),
    "GIF": ("GIF", (_PIL,)),
    "TIFF": ("TIFF", (_PIL, _CV2)),
    "ICO": ("ICO", (_PIL,)),
    "PSD": ("PSD", (_PIL,)),
    "QOI": ("QOI", (_PIL,)),
}
# Formats whose decoders apply the orientation themselves: both Pillow and OpenCV (libtiff) honour
# the TIFF Orientation tag, and Pillow's TIFF plugin even reports the rotated size. Elsewhere the
# decoders leave it alone (JPEG: IMREAD_IGNORE_ORIENTATION; IMREAD_UNCHANGED and Pillow's other
# plugins never apply it) and this module applies it once, from Pillow's header read.
_SELF_ORIENTING = frozenset({"TIFF"})

_HEIF_BRANDS = frozenset(
    {
        b"heic",
        b"heix",
        b"hevc",
        b"hevx",
        b"heim",
        b"heis",
        b"hevm",
        b"hevs",
        b"mif1",
        b"msf1",
        b"mif2",
        b"mif3",
    }
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


class _Undecodable(Exception):
    """Internal: this decoder could not produce pixels (try the other one, or give up)."""


# --------------------------------------------------------------------------------------------
# Small public helpers


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name has an image extension this module decodes (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def reduced_factor(width: int, height: int, min_short_side: int | None) -> int:
    """Largest JPEG DCT scale-down factor (1, 2, 4 or 8) keeping the short side >= min_short_side.

    libjpeg rounds scaled dimensions up (``ceil(n / factor)``), and so does this.
    Returns 1 (full size) when ``min_short_side`` is None or not positive.
    """
    if not min_short_side or min_short_side <= 0:
        return 1
    short = min(int(width), int(height))
    for factor in (8, 4, 2):
        if -(-short // factor) >= min_short_side:
            return factor
    return 1


def _resolve_max_pixels(max_pixels: int | None) -> int:
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        try:
            value = int(raw.replace("_", "")) if raw else DEFAULT_MAX_PIXELS
        except ValueError:
            value = 0
        if value <= 0:
            log.warning("ignoring %s=%r (not a positive integer)", MAX_PIXELS_ENV, raw)
            value = DEFAULT_MAX_PIXELS
    else:
        value = int(max_pixels)
        if value <= 0:
            raise ValueError(f"max_pixels must be positive, not {value}")
    _sync_pil_limit(value)
    return value


def _sync_pil_limit(max_pixels: int) -> None:
    """Make sure Pillow's own bomb check never refuses what this module's limit allows.

    Only ever raises ``PIL.Image.MAX_IMAGE_PIXELS`` (to the caller's explicit, larger limit);
    images above it are refused here, from the header, before Pillow decodes anything.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def max_file_bytes(max_pixels: int | None = None) -> int:
    """Largest file size accepted as an image within the pixel limit (see :func:`load_image`)."""
    return _resolve_max_pixels(max_pixels) * _FILE_BYTES_PER_PIXEL + _FILE_BYTES_SLACK


def _check_min_short_side(min_short_side: int | None) -> int | None:
    if min_short_side is None:
        return None
    min_short_side = int(min_short_side)
    if min_short_side <= 0:
        raise ValueError(f"min_short_side must be positive, not {min_short_side}")
    return min_short_side


# --------------------------------------------------------------------------------------------
# Sniffing


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the end of the sample
            try:
                text = head.decode("latin-1")
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
                return False
        else:
            text = head[: err.start].decode("utf-8")
    if not text:
        return False
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return printable / len(text) > 0.95


def _sniff(head: bytes) -> tuple[str, str]:
    """Classify a file from its first bytes.

    Returns ``(kind, name)``: kind is ``"image"`` (name is a key of ``_FORMATS``),
    ``"unsupported"`` (an image format this module cannot decode), ``"other"`` (not an image;
    name says what it looks like) or ``"unknown"``.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "image", "TIFF"
    if head[:2] == b"BM" and len(head) >= 26:
        return "image", "BMP"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "image", "JPEG 2000"
    if head[:4] == b"\x00\x00\x01\x00" and len(head) > 6 and head[4] | head[5]:
        return "image", "ICO"
    if head[:4] == b"8BPS":
        return "image", "PSD"
    if head[:4] == b"qoif":
        return "image", "QOI"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "image", "PNM"
    if head[4:8] == b"ftyp":
        return _sniff_isobmff(head)
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "unsupported", "JPEG XL"
    if head[:4] == b"\x76\x2f\x31\x01":
        return "unsupported", "OpenEXR"

    for magic, what in _NON_IMAGE_MAGIC:
        if head.startswith(magic):
            return "other", what
    if head[:4] == b"RIFF":
        kind = head[8:12]
        if kind == b"AVI ":
            return "other", "a video file"
        if kind == b"WAVE":
            return "other", "an audio file"
    if _looks_like_text(head):
        text = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n").lower()
        if text.startswith("<") and "<svg" in text:
            return "unsupported", "SVG"
        if text.startswith("%!ps"):
            return "unsupported", "PostScript/EPS"
        if text.startswith(("<!doctype html", "<html", "<head", "<body", "<!--")):
            return "other", "an HTML page"
        if text.startswith("<?xml"):
            return "other", "an XML document"
        return "other", "a text file"
    return "unknown", ""


_NON_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an XZ archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"\x1a\x45\xdf\xa3", "a video file"),
    (b"ID3", "an audio file"),
    (b"OggS", "an audio or video file"),
    (b"fLaC", "an audio file"),
)


def _sniff_isobmff(head: bytes) -> tuple[str, str]:
    """ISO base media files (``ftyp`` box): AVIF, HEIC/HEIF, or video."""
    (box_size,) = struct.unpack(">I", head[:4])
    brands = {head[8:12]}
    end = min(max(box_size, 16), len(head))
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    if brands & _AVIF_BRANDS:
        return ("image", "AVIF") if _AVIF_DECODABLE else ("unsupported", "AVIF")
    if brands & _HEIF_BRANDS:
        return "unsupported", "HEIC"
    if b"crx " in brands:
        return "unsupported", "Canon CR3 raw"
    return "other", "a video file"


# --------------------------------------------------------------------------------------------
# Header (Pillow, lazy: no pixels are decoded)


def _pil_open(fp: BinaryIO, pil_format: str) -> Image.Image:
    """Open lazily with Pillow, restricted to the sniffed format.

    Pillow refuses images above ``2 * Image.MAX_IMAGE_PIXELS`` (and warns above it) in
    ``Image.open``; this module applies its own limit from the header right after, so when
    Pillow's check fires the plugin is instantiated directly (the same thing ``Image.open``
    does, minus the check) to learn the size and report it.
    """
    try:
        return Image.open(fp, formats=[pil_format])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        Image.init()
        factory, _accept = Image.OPEN[pil_format]
        fp.seek(0)
        return factory(fp, "")


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) from the lazily opened image, without decoding pixels."""
    try:
        if isinstance(im, PngImagePlugin.PngImageFile):
            # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after
            # the pixel data (a decompression bomb would be decoded right here); the base
            # implementation only reads what the header already gave (eXIf before IDAT, XMP).
            exif = Image.Image.getexif(im)
        else:
            exif = im.getexif()
        value = exif.get(_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not make an image unusable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


class _Header:
    """What the header says: format, size (as stored) and, read on demand, the orientation."""

    __slots__ = ("label", "pil_format", "decoders", "im", "width", "height", "_orientation")

    def __init__(self, label: str, im: Image.Image):
        self.label = label
        self.pil_format, self.decoders = _FORMATS[label]
        self.im = im
        self.width, self.height = im.size
        self._orientation: int | None = None

    @property
    def orientation(self) -> int:
        if self._orientation is None:
            self._orientation = _orientation(self.im)
        return self._orientation


def looks_like_image(path: str | os.PathLike[str]) -> bool:
    """True when the file's first bytes are an image format's (decodable here or not), whatever
    its name says; False for anything else and for a file that cannot be read."""
    try:
        with open(path, "rb") as f:
            return _sniff(f.read(_SNIFF_BYTES))[0] in ("image", "unsupported")
    except OSError:
        return False


def _sniff_or_raise(head: bytes, source: str) -> str:
    """The sniffed format name (a key of ``_FORMATS``), or ImageError saying what the file is."""
    if not head:
        raise ImageError(source, "empty file (0 bytes)")
    kind, name = _sniff(head)
    if kind == "other":
        raise ImageError(source, f"not an image (looks like {name})")
    if kind == "unsupported":
        raise ImageError(source, f"unsupported format {name}")
    if kind == "unknown":
        raise ImageError(source, "not an image (unrecognised file format)")
    return name


def _read_header(fp: BinaryIO, name: str, source: str) -> _Header:
    """Read the header of a file sniffed as ``name`` from ``fp``; no pixels are decoded."""
    fp.seek(0)
    try:
        im = _pil_open(fp, _FORMATS[name][0])
        width, height = im.size
    except Image.DecompressionBombError:  # Pillow's own check fired again inside the plugin
        raise ImageError(
            source,
            "image is above Pillow's "
            f"{_megapixels(2 * (Image.MAX_IMAGE_PIXELS or 0))} megapixel limit",
        ) from None
    except MemoryError:
        raise ImageError(source, f"not enough memory to read the {name} header") from None
    except Exception:  # any Pillow parse error: the header itself is damaged
        raise ImageError(source, f"truncated or corrupt {name} (unreadable header)") from None
    if width <= 0 or height <= 0:
        im.close()
        raise ImageError(source, f"corrupt {name} (size {width}x{height})")
    return _Header(name, im)


def _check_pixels(header: _Header, max_pixels: int, source: str) -> None:
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise ImageError(
            source,
            f"image is {header.width}x{header.height} = {_megapixels(pixels)} megapixels, "
            f"above the {_megapixels(max_pixels)} megapixel limit",
        )


def _megapixels(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.3g}"


# --------------------------------------------------------------------------------------------
# Pixel conversions


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind in "iu" and size == 1:  # int8
        return np.clip(arr, 0, 255).astype(np.uint8)
    if kind in "iu":  # 16-bit (any byte order), and 32-bit integers holding 16-bit data
        return ((np.clip(arr, 0, 65535).astype(np.uint32) + 128) // 257).astype(np.uint8)
    if kind == "f":  # float TIFF/PFM/HDR: 0..1 if it fits, else 0..255; no tone mapping
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
        return np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
    raise _Undecodable(f"unsupported sample type {arr.dtype}")


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb * a + 255 * (1 - a)`` in integer arithmetic (rounded); both uint8."""
    if alpha.min() == 255:
        return rgb
    a = alpha.astype(np.uint16)[..., None]
    out = rgb.astype(np.uint16) * a + 255 * (255 - a)
    return ((out + 127) // 255).astype(np.uint8)


def _cv2_to_rgb(arr: np.ndarray) -> np.ndarray:
    """OpenCV ``IMREAD_UNCHANGED`` output (grey, grey+alpha, BGR or BGRA; 8/16-bit/float) to RGB."""
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.ndim != 3:
        raise _Undecodable(f"unexpected array shape {arr.shape}")
    channels = arr.shape[2]
    if channels == 1:
        return cv2.cvtColor(arr[..., 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:
        grey = cv2.cvtColor(np.ascontiguousarray(arr[..., 0]), cv2.COLOR_GRAY2RGB)
        return _composite_on_white(grey, arr[..., 1])
    if channels == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    if channels == 4:
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
        return _composite_on_white(rgb, arr[..., 3])
    raise _Undecodable(f"unexpected channel count {channels}")


_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded Pillow image (any mode) to RGB uint8, alpha and palette transparency on white."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float greyscale
        grey = _to_uint8(np.asarray(im))
        return cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_GRAY2RGB)
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"))
        return _composite_on_white(np.ascontiguousarray(rgba[..., :3]), rgba[..., 3])
    if mode != "RGB":
        im = im.convert("RGB")  # P, L, 1, CMYK, YCbCr, LAB, HSV
    return np.asarray(im)


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) the way viewers display it."""
    if orientation == 2:
        return cv2.flip(rgb, 1)
    if orientation == 3:
        return cv2.rotate(rgb, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(rgb, 0)
    if orientation == 5:
        return cv2.transpose(rgb)
    if orientation == 6:
        return cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.transpose(rgb), -1)
    if orientation == 8:
        return cv2.rotate(rgb, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return rgb


# --------------------------------------------------------------------------------------------
# Decoders

_REDUCED_BITS = {1: 0, 2: 16, 4: 32, 8: 64}  # the IMREAD_REDUCED_* bits without IMREAD_COLOR


def _decode_cv2(data: bytes, header: _Header, factor: int) -> np.ndarray:
    buf = np.frombuffer(data, np.uint8)
    try:
        if header.label == "JPEG":  # straight to RGB, at 1/factor scale, orientation left to us
            flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION | _REDUCED_BITS[factor]
            arr = cv2.imdecode(buf, flags)
        else:  # keep alpha and 16-bit samples
            arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise _Undecodable(str(err).strip() or "cv2.error") from None
    if arr is None:
        raise _Undecodable("cv2.imdecode returned None")
    return arr if header.label == "JPEG" else _cv2_to_rgb(arr)


def _decode_pil(data: bytes, header: _Header, factor: int) -> np.ndarray:
    im = header.im
    try:
        if factor > 1 and header.label == "JPEG":
            # draft() picks the largest scale with width // scale >= requested; asking for the
            # floor gives exactly ``factor`` (output ceil(width / factor), as OpenCV's)
            im.draft("RGB", (header.width // factor, header.height // factor))
        im.load()
        return _pil_to_rgb(im)
    except (_Undecodable, MemoryError):
        raise
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ...
        raise _Undecodable(f"{type(err).__name__}: {err}") from None


def _png_damaged(data: bytes) -> bool:
    """True if a PNG's chunk structure is broken (a chunk cut short, a bad CRC, no IEND).

    Checked before libpng sees the file: libpng prints its own "libpng error" lines (naming no
    file) on stderr for such files. zlib.crc32 runs at about 1 GB/s: ~1% of a PNG decode."""
    pos, n = 8, len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 8 + length
        if length > 0x7FFFFFFF or end + 4 > n:
            return True
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(data[pos + 4 : end]) != crc:
            return True
        if data[pos + 4 : pos + 8] == b"IEND":
            return False
        pos = end + 4
    return True


_DECODE = {_CV2: _decode_cv2, _PIL: _decode_pil}


def _decode(data: bytes, header: _Header, min_short_side: int | None, source: str) -> np.ndarray:
    """Pixels of an image whose header passed the checks, as contiguous writable RGB uint8."""
    if header.label == "PNG" and _png_damaged(data):
        header.im.close()
        raise ImageError(source, "truncated or corrupt PNG")
    factor = (
        reduced_factor(header.width, header.height, min_short_side) if header.label == "JPEG" else 1
    )
    orientation = 1 if header.label in _SELF_ORIENTING else header.orientation
    rgb = None
    try:
        for decoder in header.decoders:
            try:
                rgb = _DECODE[decoder](data, header, factor)
                break
            except _Undecodable as err:
                log.debug("%s: %s could not decode it: %s", source, decoder, err)
    except MemoryError:
        raise ImageError(source, "not enough memory to decode the image") from None
    finally:
        header.im.close()
    if rgb is None:
        raise ImageError(source, f"truncated or corrupt {header.label}")
    rgb = _apply_orientation(rgb, orientation)
    if not (rgb.flags.c_contiguous and rgb.flags.writeable):
        rgb = rgb.copy()  # np.asarray(PIL image) is read-only; callers may draw on the result
    return rgb


# --------------------------------------------------------------------------------------------
# Public decoding API


def _checked_decode(data: bytes, name: str, limit: int, min_short_side: int | None,
                    source: str) -> np.ndarray:
    """Read the header, refuse it above the pixel limit (before any pixel is decoded), decode."""
    header = _read_header(io.BytesIO(data), name, source)
    try:
        _check_pixels(header, limit, source)
    except ImageError:
        header.im.close()
        raise
    return _decode(data, header, min_short_side, source)


def decode_image_bytes(
    data: bytes,
    *,
    source: str = "<bytes>",
    max_pixels: int | None = None,
    min_short_side: int | None = None,
) -> np.ndarray:
    """Decode an in-memory image file (clipboard, download, test data) to HxWx3 uint8 RGB.

    ``source`` names the data in error messages. See :func:`load_image` for the rest.
    """
    limit = _resolve_max_pixels(max_pixels)
    min_short_side = _check_min_short_side(min_short_side)
    data = bytes(data) if not isinstance(data, bytes) else data
    name = _sniff_or_raise(data[:_SNIFF_BYTES], source)
    return _checked_decode(data, name, limit, min_short_side, source)


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = None,
    min_short_side: int | None = None,
) -> np.ndarray:
    """Decode an image file to an HxWx3 ``uint8`` RGB array (C-contiguous, EXIF-oriented).

    ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, or ``$LOOKALIKE_MAX_PIXELS``): images whose
    header declares more pixels are refused before decoding.

    ``min_short_side``: the caller needs at least this many pixels on the short side, no more;
    JPEGs are then decoded at the largest 1/2, 1/4 or 1/8 scale that keeps the short side at or
    above it (never below it, never upscaled). Other formats are returned at full size.

    Raises :class:`~engine.errors.ImageError` (and nothing else) for any unusable file.
    """
    limit = _resolve_max_pixels(max_pixels)
    min_short_side = _check_min_short_side(min_short_side)
    source = os.fspath(path)
    source = source if isinstance(source, str) else os.fsdecode(source)
    size = _stat_regular_file(source)
    if size > max_file_bytes(limit):
        raise ImageError(source, f"file is too large ({size / 2**20:.0f} MiB) for an image within the pixel limit")
    try:
        with open(source, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            name = _sniff_or_raise(head, source)  # before reading a large non-image whole
            f.seek(0)
            data = f.read()
    except OSError as err:
        raise ImageError(source, _os_reason(err)) from None
    return _checked_decode(data, name, limit, min_short_side, source)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` as displayed (after EXIF orientation), read from the header only.

    No pixels are decoded and no pixel limit applies. Raises ImageError like :func:`load_image`.
    """
    source = os.fspath(path)
    source = source if isinstance(source, str) else os.fsdecode(source)
    _stat_regular_file(source)
    try:
        with open(source, "rb") as f:
            name = _sniff_or_raise(f.read(_SNIFF_BYTES), source)
            header = _read_header(f, name, source)
            header.im.close()
    except OSError as err:
        raise ImageError(source, _os_reason(err)) from None
    if header.label not in _SELF_ORIENTING and header.orientation in (5, 6, 7, 8):
        return header.height, header.width
    return header.width, header.height


# --------------------------------------------------------------------------------------------
# File system


def _stat_regular_file(source: str) -> int:
    """Size of a readable regular file, or ImageError with the reason it is not one."""
    try:
        st = os.stat(source)
    except FileNotFoundError:
        if os.path.islink(source):
            raise ImageError(source, "broken symbolic link") from None
        raise ImageError(source, "file not found") from None
    except (OSError, ValueError) as err:
        raise ImageError(source, _os_reason(err)) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(source, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(source, "not a regular file")
    if st.st_size == 0:
        raise ImageError(source, "empty file (0 bytes)")
    return st.st_size


def _os_reason(err: BaseException) -> str:
    if isinstance(err, ValueError):  # e.g. a NUL character in the name
        return "invalid file name"
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, NotADirectoryError):
        return "file not found (a parent is not a folder)"
    if isinstance(err, OSError) and err.strerror:
        return f"cannot read file ({err.strerror.lower()})"
    return "cannot read file"
