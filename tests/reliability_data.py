"""Generated test inputs for the reliability tests: distinct synthetic photos and a folder holding
every odd kind of image file a catalog import meets (built in tmp_path, never stored)."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def photo(seed: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A distinct, photo-like RGB uint8 image: smooth colour blobs, edges and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for _ in range(6):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.15, 0.5) * max(width, height)
        colour = rng.uniform(0, 255, 3)
        w = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))[..., None]
        img = img * (1 - w) + colour * w
    for _ in range(3):   # hard-edged rectangles
        x0, y0 = int(rng.integers(0, max(1, width - 8))), int(rng.integers(0, max(1, height - 8)))
        x1 = x0 + int(rng.integers(1, max(2, width // 2)))
        y1 = y0 + int(rng.integers(1, max(2, height // 2)))
        img[y0:y1, x0:x1] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(rgb: np.ndarray, quality: int = 90, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif else {}
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def png_bytes(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def write_photos(folder: Path, n: int, *, start: int = 0, size=(96, 72)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"photo_{i:03d}.jpg"
        p.write_bytes(jpeg_bytes(photo(i, *size)))
        out.append(p)
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``width x height`` pixels (10 gigapixels by default):
    the IDAT is a small zlib stream of zeros, as in a real decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)     # 8-bit greyscale
    idat = zlib.compress(b"\0" * 65536, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@dataclass
class Corpus:
    root: Path
    valid: dict[str, dict] = field(default_factory=dict)     # abs path -> expectations (width, height)
    broken: dict[str, str] = field(default_factory=dict)     # abs path (as reported) -> reason words


def build_corpus(root: Path) -> Corpus:
    """Every kind of input the issue lists. Returns what each file should turn into."""
    c = Corpus(root)
    root.mkdir(parents=True, exist_ok=True)

    def valid(rel: str, data: bytes, w: int, h: int) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        c.valid[os.path.abspath(p)] = {"width": w, "height": h}
        return p

    def broken(rel: str, data: bytes | None, reason: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            p.write_bytes(data)
        c.broken[os.path.abspath(p)] = reason
        return p

    base = photo(1, 160, 120)
    # --- valid images of every odd kind
    valid("plain.jpg", jpeg_bytes(base), 160, 120)
    cmyk = io.BytesIO()
    Image.fromarray(photo(2, 120, 90)).convert("CMYK").save(cmyk, "JPEG", quality=90)
    valid("cmyk.jpg", cmyk.getvalue(), 120, 90)
    valid("grey16.png", png_bytes((photo(3, 100, 80)[..., 0].astype(np.uint16) * 257)), 100, 80)
    rgba = np.dstack([cv2.cvtColor(photo(4, 90, 90), cv2.COLOR_RGB2BGR), np.full((90, 90), 128, np.uint8)])
    rgba[:30, :30, 3] = 0
    valid("alpha.png", png_bytes(rgba), 90, 90)
    pal = io.BytesIO()
    Image.fromarray(photo(5, 80, 60)).convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(
        pal, "PNG", transparency=0)
    valid("palette.png", pal.getvalue(), 80, 60)
    gif = io.BytesIO()
    frames = [Image.fromarray(photo(6 + i, 64, 48)).convert("P") for i in range(3)]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    valid("animated.gif", gif.getvalue(), 64, 48)
    webp = io.BytesIO()
    Image.fromarray(photo(9, 100, 70)).save(webp, "WEBP", quality=80)
    valid("photo.webp", webp.getvalue(), 100, 70)
    tif = io.BytesIO()
    Image.fromarray(photo(10, 70, 50)).save(tif, "TIFF")
    valid("photo.tiff", tif.getvalue(), 70, 50)
    bmp = io.BytesIO()
    Image.fromarray(photo(11, 60, 40)).save(bmp, "BMP")
    valid("photo.bmp", bmp.getvalue(), 60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6                         # rotate 90 degrees clockwise when displayed
    valid("exif_rotated.jpg", jpeg_bytes(photo(12, 200, 100), exif=exif.tobytes()), 100, 200)
    valid("one_pixel.png", png_bytes(np.full((1, 1, 3), 200, np.uint8)), 1, 1)
    valid("panorama.png", png_bytes(cv2.cvtColor(photo(13, 3000, 4), cv2.COLOR_RGB2BGR)), 3000, 4)
    valid("tower.png", png_bytes(cv2.cvtColor(photo(14, 4, 2000), cv2.COLOR_RGB2BGR)), 4, 2000)
    valid("UPPER CASE.JPG", jpeg_bytes(photo(15)), 160, 120)
    valid("jpeg_named.png", jpeg_bytes(photo(16)), 160, 120)
    valid("café_日本語_ñ.jpg", jpeg_bytes(photo(17)), 160, 120)
    valid("it's a \"quoted\" name; DROP TABLE images;--.jpg", jpeg_bytes(photo(18)), 160, 120)
    valid(("long_" * 48) + ".jpg", jpeg_bytes(photo(19)), 160, 120)    # 245 bytes, near the 255 limit
    valid("new\nline.jpg", jpeg_bytes(photo(20)), 160, 120)
    valid("nested/deeper/still deeper/nested.jpg", jpeg_bytes(photo(21)), 160, 120)
    valid("folder.jpg/inside.jpg", jpeg_bytes(photo(22)), 160, 120)     # a directory named like an image
    target = valid("link_target.png", png_bytes(cv2.cvtColor(photo(23), cv2.COLOR_RGB2BGR)), 160, 120)
    os.symlink(target, root / "good_link.jpg")
    c.valid[os.path.abspath(root / "good_link.jpg")] = {"width": 160, "height": 120}

    # --- broken ones, each with the words its reason must contain
    broken("empty.jpg", b"", "empty")
    broken("notes.jpg", b"This is a text file, not a photo.\n" * 20, "text")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("a.txt", "hello" * 100)
    broken("archive.jpg", zbuf.getvalue(), "zip")
    good_png = png_bytes(cv2.cvtColor(photo(30, 200, 150), cv2.COLOR_RGB2BGR))
    broken("truncated.png", good_png[: len(good_png) // 2], "corrupt")
    bad_crc = bytearray(good_png)
    bad_crc[33 + 8 + 20] ^= 0xFF            # a byte inside the first IDAT's data: its CRC no longer matches
    broken("bad_crc.png", bytes(bad_crc), "corrupt")
    good_jpg = jpeg_bytes(photo(31, 200, 150))
    broken("header_only.jpg", good_jpg[:200], "corrupt")
    garbage = bytearray(good_jpg[:2]) + bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))
    garbage[2:4] = b"\xff\xe0"
    broken("corrupt.jpg", bytes(garbage), "corrupt")
    broken("bomb.png", bomb_png(), "megapixel")
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + b"\0" * 64
    broken("phone.heic", heic, "HEIC")
    broken("phone_named.jpg", heic, "HEIC")
    broken("drawing.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
                          b'height="10"><rect width="10" height="10"/></svg>\n', "SVG")
    os.symlink(root / "does-not-exist.jpg", root / "dangling.jpg")
    c.broken[os.path.abspath(root / "dangling.jpg")] = "broken symbolic link"
    os.symlink(root / "loop_b.jpg", root / "loop_a.jpg")
    os.symlink(root / "loop_a.jpg", root / "loop_b.jpg")
    c.broken[os.path.abspath(root / "loop_a.jpg")] = "loop"
    c.broken[os.path.abspath(root / "loop_b.jpg")] = "loop"
    (root / "nested" / "loop").symlink_to(root)          # a folder link back up: a loop
    c.broken[os.path.abspath(root / "nested" / "loop")] = "loop"
    bad_name = os.fsdecode(os.fsencode(str(root)) + b"/latin1_caf\xe9.jpg")
    with open(os.fsencode(bad_name), "wb") as fh:
        fh.write(jpeg_bytes(photo(32)))
    c.broken[os.fsencode(bad_name).decode("utf-8", "backslashreplace")] = "UTF-8"
    # files that are not images by name are ignored, not reported
    (root / "readme.txt").write_text("not an image")
    (root / "products.json").write_text("{}")
    return c
