"""engine.imaging: every kind of input decodes to HxWx3 uint8 RGB or fails with one clear reason.

The corpus is generated here (tmp_path) from scikit-image's bundled photos and synthetic arrays;
real product photos come from ../shared/datasets/luma when present.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps, features
from skimage import data as skdata

from engine import imaging
from engine.errors import ImageError
from engine.imaging import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    decode_image_bytes,
    image_size,
    is_image_path,
    load_image,
    reduced_factor,
)

REPO = Path(__file__).resolve().parents[1]
LUMA = REPO.parent / "shared" / "datasets" / "luma"


# --------------------------------------------------------------------------------------------
# helpers


def encode(array_or_image, fmt: str, **params) -> bytes:
    im = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(array_or_image)
    )
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def check_rgb(arr: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags["C_CONTIGUOUS"]
    assert arr.flags["WRITEABLE"]
    if shape is not None:
        assert arr.shape[:2] == shape


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def reason_of(excinfo: pytest.ExceptionInfo[ImageError]) -> str:
    return excinfo.value.reason


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real 512x512 RGB photo."""
    return skdata.astronaut()


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """A real 300x451 RGB photo (landscape, odd width)."""
    return skdata.chelsea()


@pytest.fixture(scope="module")
def jpeg_bytes(photo) -> bytes:
    return encode(photo, "JPEG", quality=90)


@pytest.fixture(scope="module")
def png_bytes(cat) -> bytes:
    return encode(cat, "PNG")


# --------------------------------------------------------------------------------------------
# extensions and small helpers


def test_image_extensions_are_lower_case_with_dot():
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"} <= IMAGE_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)
    assert not IMAGE_EXTENSIONS & imaging.UNSUPPORTED_IMAGE_EXTENSIONS
    assert ".heic" in imaging.UNSUPPORTED_IMAGE_EXTENSIONS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", True),
        ("A.JPG", True),
        ("photo.JpEg", True),
        ("dir.d/x.png", True),
        ("x.WEBP", True),
        ("x.tiff", True),
        ("x.txt", False),
        ("x.heic", False),
        ("jpg", False),
        ("x.jpg.zip", False),
        (Path("some folder") / "ф.gif", True),
    ],
)
def test_is_image_path(name, expected):
    assert is_image_path(name) is expected


@pytest.mark.parametrize(
    ("w", "h", "m", "expected"),
    [
        (1274, 1580, 256, 4),  # 1274/4 = 318.5 -> 319 >= 256; /8 -> 160 < 256
        (1080, 1340, 256, 4),
        (2048, 4000, 256, 8),
        (512, 512, 256, 2),
        (511, 900, 256, 2),  # /2 -> ceil(255.5) = 256 is enough
        (510, 900, 256, 1),
        (300, 451, 256, 1),
        (1, 1, 256, 1),
        (10000, 3, 256, 1),
        (4000, 3000, None, 1),
        (4000, 3000, 0, 1),
        (4000, 3000, 1, 8),
    ],
)
def test_reduced_factor_table(w, h, m, expected):
    assert reduced_factor(w, h, m) == expected


@given(
    w=st.integers(1, 20000),
    h=st.integers(1, 20000),
    m=st.integers(1, 5000),
)
def test_reduced_factor_never_goes_below_min_short_side(w, h, m):
    f = reduced_factor(w, h, m)
    assert f in (1, 2, 4, 8)
    short = min(w, h)
    if f > 1:
        assert -(-short // f) >= m  # libjpeg rounds up
    if f < 8:  # the next factor would have been too small
        assert -(-short // (f * 2)) < m


# --------------------------------------------------------------------------------------------
# files that must be refused, with their reasons


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("photo.jpg", b"not really")
    return buf.getvalue()


def _png_with_bad_crc(png: bytes, chunk: bytes) -> bytes:
    at = png.index(chunk)
    (length,) = struct.unpack(">I", png[at - 4 : at])
    crc_at = at + 4 + length
    bad = bytearray(png)
    bad[crc_at] ^= 0xFF
    return bytes(bad)


REFUSED = {
    "zero bytes": (lambda j, p: b"", "empty file (0 bytes)"),
    "text": (
        lambda j, p: b"Hello, this is not a photo.\nSecond line.\n",
        "not an image (looks like a text file)",
    ),
    "zip": (lambda j, p: _zip_bytes(), "not an image (looks like a ZIP archive)"),
    "pdf": (
        lambda j, p: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "not an image (looks like a PDF document)",
    ),
    "html": (
        lambda j, p: b"\xef\xbb\xbf\n<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "not an image (looks like an HTML page)",
    ),
    "gzip": (lambda j, p: gzip.compress(b"abc"), "not an image (looks like a gzip archive)"),
    "mp4": (
        lambda j, p: b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64,
        "not an image (looks like a video file)",
    ),
    "random": (
        lambda j, p: bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8)),
        "not an image (unrecognised file format)",
    ),
    "truncated jpeg (half)": (lambda j, p: j[: len(j) // 2], "truncated or corrupt JPEG"),
    "truncated jpeg (90%)": (lambda j, p: j[: len(j) * 9 // 10], "truncated or corrupt JPEG"),
    "jpeg header only": (lambda j, p: j[:20], "truncated or corrupt JPEG (unreadable header)"),
    "truncated png": (lambda j, p: p[: len(p) // 2], "truncated or corrupt PNG"),
    "png without IEND": (lambda j, p: p[:-12], "truncated or corrupt PNG"),
    "png bad IDAT crc": (lambda j, p: _png_with_bad_crc(p, b"IDAT"), "truncated or corrupt PNG"),
    "png bad IHDR crc": (
        lambda j, p: _png_with_bad_crc(p, b"IHDR"),
        "truncated or corrupt PNG (unreadable header)",
    ),
    "svg": (
        lambda j, p: (
            b'<?xml version="1.0"?>\n'
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
        ),
        "unsupported format SVG",
    ),
    "heic": (
        lambda j, p: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200,
        "unsupported format HEIC",
    ),
    "heif mif1": (
        lambda j, p: b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf" + b"\x00" * 200,
        "unsupported format HEIC",
    ),
    "jpeg xl": (lambda j, p: b"\xff\x0a\xfa\x7f" + b"\x00" * 100, "unsupported format JPEG XL"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_bytes(case, jpeg_bytes, png_bytes):
    make, reason = REFUSED[case]
    with pytest.raises(ImageError) as excinfo:
        decode_image_bytes(make(jpeg_bytes, png_bytes), source="upload.jpg")
    assert reason_of(excinfo) == reason
    assert str(excinfo.value) == f"upload.jpg: {reason}"
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_files_named_jpg(case, tmp_path, jpeg_bytes, png_bytes):
    make, reason = REFUSED[case]
    path = tmp_path / "photo.jpg"
    path.write_bytes(make(jpeg_bytes, png_bytes))
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    assert reason_of(excinfo) == reason
    assert excinfo.value.path == str(path)
    if reason.startswith(("not an image", "unsupported", "empty")):
        with pytest.raises(ImageError) as excinfo:
            image_size(path)
        assert reason_of(excinfo) == reason


def test_truncated_formats_decoded_by_pillow_are_refused(photo):
    for fmt, label in [("GIF", "GIF"), ("TIFF", "TIFF"), ("WEBP", "WebP")]:
        blob = encode(photo, fmt)
        with pytest.raises(ImageError) as excinfo:
            decode_image_bytes(blob[: len(blob) // 2])
        assert reason_of(excinfo).startswith(f"truncated or corrupt {label}"), (
            fmt,
            reason_of(excinfo),
        )


# --------------------------------------------------------------------------------------------
# file-system problems


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        load_image(tmp_path / "nope.jpg")
    assert reason_of(excinfo) == "file not found"
    with pytest.raises(ImageError, match="file not found"):
        image_size(tmp_path / "nope.jpg")


def test_directory_named_like_an_image(tmp_path):
    folder = tmp_path / "like.jpg"
    folder.mkdir()
    with pytest.raises(ImageError) as excinfo:
        load_image(folder)
    assert reason_of(excinfo) == "is a directory"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_broken_symlink(tmp_path):
    link = tmp_path / "gone.jpg"
    try:
        link.symlink_to(tmp_path / "target-that-does-not-exist.jpg")
    except OSError:
        pytest.skip("cannot create symlinks here")
    with pytest.raises(ImageError) as excinfo:
        load_image(link)
    assert reason_of(excinfo) == "broken symbolic link"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_working_symlink(tmp_path, jpeg_bytes):
    target = tmp_path / "real.jpg"
    target.write_bytes(jpeg_bytes)
    link = tmp_path / "link.jpg"
    try:
        link.symlink_to(target)
    except OSError:
        pytest.skip("cannot create symlinks here")
    check_rgb(load_image(link), (512, 512))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_permission_denied(tmp_path, jpeg_bytes):
    path = tmp_path / "secret.jpg"
    path.write_bytes(jpeg_bytes)
    path.chmod(0)
    try:
        with pytest.raises(ImageError) as excinfo:
            load_image(path)
        assert reason_of(excinfo) == "permission denied"
    finally:
        path.chmod(0o644)


def test_permission_denied_reported(tmp_path, jpeg_bytes, monkeypatch):
    """The same reason whoever runs the tests (root can read a chmod-000 file)."""
    path = tmp_path / "secret.jpg"
    path.write_bytes(jpeg_bytes)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imaging, "open", denied, raising=False)
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    assert reason_of(excinfo) == "permission denied"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_fifo_is_not_read(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError) as excinfo:
        load_image(fifo)  # would block forever if it were opened
    assert reason_of(excinfo) == "not a regular file"


def test_nul_in_file_name():
    with pytest.raises(ImageError) as excinfo:
        load_image("bad\x00name.jpg")
    assert reason_of(excinfo) == "invalid file name"


@pytest.mark.parametrize(
    "name",
    [
        "фото товара 写真 🙂.jpg",
        'it\'s a "quoted" name; rm -rf $HOME.jpg',
        "x" * 200 + ".jpg",
        "é" * 120 + ".JPG",  # 240 UTF-8 bytes + extension, close to the 255-byte limit
        "PRODUCT.JPEG",
        " leading and trailing spaces .jpg",
    ],
)
def test_awkward_file_names(tmp_path, jpeg_bytes, name):
    path = tmp_path / name
    try:
        path.write_bytes(jpeg_bytes)
    except OSError:
        pytest.skip("file system refuses this name")
    arr = load_image(path)
    check_rgb(arr, (512, 512))
    assert image_size(str(path)) == (512, 512)
    assert is_image_path(path)


def test_content_beats_extension(tmp_path, jpeg_bytes, png_bytes, photo, cat):
    as_png = tmp_path / "really-a-jpeg.png"
    as_png.write_bytes(jpeg_bytes)
    assert mean_abs_diff(load_image(as_png), photo) < 3
    as_jpg = tmp_path / "really-a-png.jpg"
    as_jpg.write_bytes(png_bytes)
    assert np.array_equal(load_image(as_jpg), cat)
    no_ext = tmp_path / "image"
    no_ext.write_bytes(png_bytes)
    assert np.array_equal(load_image(no_ext), cat)


# --------------------------------------------------------------------------------------------
# formats and colour handling


def test_jpeg_real_photo(jpeg_bytes, photo):
    arr = decode_image_bytes(jpeg_bytes)
    check_rgb(arr, (512, 512))
    assert mean_abs_diff(arr, photo) < 3  # quality-90 JPEG of the same photo
    # channel order is RGB: the astronaut photo's red channel is brightest on average
    assert arr[..., 0].mean() > arr[..., 2].mean()


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
        ("PPM", {}),
    ],
)
def test_lossless_formats_are_exact(cat, fmt, params):
    arr = decode_image_bytes(encode(cat, fmt, **params))
    check_rgb(arr, cat.shape[:2])
    assert np.array_equal(arr, cat)


@pytest.mark.parametrize(
    ("fmt", "params", "tolerance"),
    [
        ("WEBP", {"quality": 90}, 4),
        ("JPEG2000", {"quality_mode": "dB", "quality_layers": [45]}, 3),
        pytest.param(
            "AVIF",
            {"quality": 90},
            4,
            marks=pytest.mark.skipif(not features.check("avif"), reason="no AVIF codec"),
        ),
    ],
)
def test_lossy_formats(cat, fmt, params, tolerance):
    arr = decode_image_bytes(encode(cat, fmt, **params))
    check_rgb(arr, cat.shape[:2])
    assert mean_abs_diff(arr, cat) < tolerance


def test_grayscale_becomes_rgb(cat):
    grey = np.asarray(Image.fromarray(cat).convert("L"))
    for fmt, params in [
        ("PNG", {}),
        ("JPEG", {}),
        ("TIFF", {}),
        ("BMP", {}),
        ("GIF", {}),
        ("WEBP", {"lossless": True}),
    ]:
        arr = decode_image_bytes(encode(grey, fmt, **params))
        check_rgb(arr, grey.shape)
        assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(
            arr[..., 1], arr[..., 2]
        ), fmt
        assert mean_abs_diff(arr[..., 0], grey) < 2.5, fmt


def test_one_bit_png():
    bits = np.zeros((8, 16), bool)
    bits[:, 8:] = True
    arr = decode_image_bytes(encode(Image.fromarray(bits), "PNG"))
    check_rgb(arr, (8, 16))
    assert (arr[:, :8] == 0).all() and (arr[:, 8:] == 255).all()


def test_cmyk_jpeg_has_correct_colours(photo):
    cmyk = encode(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(cmyk)).mode == "CMYK"
    arr = decode_image_bytes(cmyk)
    check_rgb(arr, (512, 512))
    reference = np.asarray(Image.open(io.BytesIO(cmyk)).convert("RGB"))
    assert mean_abs_diff(arr, reference) < 2
    assert mean_abs_diff(arr, photo) < 4
    # and at reduced size
    small = decode_image_bytes(cmyk, min_short_side=128)
    check_rgb(small, (128, 128))
    assert mean_abs_diff(small, cv2.resize(photo, (128, 128), interpolation=cv2.INTER_AREA)) < 5


def test_cmyk_tiff(cat):
    arr = decode_image_bytes(encode(Image.fromarray(cat).convert("CMYK"), "TIFF"))
    check_rgb(arr, cat.shape[:2])
    assert mean_abs_diff(arr, cat) < 2


def test_16_bit_png_rgb_is_scaled():
    rng = np.random.default_rng(0)
    rgb16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    rgb16[0, 0] = (0, 65535, 257 * 100)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert ok
    arr = decode_image_bytes(png.tobytes())
    check_rgb(arr, (20, 30))
    expected = np.round(rgb16 / 257.0).astype(np.uint8)
    assert np.array_equal(arr, expected)
    assert arr[0, 0].tolist() == [0, 255, 100]


def test_16_bit_grey_png_and_tiff():
    ramp = (np.arange(64 * 32, dtype=np.uint32).reshape(32, 64) * 32).astype(np.uint16)
    expected = np.round(ramp / 257.0).astype(np.uint8)
    for blob in (encode(Image.fromarray(ramp), "PNG"), encode(Image.fromarray(ramp), "TIFF")):
        arr = decode_image_bytes(blob)
        check_rgb(arr, ramp.shape)
        assert np.array_equal(arr[..., 1], expected)


def test_16_bit_rgba_tiff_via_opencv():
    rgba16 = np.full((10, 12, 4), 65535, np.uint16)
    rgba16[..., 0] = 257 * 200
    rgba16[:, :6, 3] = 0
    ok, blob = cv2.imencode(".tiff", cv2.cvtColor(rgba16, cv2.COLOR_RGBA2BGRA))
    assert ok
    arr = decode_image_bytes(blob.tobytes())
    check_rgb(arr, (10, 12))
    assert (arr[:, :6] == 255).all()  # transparent -> white
    assert arr[0, 11].tolist() == [200, 255, 255]


def _expected_on_white(rgb, alpha):
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.round(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "params"), [("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {})]
)
def test_rgba_composited_on_white(fmt, params):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)
    rgba[0, :, 3] = (0, 64, 128, 192, 255)
    rgba[1, :, :3] = (0, 0, 0)
    rgba[1, :, 3] = (0, 64, 128, 192, 255)
    rgba[2, :, :3] = (10, 200, 30)
    rgba[2, :, 3] = 255
    rgba[3] = (0, 0, 255, 0)  # fully transparent blue -> white
    arr = decode_image_bytes(encode(rgba, fmt, **params))
    check_rgb(arr, (4, 5))
    expected = _expected_on_white(rgba[..., :3], rgba[..., 3])
    assert np.abs(arr.astype(int) - expected.astype(int)).max() <= 1, (arr, expected)
    assert arr[0, 0].tolist() == [255, 255, 255]
    assert arr[0, 4].tolist() == [255, 0, 0]
    assert arr[1, 2].tolist() in ([127, 127, 127], [128, 128, 128])
    assert (arr[3] == 255).all()


def test_grey_alpha_png_on_white():
    la = np.zeros((2, 3, 2), np.uint8)
    la[..., 1] = (0, 128, 255)
    arr = decode_image_bytes(encode(Image.fromarray(la, "LA"), "PNG"))
    check_rgb(arr, (2, 3))
    assert arr[0, :, 0].tolist() in ([255, 127, 0], [255, 128, 0])


def _palette_image_with_transparent_index() -> Image.Image:
    im = Image.new("P", (6, 4), 1)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.paste(0, (0, 0, 3, 4))  # left half: index 0 (transparent black)
    im.paste(2, (3, 0, 6, 2))  # top right: blue
    im.info["transparency"] = 0
    return im


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP"])
def test_palette_with_transparency(fmt):
    im = _palette_image_with_transparent_index()
    params = {"transparency": 0}
    if fmt == "WEBP":
        im, params = im.convert("RGBA"), {"lossless": True}
    arr = decode_image_bytes(encode(im, fmt, **params))
    check_rgb(arr, (4, 6))
    assert (arr[:, :3] == 255).all(), fmt  # transparent index on white, not black
    assert arr[0, 4].tolist() == [0, 0, 255]
    assert arr[3, 4].tolist() == [255, 0, 0]


def test_palette_png_without_transparency(cat):
    pal = Image.fromarray(cat).quantize(64)
    arr = decode_image_bytes(encode(pal, "PNG"))
    assert np.array_equal(arr, np.asarray(pal.convert("RGB")))


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (30, 20), c) for c in ("red", "lime", "blue")]
    blob = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(blob)).n_frames == 3
    arr = decode_image_bytes(blob)
    check_rgb(arr, (20, 30))
    assert (arr == (255, 0, 0)).all()


def test_animated_webp_and_png_first_frame():
    frames = [Image.new("RGB", (30, 20), c) for c in ("red", "lime", "blue")]
    for fmt, params in (("WEBP", {"lossless": True}), ("PNG", {})):
        blob = encode(
            frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **params
        )
        arr = decode_image_bytes(blob)
        check_rgb(arr, (20, 30))
        assert (arr == (255, 0, 0)).all(), fmt


def test_multipage_tiff_first_page():
    pages = [Image.new("RGB", (16, 8), "red"), Image.new("RGB", (32, 32), "blue")]
    blob = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(blob)).n_frames == 2
    arr = decode_image_bytes(blob)
    check_rgb(arr, (8, 16))
    assert (arr == (255, 0, 0)).all()


def test_gif_real_photo(cat):
    arr = decode_image_bytes(encode(cat, "GIF"))
    check_rgb(arr, cat.shape[:2])
    assert mean_abs_diff(arr, cat) < 12  # 256-colour quantisation


def test_ico_picks_the_largest_image(cat):
    arr = decode_image_bytes(encode(cat[:256, :256], "ICO", sizes=[(64, 64), (256, 256)]))
    check_rgb(arr, (256, 256))
    assert mean_abs_diff(arr, cat[:256, :256]) < 1


def test_qoi(cat):
    assert np.array_equal(decode_image_bytes(encode(cat, "QOI")), cat)


@pytest.mark.parametrize(
    ("shape", "fmt"),
    [
        (shape, fmt)
        for shape in [(1, 1), (3, 10000), (10000, 3), (1, 5000)]
        for fmt in ("JPEG", "PNG", "WEBP")
    ]
    + [((1, 1), "GIF"), ((2, 3000), "GIF"), ((1, 1), "BMP"), ((1, 1), "TIFF")],
)
def test_tiny_and_extreme_aspect_ratios(shape, fmt):
    h, w = shape
    rng = np.random.default_rng(h * 7 + w)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    arr = decode_image_bytes(encode(rgb, fmt), min_short_side=256)
    check_rgb(arr, (h, w))  # returned as is: no upscaling, no reduction
    if fmt == "PNG":
        assert np.array_equal(arr, rgb)


# --------------------------------------------------------------------------------------------
# EXIF orientation


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _asymmetric(h=60, w=100) -> np.ndarray:
    """An image whose every flip/rotation is different: coloured corner blocks."""
    arr = np.full((h, w, 3), 128, np.uint8)
    arr[: h // 3, : w // 4] = (255, 0, 0)
    arr[: h // 3, -w // 4 :] = (0, 255, 0)
    arr[-h // 3 :, : w // 4] = (0, 0, 255)
    return arr


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg_matches_pillow(orientation):
    src = _asymmetric()
    blob = encode(src, "JPEG", quality=95, exif=_exif(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(blob))).convert("RGB"))
    arr = decode_image_bytes(blob)
    check_rgb(arr, expected.shape[:2])
    assert mean_abs_diff(arr, expected) < 1.5, orientation
    swapped = orientation in (5, 6, 7, 8)
    assert arr.shape[:2] == ((100, 60) if swapped else (60, 100))


def test_exif_orientation_6_is_rotated_clockwise(tmp_path):
    src = _asymmetric()
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encode(src, "JPEG", quality=95, exif=_exif(6)))
    arr = load_image(path)
    assert arr.shape == (100, 60, 3)
    # rotating clockwise puts the top-left (red) block at the top right
    assert mean_abs_diff(arr[:10, -10:], np.full((10, 10, 3), (255, 0, 0), np.uint8)) < 8
    assert image_size(path) == (60, 100)
    # reduced decoding is rotated too
    big = cv2.resize(src, (1000, 600), interpolation=cv2.INTER_NEAREST)
    path.write_bytes(encode(big, "JPEG", quality=95, exif=_exif(6)))
    small = load_image(path, min_short_side=150)
    assert small.shape == (250, 150, 3)  # factor 4
    assert mean_abs_diff(small[:10, -10:], np.full((10, 10, 3), (255, 0, 0), np.uint8)) < 8


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
        pytest.param(
            "AVIF",
            {"quality": 100},
            marks=pytest.mark.skipif(not features.check("avif"), reason="no AVIF codec"),
        ),
    ],
)
def test_exif_orientation_other_formats(fmt, params, tmp_path):
    src = _asymmetric()
    blob = encode(src, fmt, exif=_exif(8), **params)
    arr = decode_image_bytes(blob)
    assert mean_abs_diff(arr, cv2.rotate(src, cv2.ROTATE_90_COUNTERCLOCKWISE)) < (
        3 if fmt == "AVIF" else 0.001
    ), fmt
    path = tmp_path / "rotated.img"
    path.write_bytes(blob)
    assert image_size(path) == (60, 100)


def test_tiff_orientation_tag_applied_once_by_either_decoder(monkeypatch, tmp_path):
    """Pillow and OpenCV both apply the TIFF Orientation tag themselves: not applied twice."""
    src = _asymmetric()
    blob = encode(src, "TIFF", tiffinfo={0x0112: 6})
    expected = cv2.rotate(src, cv2.ROTATE_90_CLOCKWISE)
    assert np.array_equal(decode_image_bytes(blob), expected)
    path = tmp_path / "rotated.tif"
    path.write_bytes(blob)
    assert image_size(path) == (60, 100)
    used = []

    def pillow_fails(*args):
        used.append("Pillow")
        raise imaging._Undecodable("pretend Pillow cannot")

    monkeypatch.setitem(imaging._DECODE, imaging._PIL, pillow_fails)
    assert np.array_equal(decode_image_bytes(blob), expected)  # the OpenCV fallback
    assert used == ["Pillow"]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_malformed_exif_is_ignored(jpeg_bytes, photo):
    at = jpeg_bytes.index(b"\xff\xdb")  # insert a bogus APP1/Exif segment before the tables
    app1 = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f garbage"
    blob = jpeg_bytes[:at] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg_bytes[at:]
    arr = decode_image_bytes(blob)
    assert mean_abs_diff(arr, photo) < 3


# --------------------------------------------------------------------------------------------
# reduced (DCT-scaled) JPEG decoding


@pytest.mark.parametrize("min_short_side", [64, 100, 128, 200, 256, 300, 511, 512, 1000])
def test_min_short_side_never_upscales_or_undershoots(photo, min_short_side):
    big = cv2.resize(photo, (1024, 768), interpolation=cv2.INTER_AREA)  # 4:3, short side 768
    blob = encode(big, "JPEG", quality=90)
    arr = decode_image_bytes(blob, min_short_side=min_short_side)
    check_rgb(arr)
    factor = reduced_factor(1024, 768, min_short_side)
    assert arr.shape[:2] == (-(-768 // factor), -(-1024 // factor))
    assert min(arr.shape[:2]) >= min(min_short_side, 768)
    assert arr.shape[0] <= 768 and arr.shape[1] <= 1024


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduced_decode_close_to_full_decode_then_resize(photo, factor):
    big = cv2.resize(photo, (1536, 1024), interpolation=cv2.INTER_CUBIC)
    blob = encode(big, "JPEG", quality=90)
    min_side = 1024 // factor
    arr = decode_image_bytes(blob, min_short_side=min_side)
    assert arr.shape == (1024 // factor, 1536 // factor, 3)
    full = decode_image_bytes(blob)
    resized = cv2.resize(full, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_AREA)
    assert mean_abs_diff(arr, resized) < 2.0


@pytest.mark.parametrize("size", [(1024, 1024), (1274, 1580), (1081, 1343)])
def test_reduced_decode_pillow_fallback_matches(photo, monkeypatch, size):
    """When OpenCV cannot decode a JPEG, Pillow's draft mode gives the same reduced image."""
    big = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    blob = encode(big, "JPEG", quality=90)
    fast = decode_image_bytes(blob, min_short_side=256)

    def fail(*args, **kwargs):
        return None

    monkeypatch.setattr(imaging.cv2, "imdecode", fail)
    slow = decode_image_bytes(blob, min_short_side=256)
    factor = reduced_factor(*size, 256)
    assert factor == 4
    assert slow.shape == fast.shape == (-(-size[1] // factor), -(-size[0] // factor), 3)
    assert mean_abs_diff(slow, fast) < 1.0


def test_concurrent_decoding_matches_sequential(photo, cat):
    from concurrent.futures import ThreadPoolExecutor

    blobs = [
        encode(photo, "JPEG"),
        encode(cat, "PNG"),
        encode(cat, "GIF"),
        encode(photo, "WEBP"),
        encode(Image.fromarray(photo).convert("CMYK"), "JPEG"),
        encode(cat, "TIFF"),
    ] * 4
    sequential = [decode_image_bytes(b, min_short_side=128) for b in blobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda b: decode_image_bytes(b, min_short_side=128), blobs))
    for a, b in zip(sequential, parallel, strict=True):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------------
# decompression bombs and the pixel limit


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _one_bit_png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height, all black: a few hundred kilobytes on disk."""
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(_one_bit_png_bomb(30000, 30000))
    return path


def _jpeg_with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def _gif_with_declared_size(width: int, height: int) -> bytes:
    blob = encode(Image.new("P", (1, 1)), "GIF")
    return blob[:6] + struct.pack("<HH", width, height) + blob[10:]


def _forbid_pixel_decoding(monkeypatch) -> list[str]:
    """Replace OpenCV's and Pillow's pixel decoders by stubs that record the call and fail.

    Returns the list the stubs append to: empty afterwards means no pixel was decoded."""
    calls: list[str] = []

    def stub(name):
        def record(*args, **kwargs):
            calls.append(name)
            raise MemoryError(f"{name} must not run")  # what a real bomb decode would end in

        return record

    monkeypatch.setattr(cv2, "imdecode", stub("cv2.imdecode"))
    monkeypatch.setattr(ImageFile.ImageFile, "load", stub("PIL ImageFile.load"))
    return calls


def test_png_bomb_refused_from_header(png_bomb, monkeypatch):
    """The bomb is refused from its header: neither OpenCV nor Pillow decodes any pixel."""
    assert png_bomb.stat().st_size < 1_000_000  # 900 megapixels in under a megabyte
    calls = _forbid_pixel_decoding(monkeypatch)
    with pytest.raises(ImageError) as excinfo:
        load_image(png_bomb)
    assert (
        reason_of(excinfo) == "image is 30000x30000 = 900 megapixels, above the 100 megapixel limit"
    )
    assert image_size(png_bomb) == (30000, 30000)  # the header can still be read
    assert calls == []

    # control: the stubs do catch a decode, so the empty list above means something
    with pytest.raises(ImageError):
        decode_image_bytes(encode(np.zeros((8, 8, 3), np.uint8), "PNG"))
    assert calls


@pytest.mark.skipif(
    sys.platform != "linux", reason="peak RSS measured via /proc semantics of ru_maxrss"
)
def test_png_bomb_does_not_allocate(png_bomb):
    """In a fresh process, refusing the bomb must not raise the peak memory by ~1 GB."""
    code = (
        "import resource, sys\n"
        "from engine.imaging import load_image\n"
        "from engine.errors import ImageError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    load_image({str(png_bomb)!r})\n"
        "except ImageError:\n"
        "    pass\n"
        "else:\n"
        "    sys.exit('bomb was decoded')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    grown_kib = int(out.stdout.strip())
    assert grown_kib < 50_000, f"peak RSS grew by {grown_kib} KiB"


@pytest.mark.parametrize(
    ("make", "label"),
    [
        (lambda j: _jpeg_with_declared_size(j, 60000, 60000), "60000x60000 = 3600 megapixels"),
        (lambda j: _gif_with_declared_size(65535, 65535), "65535x65535 = 4295 megapixels"),
        (lambda j: _one_bit_png_bomb(20000, 6000), "20000x6000 = 120 megapixels"),
    ],
)
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_declared_sizes_above_limit(jpeg_bytes, make, label):
    with pytest.raises(ImageError) as excinfo:
        decode_image_bytes(make(jpeg_bytes))
    assert reason_of(excinfo) == f"image is {label}, above the 100 megapixel limit"


def test_pixel_limit_argument_and_environment(monkeypatch, cat):
    blob = encode(cat, "PNG")  # 451x300 = 135300 pixels
    with pytest.raises(ImageError) as excinfo:
        decode_image_bytes(blob, max_pixels=100_000)
    assert (
        reason_of(excinfo) == "image is 451x300 = 0.135 megapixels, above the 0.1 megapixel limit"
    )
    check_rgb(decode_image_bytes(blob, max_pixels=135_300))

    monkeypatch.setenv("LOOKALIKE_MAX_PIXELS", "100_000")
    with pytest.raises(ImageError, match="above the 0.1 megapixel limit"):
        decode_image_bytes(blob)
    check_rgb(decode_image_bytes(blob, max_pixels=200_000))  # the argument wins

    monkeypatch.setenv("LOOKALIKE_MAX_PIXELS", "lots")  # ignored (logged), default applies
    check_rgb(decode_image_bytes(blob))
    assert DEFAULT_MAX_PIXELS == 100_000_000

    with pytest.raises(ValueError):
        decode_image_bytes(blob, max_pixels=0)
    with pytest.raises(ValueError):
        decode_image_bytes(blob, min_short_side=-1)


def test_pillow_limit_follows_a_larger_caller_limit(monkeypatch):
    """A caller limit above Pillow's must not make Pillow refuse (or mislabel) the image."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    frames = [Image.new("RGB", (100, 100), c) for c in ("red", "blue")]
    blob = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    arr = decode_image_bytes(blob, max_pixels=50_000)
    assert (arr == (255, 0, 0)).all()
    assert Image.MAX_IMAGE_PIXELS == 50_000


def test_file_too_large_for_the_limit_is_not_read(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(8 * 1000 + 64 * 1024 * 1024 + 1)  # sparse file
    with pytest.raises(ImageError) as excinfo:
        load_image(path, max_pixels=1000)
    assert reason_of(excinfo).startswith("file is too large")


# --------------------------------------------------------------------------------------------
# in-memory input


def test_decode_bytes_like(jpeg_bytes):
    for blob in (jpeg_bytes, bytearray(jpeg_bytes), memoryview(jpeg_bytes)):
        check_rgb(decode_image_bytes(blob), (512, 512))


def test_load_image_equals_decode_bytes(tmp_path, jpeg_bytes):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes)
    assert np.array_equal(load_image(path), decode_image_bytes(jpeg_bytes))
    assert np.array_equal(
        load_image(str(path), min_short_side=128),
        decode_image_bytes(jpeg_bytes, min_short_side=128),
    )


# --------------------------------------------------------------------------------------------
# fuzzing: random and mutated bytes give an image or an ImageError, never anything else


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(3)
    base = cv2.resize(skdata.astronaut(), (48, 32), interpolation=cv2.INTER_AREA)
    rgba = np.dstack([base, rng.integers(0, 256, base.shape[:2], dtype=np.uint8)])
    return [
        encode(base, "JPEG", quality=80),
        encode(base, "JPEG", quality=80, progressive=True),
        encode(base, "PNG"),
        encode(rgba, "PNG"),
        encode(Image.fromarray(base).quantize(16), "GIF"),
        encode(base, "WEBP"),
        encode(base, "TIFF"),
        encode(base, "BMP"),
    ]


SEEDS = _seeds()


@st.composite
def mutated_images(draw):
    blob = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        if not blob:
            break
        pos = draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            blob[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xD9, 0xD8]))
        elif op == "cut":
            del blob[pos:]
        elif op == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del blob[pos : pos + draw(st.integers(1, 64))]
    return bytes(blob)


# Damaged files make Pillow warn (corrupt EXIF, truncated tags); the warning is not the subject.
FUZZ_WARNINGS = pytest.mark.filterwarnings("ignore::UserWarning")


def _decodes_or_refuses(blob: bytes) -> None:
    try:
        arr = decode_image_bytes(blob, source="fuzz", max_pixels=4_000_000, min_short_side=16)
    except ImageError as err:
        assert err.reason and "\n" not in str(err)
        return
    check_rgb(arr)
    assert arr.shape[0] >= 1 and arr.shape[1] >= 1


@FUZZ_WARNINGS
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
def test_fuzz_mutated_images(blob):
    _decodes_or_refuses(blob)


@FUZZ_WARNINGS
@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(blob):
    _decodes_or_refuses(blob)


@FUZZ_WARNINGS
@settings(max_examples=50, deadline=None)
@given(
    prefix=st.sampled_from(
        [
            b"\xff\xd8\xff",
            b"\x89PNG\r\n\x1a\n",
            b"GIF89a",
            b"RIFF\x00\x00\x00\x00WEBP",
            b"II*\x00",
            b"MM\x00*",
            b"BM",
            b"\x00\x00\x01\x00",
            b"8BPS",
            b"P6\n",
            b"\x00\x00\x00\x0cjP  \r\n\x87\n",
            b"\x00\x00\x00\x1cftypavif",
        ]
    ),
    rest=st.binary(max_size=512),
)
def test_fuzz_magic_followed_by_garbage(prefix, rest):
    _decodes_or_refuses(prefix + rest)


# --------------------------------------------------------------------------------------------
# real product photos (../shared/datasets/luma)


def _luma_images(n: int) -> list[Path]:
    folder = LUMA / "images"
    if not folder.is_dir():
        pytest.skip("Luma dataset not present")
    paths = sorted(folder.glob("*.jpg"))
    step = max(1, len(paths) // n)
    return paths[::step][:n]


def test_luma_photos_full_and_reduced():
    for path in _luma_images(8):
        full = load_image(path)
        w, h = image_size(path)
        check_rgb(full, (h, w))
        reference = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        assert mean_abs_diff(full, reference) < 1.5, path.name

        small = load_image(path, min_short_side=256)
        factor = reduced_factor(w, h, 256)
        assert factor > 1, path.name
        check_rgb(small, (-(-h // factor), -(-w // factor)))
        assert min(small.shape[:2]) >= 256
        resized = cv2.resize(full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        assert mean_abs_diff(small, resized) < 2.0, path.name


def test_heap_is_kept_for_decoding_on_glibc():
    """The allocator setting that keeps a progressive JPEG's coefficient buffers from being
    handed back and page-faulted in again at every decode (its effect is measured by the search
    benchmark, docs/benchmarks.md Run 9). Harmless to repeat; a no-op off glibc."""
    import platform
    import sys

    from engine import imaging

    applied = imaging.keep_heap_for_decoding()
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert applied is True
    else:
        assert applied is False
    assert imaging.keep_heap_for_decoding() is applied
