"""Product feed parsing: Google Merchant Center (GMC) feeds and Shopify product exports.

``read_feed(path)`` streams a CSV/TSV feed row by row (a huge file is never held in memory) and
yields one :class:`FeedItem` per product: the product's data, its local image files (resolved,
confined to the feed's folder) and its remote image links (kept as metadata; the app is offline).
Rows that cannot be used completely are kept as far as possible and described by one-line
``problems``; only a file that cannot be read as a feed at all raises :class:`FeedError`.

Detection, in order: encoding (BOM, then UTF-8 with a per-byte Windows-1252 fallback, or
Windows-1252 when the first 64 KiB are not UTF-8), delimiter (``, ; TAB |``: the one under which
the header names the most known columns; ``csv.Sniffer`` breaks ties), format (a ``Handle``
column means Shopify). Column names are matched case-insensitively, ignoring a ``g:`` prefix and
punctuation (``image_link`` = ``Image Link`` = ``g:image_link``). See docs/feeds.md.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import html.parser
import io
import os
import re
import sys
import unicodedata
from array import array
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .errors import FeedError

__all__ = ["Product", "FeedItem", "FeedReader", "is_feed", "feed_format", "read_feed", "parse_price",
           "html_to_text", "FEED_SUFFIXES"]

FEED_SUFFIXES = (".csv", ".tsv", ".txt")
SAMPLE_BYTES = 64 * 1024          # read to detect encoding, delimiter and header
MAX_SKIPPED_KEPT = 1000           # FeedReader.skipped keeps this many lines, then one summary line
LONG_RECORD_LINES = 200           # a record spanning more lines than this gets a warning


@dataclass
class Product:
    id: str                 # GMC id; Shopify: Handle (variant SKUs in extra["skus"], first SKU also in `sku`)
    title: str | None = None
    brand: str | None = None
    price: float | None = None
    currency: str | None = None
    category: str | None = None
    url: str | None = None
    description: str | None = None
    sku: str | None = None
    gtin: str | None = None
    group_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)   # every other non-empty column, original names


@dataclass
class FeedItem:
    product: Product
    images: list[Path]           # local image files, resolved absolute, in feed order, de-duplicated
    remote_images: list[str]     # http(s) links: kept as metadata, not fetched (the app is offline)
    problems: list[str]          # one-line problems for this item ("line 12: image path ... refused")
    line: int                    # line number in the file where the item starts
    # True when this id was already emitted earlier in the same feed (duplicate GMC id, or Shopify
    # rows of a Handle that are not next to its first rows). Fields that are None were not given by
    # these rows: a consumer should merge (keep earlier values, add images), not blank them.
    repeated: bool = False


# ---------------------------------------------------------------------------------------- columns
def _key(name: str) -> str:
    """Normalised column name: 'g:Image_Link ' -> 'image link', 'Body (HTML)' -> 'body html'."""
    s = name.strip().lstrip("\ufeff").strip().lower()
    if s.startswith("g:"):
        s = s[2:]
    return " ".join(re.sub(r"[\W_]+", " ", s).split())


# role -> accepted column names (normalised), in order of preference
_GMC_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "item id", "offer id", "product id"),
    "title": ("title", "name", "product name"),
    "brand": ("brand",),
    "price": ("price",),
    "currency": ("currency", "price currency"),
    "product_type": ("product type",),
    "google_category": ("google product category", "product category", "category"),
    "url": ("link", "url", "product url", "product link"),
    "description": ("description",),
    "sku": ("sku",),
    "gtin": ("gtin", "ean", "upc"),
    "group_id": ("item group id", "group id"),
}
_GMC_IMAGES = ("image link", "image url", "image", "main image url")
_GMC_MORE_IMAGES = ("additional image link", "additional image links", "additional image url",
                    "additional image urls", "additional images")
_GMC_OTHER = ("sale price", "availability", "condition", "mpn", "color", "size", "gender", "age group",
              "mobile link", "shipping", "material", "pattern", "identifier exists", "adult")

_SHOPIFY_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("handle",),
    "title": ("title",),
    "brand": ("vendor",),
    "price": ("variant price",),
    "currency": ("currency", "variant currency", "price currency"),
    "type": ("type",),
    "product_category": ("product category", "google shopping google product category"),
    "description": ("body html", "body", "description"),
    "sku": ("variant sku",),
    "gtin": ("variant barcode",),
}
_SHOPIFY_IMAGES = ("image src", "variant image")
_SHOPIFY_CONSUMED = ("image position",)          # meaningless once images are in order
_SHOPIFY_OTHER = ("tags", "published", "option1 name", "option1 value", "variant grams",
                  "variant inventory qty", "image alt text", "status", "gift card", "seo title")

_KNOWN_GMC = frozenset(k for names in _GMC_FIELDS.values() for k in names) | frozenset(
    _GMC_IMAGES + _GMC_MORE_IMAGES + _GMC_OTHER)
_KNOWN_SHOPIFY = frozenset(k for names in _SHOPIFY_FIELDS.values() for k in names) | frozenset(
    _SHOPIFY_IMAGES + _SHOPIFY_CONSUMED + _SHOPIFY_OTHER)


def _classify(header: list[str]) -> tuple[str | None, list[str]]:
    """(format, missing required columns) for a header; format None when it is no feed at all."""
    keys = {_key(h) for h in header}
    if "handle" in keys and len(keys & _KNOWN_SHOPIFY) >= 2:
        return "shopify", ([] if keys & set(_SHOPIFY_IMAGES) else ["Image Src"])
    has_id = bool(keys & set(_GMC_FIELDS["id"]))
    has_image = bool(keys & set(_GMC_IMAGES))
    if (has_id or has_image) and len(keys & _KNOWN_GMC) >= 2:
        missing = ([] if has_id else ["id"]) + ([] if has_image else ["image_link"])
        return "gmc", missing
    return None, []


def _score(header: list[str]) -> int:
    keys = {_key(h) for h in header}
    return len(keys & (_KNOWN_GMC | _KNOWN_SHOPIFY))


_FORMAT_NAMES = {"gmc": "Google Merchant Center feed", "shopify": "Shopify product export"}


# --------------------------------------------------------------------------------------- encoding
_escaped = 0   # bytes runs escaped by the handler below, process-wide; only compared for change


def _escape_undecodable(exc: UnicodeError):
    """Decode-error handler: keep each bad byte as a lone surrogate (like 'surrogateescape') and
    count the event, so the reader knows to repair rows (see ``_repair``) only when needed."""
    global _escaped
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _escaped += 1
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start:exc.end]), exc.end


codecs.register_error("lookalike.escape", _escape_undecodable)

_SURROGATES = re.compile("[\udc00-\udcff]+")
# Windows-1252 byte -> character; its 5 undefined bytes map to the same code points as Latin-1
_CP1252 = [bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(256)]


def _repair(text: str, utf8: bool) -> str:
    """Undecodable bytes escaped by the handler: Windows-1252 characters in a UTF-8 file (a file
    mixing both is common: an export edited in a legacy tool), U+FFFD otherwise."""
    if utf8:
        return _SURROGATES.sub(lambda m: "".join(_CP1252[ord(c) - 0xDC00] for c in m.group()), text)
    return _SURROGATES.sub("\ufffd", text)


def _detect_encoding(sample: bytes, complete: bool) -> str:
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = sample[:4096]
    if len(head) >= 4 and b"\x00" in head:
        # UTF-16 without a BOM: the header starts with ASCII letters, so every other byte is 0
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if head[1] == head[3] == 0 and head[0] and odd > len(head) // 4 and even < odd // 8:
            return "utf-16-le"
        if head[0] == head[2] == 0 and head[1] and even > len(head) // 4 and odd < even // 8:
            return "utf-16-be"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8-sig"


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8" or codecs.lookup(encoding).name == "utf-8-sig"


# ---------------------------------------------------------------------------------------- dialect
_DELIMITERS = ",;\t|"


def _first_record(text: str, delimiter: str) -> list[str]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            if any(c.strip() for c in row):
                return row
    except csv.Error:
        pass
    return []


def _choose_dialect(text: str) -> tuple[str, bool]:
    """(delimiter, skipinitialspace): the delimiter under which the header names the most known
    columns; the sniffer's guess, then the widest header, break ties."""
    sniffed, skip_space = None, False
    try:
        d = csv.Sniffer().sniff(text[:16384], delimiters=_DELIMITERS)
        sniffed, skip_space = d.delimiter, bool(d.skipinitialspace)
    except csv.Error:
        pass
    best, best_score = ",", None
    for delim in _DELIMITERS:
        header = _first_record(text, delim)
        score = (_score(header), delim == sniffed, len(header))
        if best_score is None or score > best_score:
            best, best_score = delim, score
    return best, skip_space and best == sniffed


# ------------------------------------------------------------------------------------------ price
_CURRENCY_SYMBOLS = {
    "$": "USD", "us$": "USD", "usd$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "￥": "JPY", "円": "JPY",
    "元": "CNY", "rmb": "CNY", "₹": "INR", "rs": "INR", "rs.": "INR", "₩": "KRW", "₽": "RUB", "₺": "TRY",
    "₪": "ILS", "₫": "VND", "₱": "PHP", "₦": "NGN", "₴": "UAH", "฿": "THB", "₡": "CRC", "₲": "PYG",
    "₸": "KZT", "₼": "AZN", "₾": "GEL", "zł": "PLN", "kč": "CZK", "ft": "HUF", "lei": "RON",
    "r$": "BRL", "c$": "CAD", "ca$": "CAD", "cad$": "CAD", "a$": "AUD", "au$": "AUD", "nz$": "NZD",
    "hk$": "HKD", "s$": "SGD", "mx$": "MXN", "nt$": "TWD", "fr.": "CHF", "sfr.": "CHF", "r": "ZAR",
}
_NUMBER = re.compile(r"\d[\d.,'\u00a0\u202f\u2009 ]*")
_THOUSANDS_SPACES = str.maketrans("", "", "'\u00a0\u202f\u2009 ")


def _number(raw: str) -> float | None:
    s = raw.strip().translate(_THOUSANDS_SPACES)
    dots, commas = s.count("."), s.count(",")
    if dots and commas:                       # the last one is the decimal mark
        decimal = "." if s.rfind(".") > s.rfind(",") else ","
    elif dots == 1 or commas == 1:
        # one separator followed by exactly three digits is a thousands separator ("1,234",
        # "1.234"), except after a lone 0 ("0.125"); otherwise it is the decimal mark
        sep = "." if dots else ","
        whole, _, frac = s.partition(sep)
        decimal = None if len(frac) == 3 and whole.strip("0") else sep
    else:                                     # none, or several of one kind: thousands only
        decimal = None
    whole, _, frac = s.rpartition(decimal) if decimal else (s, "", "")
    if decimal and not whole:
        return None
    groups = re.split(r"[.,]", whole)
    if len(groups) > 1 and (not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:])
                            or len({c for c in whole if c in ".,"}) > 1):
        return None
    s = "".join(groups) + ("." + frac if frac else "")
    if not re.fullmatch(r"\d+(\.\d+)?", s):
        return None
    return float(s)


_AMBIGUOUS_CURRENCY = frozenset({"kr", "kr.", ",-", ".-"})   # a currency, but which one is unclear


def _currency(token: str) -> str | None:
    """ISO code for a currency token ('usd', '€', 'R$'); '' when it is a known ambiguous one."""
    low = token.lower()
    if low in _CURRENCY_SYMBOLS:
        return _CURRENCY_SYMBOLS[low]
    if low in _AMBIGUOUS_CURRENCY:
        return ""
    if re.fullmatch(r"[A-Za-z]{3}", token):
        return token.upper()
    return None


_SIMPLE_PRICE = re.compile(r"(\d{1,15}(?:\.\d{1,2})?)(?: ?([A-Z]{3}))?")


def parse_price(text) -> tuple[float | None, str | None]:
    """'34.00 USD', 'USD 34.00', '$34', '34,00 €', '1.234,56 EUR', '1,234.56', '€ 12', '12.5'
    -> (value, ISO 4217 code or None). Empty or not understood -> (None, None).

    A separator followed by exactly three digits is read as a thousands separator ("1,234" is
    1234); with both '.' and ',' the last one is the decimal mark. An ISO code written next to
    the number wins over a symbol ("$12 CAD" is CAD)."""
    if text is None:
        return None, None
    s = str(text).strip()
    m = _SIMPLE_PRICE.fullmatch(s)              # "34.00 USD", "12.5": most feeds, fast
    if m:
        code = m.group(2)
        return float(m.group(1)), (_CURRENCY_SYMBOLS.get(code.lower(), code) if code else None)
    return _parse_price(s)


@lru_cache(maxsize=4096)
def _parse_price(s: str) -> tuple[float | None, str | None]:
    s = re.sub(r"(?<=\d)[.,]-(?=\s|$)", "", s)          # "12,-" / "12.-" (whole amounts)
    m = _NUMBER.search(s)
    if not m:
        return None, None
    value = _number(m.group())
    if value is None:
        return None, None
    rest = (s[:m.start()] + " " + s[m.end():]).split()
    codes, symbols = set(), set()
    for tok in rest:
        cur = _currency(tok)
        if cur is None:                  # words, signs ("-12"), a second number: not a price
            return None, None
        if cur:
            (codes if re.fullmatch(r"[A-Za-z]{3}", tok) and tok.lower() not in _CURRENCY_SYMBOLS
             else symbols).add(cur)
    if len(codes) > 1 or (not codes and len(symbols) > 1):
        return None, None
    currency = next(iter(codes or symbols), None)
    return value, currency


# ------------------------------------------------------------------------------------------- html
class _TextExtractor(html.parser.HTMLParser):
    _BLOCK = frozenset("p br div li ul ol tr td th table h1 h2 h3 h4 h5 h6 section article "
                       "blockquote pre hr dt dd header footer".split())
    _HIDDEN = frozenset("script style template noscript head".split())

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag, attrs):
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


_TEXT_ROLES = frozenset({"title", "brand", "description"})


_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def unescape_entities(text: str) -> str:
    """Decode the HTML character references feeds carry in plain-text cells ("HeatTech&trade;",
    "Tom &amp; Jerry", "&#174;"), and only complete ones: a reference must end with ";", so text
    that merely contains an ampersand ("AT&T", "R&D", "&gt" written literally) is kept as it is
    (``html.unescape`` would also decode HTML's legacy forms without ";", turning "&gt" into ">")."""
    if "&" not in text:
        return text
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def html_to_text(markup: str) -> str:
    """Text of an HTML fragment: entities decoded, scripts/styles dropped, one line per block."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


# ----------------------------------------------------------------------------------------- images
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _quote(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


class _ImageRefs:
    """Turns image cells into local paths (confined to the feed's folder) or remote links."""

    def __init__(self, folder: Path, allow_outside: bool):
        self.folder = os.path.realpath(folder)
        self._prefix = self.folder.rstrip(os.sep) + os.sep
        self.allow_outside = allow_outside
        # folder as written -> (real path + separator, as a Path, folded names of its symlinks)
        self._dirs: dict[str, tuple[str, Path, frozenset[str] | None]] = {}

    def _real_dir(self, head: str) -> tuple[str, Path, frozenset[str] | None]:
        """(real path of the folder ``head`` (as written) with a trailing separator, the same as a
        Path, folded names of the symlinks in it or None when it cannot be listed)."""
        entry = self._dirs.get(head)
        if entry is None:
            if len(self._dirs) >= 4096:
                self._dirs.clear()
            real = os.path.realpath(os.path.join(self.folder, head))
            links: frozenset[str] | None
            try:
                with os.scandir(real) as it:
                    links = frozenset(_fold(e.name) for e in it if e.is_symlink())
            except (FileNotFoundError, NotADirectoryError):
                links = frozenset()                 # nothing there, so no symlink either
            except OSError:
                links = None                        # cannot list it: check each file
            entry = self._dirs[head] = (real.rstrip(os.sep) + os.sep, Path(real), links)
        return entry

    def _realpath(self, path: str) -> tuple[str, Path]:
        """os.path.realpath(join(feed folder, path)), fast: realpath(dir/name) is realpath(dir)/name
        unless name is a symlink, so each folder is resolved and listed once (the listing says
        which names are symlinks) instead of an lstat per path component per image."""
        head, sep, tail = path.rpartition(os.sep)
        if tail in ("", ".", ".."):
            real = os.path.realpath(os.path.join(self.folder, path))
            return real, Path(real)
        real_head, head_path, links = self._real_dir(head if head or not sep else os.sep)
        full = real_head + tail
        # names are compared case- and normalisation-folded: on macOS/Windows 'A.jpg' opens 'a.jpg'
        if os.path.islink(full) if links is None else bool(links) and _fold(tail) in links:
            real = os.path.realpath(full)
            return real, Path(real)
        return full, head_path / tail

    def resolve(self, ref: str, local: dict[str, Path], remote: list[str], problems: list[str], where: str):
        """Add ``ref`` (a non-empty, stripped cell value) to local or remote, or a problem."""
        if ":" in ref:
            lower = ref[:8].lower()
            if lower.startswith(("http://", "https://")):
                remote.append(ref)
                return
            if lower.startswith("file:"):
                parts = urlsplit(ref)
                if parts.netloc not in ("", "localhost"):
                    problems.append(f"{where}: image link {_quote(ref)} names another computer; skipped")
                    return
                path = url2pathname(parts.path)
            elif _WINDOWS_DRIVE.match(ref):
                if os.name != "nt":
                    problems.append(f"{where}: image path {_quote(ref)} is a Windows path; skipped")
                    return
                path = ref
            elif m := _SCHEME.match(ref):
                problems.append(f"{where}: image link {_quote(ref)} ({m.group(1)}:) is not supported; skipped")
                return
            else:
                path = ref
        else:
            path = ref
        if os.sep == "/":
            if "\\" in path:
                path = path.replace("\\", "/")   # a relative path written on Windows
        elif "/" in path:
            path = path.replace("/", os.sep)
        if "\x00" in path:
            problems.append(f"{where}: image path {_quote(ref)} contains a NUL character; skipped")
            return
        real, real_path = self._realpath(path)
        if not (self.allow_outside or real.startswith(self._prefix)):
            problems.append(f"{where}: image path {_quote(ref)} points outside the feed folder; refused")
            return
        local.setdefault(real, real_path)


def _split_list(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(",") if part.strip()]


# ----------------------------------------------------------------------------------- file access
def _open_binary(path: Path):
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise FeedError(f"{path}: is a folder, not a feed file") from None
    except FileNotFoundError:
        raise FeedError(f"{path}: file not found") from None
    except OSError as exc:
        raise FeedError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _sniff(path: Path, encoding: str | None) -> tuple[str, tuple[str, bool], list[str]]:
    """(encoding, (delimiter, skipinitialspace), header) of a feed file, from its first SAMPLE_BYTES."""
    with _open_binary(path) as fh:
        try:
            sample = fh.read(SAMPLE_BYTES + 1)
        except OSError as exc:
            raise FeedError(f"{path}: cannot read ({exc.strerror or exc})") from None
    complete = len(sample) <= SAMPLE_BYTES
    sample = sample[:SAMPLE_BYTES]
    if encoding is None:
        encoding = _detect_encoding(sample, complete)
    else:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise FeedError(f"{path}: unknown encoding {encoding!r}") from None
    try:
        text = codecs.getincrementaldecoder(encoding)(errors="lookalike.escape").decode(sample, final=complete)
    except UnicodeError as exc:                     # e.g. a codec without incremental support
        raise FeedError(f"{path}: cannot decode as {encoding} ({exc})") from None
    text = _repair(text, _is_utf8(encoding))
    if not text.strip("\ufeff \t\r\n"):
        raise FeedError(f"{path}: empty file (no header row)")
    delimiter, skip_space = _choose_dialect(text)
    header = _first_record(text, delimiter)
    return encoding, (delimiter, skip_space), header


def is_feed(path) -> bool:
    """True for a .csv/.tsv/.txt file whose header looks like a GMC feed or a Shopify export
    (even when a required column is missing: read_feed then says which)."""
    p = Path(path)
    try:
        if p.suffix.lower() not in FEED_SUFFIXES or not p.is_file():
            return False
        _, _, header = _sniff(p, None)
    except (OSError, FeedError):
        return False
    return _classify(header)[0] is not None


def feed_format(path) -> str:
    """'gmc' or 'shopify'; FeedError (one line naming the file) when the file is neither."""
    p = Path(path)
    _, _, header = _sniff(p, None)
    fmt, _ = _classify(header)
    if fmt is None:
        raise FeedError(f"{p}: not a product feed (no Google Merchant Center columns id/image_link "
                        f"nor Shopify columns Handle/Image Src in the header)")
    return fmt


def read_feed(path, *, allow_outside: bool = False, encoding: str | None = None) -> "FeedReader":
    """Stream the products of a GMC feed or a Shopify export. Raises FeedError at once when the
    file cannot be read or lacks required columns; the returned reader then yields FeedItems.

    ``allow_outside`` permits image paths outside the feed's folder (absolute, ``..``, symlinks).
    ``encoding`` overrides detection; the file must then decode strictly (FeedError otherwise)."""
    return FeedReader(Path(path), allow_outside=allow_outside, encoding=encoding)


# ------------------------------------------------------------------------------------- the reader
class _SeenIds:
    """The ids emitted so far, as 64-bit hashes in an open-addressing table (an array of 8-byte
    slots, at most half full): about 16 bytes a product whatever the id's length, where a set of
    the ids would take 100 or more. A false "seen" needs two ids with the same 64-bit hash."""

    def __init__(self, capacity: int = 1024):
        self._slots = array("Q", bytes(8 * capacity))   # 0 = empty
        self._mask = capacity - 1
        self._count = 0

    @staticmethod
    def _hash(key: str) -> int:
        if sys.hash_info.width >= 64:
            return (hash(key) & 0xFFFF_FFFF_FFFF_FFFF) or 1
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1

    def _insert(self, h: int) -> bool:
        slots, mask = self._slots, self._mask
        i = h & mask
        while True:
            v = slots[i]
            if v == h:
                return True
            if v == 0:
                slots[i] = h
                self._count += 1
                return False
            i = (i + 1) & mask

    def add(self, key: str) -> bool:
        """Remember ``key``; True when it was already there."""
        if self._count * 2 >= len(self._slots):
            old = self._slots
            self._slots = array("Q", bytes(16 * len(old)))
            self._mask = len(self._slots) - 1
            self._count = 0
            for h in old:
                if h:
                    self._insert(h)
        return self._insert(self._hash(key))


class FeedReader:
    """Iterator of FeedItem over one feed file (what read_feed returns).

    Attributes: ``path``, ``format`` ('gmc' | 'shopify'), ``encoding``, ``delimiter``, ``columns``
    (the header as written, once iteration has started), ``rows`` (data rows read so far) and
    ``skipped``: one-line problems of rows that produced no item (no id, unreadable record),
    complete once iteration has ended. Use it as a context manager (or exhaust it) to close the
    file early."""

    def __init__(self, path: Path, *, allow_outside: bool = False, encoding: str | None = None):
        self.path = path
        self.encoding, (self.delimiter, self._skip_space), header = _sniff(path, encoding)
        self._strict = encoding is not None
        fmt, missing = _classify(header)
        if fmt is None:
            raise FeedError(f"{path}: not a product feed (no Google Merchant Center columns id/image_link "
                            f"nor Shopify columns Handle/Image Src in the header)")
        if missing:
            raise FeedError(f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)} ({_FORMAT_NAMES[fmt]})")
        self.format = fmt
        self.columns: list[str] = []
        self.rows = 0
        self.skipped: list[str] = []
        self._skipped_count = 0
        self._images = _ImageRefs(path.parent, allow_outside)
        self._utf8 = _is_utf8(self.encoding)
        self._gen = self._items()

    # iterator protocol ---------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> FeedItem:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # records -------------------------------------------------------------------------------
    def _skip(self, message: str) -> None:
        self._skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED_KEPT:
            self.skipped.append(message)

    def _records(self) -> Iterator[tuple[int, list[str], list[str]]]:
        """(first line, cells, problems) per non-blank data record, cells padded or cut to the
        header's width. Reading the header sets self.columns."""
        raw = _open_binary(self.path)
        errors = "strict" if self._strict else "lookalike.escape"
        text = io.TextIOWrapper(raw, encoding=self.encoding, errors=errors, newline="")
        reader = csv.reader(text, delimiter=self.delimiter, quotechar='"', doublequote=True,
                            skipinitialspace=self._skip_space, strict=False)
        escaped_before = _escaped
        repairing = fallback_reported = False
        width = 0
        try:
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    msg = str(exc)
                    if "field larger than field limit" in msg:
                        msg = (f"a field is longer than {csv.field_size_limit()} characters "
                               f"(an unbalanced quote?)")
                    where = f"line {start}" if reader.line_num <= start else f"lines {start}-{reader.line_num}"
                    self._skip(f"{where}: {msg}; skipped")
                    continue
                except UnicodeDecodeError as exc:
                    raise FeedError(f"{self.path}: not valid {self.encoding} text after line "
                                    f"{reader.line_num} ({exc.reason})") from None
                except OSError as exc:
                    raise FeedError(f"{self.path}: read failed after line {reader.line_num} "
                                    f"({exc.strerror or exc})") from None
                problems: list[str] = []
                if not repairing and _escaped != escaped_before:
                    repairing = True
                if repairing and _SURROGATES.search("".join(row)):
                    row = [_repair(c, self._utf8) for c in row]
                    if not fallback_reported:
                        fallback_reported = True
                        problems.append(
                            f"line {start}: text is not valid {'UTF-8' if self._utf8 else self.encoding} "
                            + ("(here and maybe further on); those bytes were read as Windows-1252"
                               if self._utf8 else "(here and maybe further on); replaced by \ufffd"))
                if not "".join(row).strip():
                    continue                                    # blank line / only delimiters
                if not width:
                    self.columns = [c.strip().lstrip("\ufeff").strip() for c in row]
                    width = len(row)
                    continue
                if reader.line_num - start >= LONG_RECORD_LINES:
                    problems.append(f"line {start}: this record spans lines {start}-{reader.line_num}; "
                                    f"check for an unbalanced quote")
                n = len(row)
                if n != width:
                    if n < width:
                        problems.append(f"line {start}: {n} fields but the header has {width}; "
                                        f"the missing ones are read as empty")
                        row += [""] * (width - n)
                    else:
                        if "".join(row[width:]).strip():
                            problems.append(f"line {start}: {n} fields but the header has {width}; "
                                            f"the extra values are ignored")
                        del row[width:]
                self.rows += 1
                yield start, row, problems
        finally:
            text.close()

    def _items(self) -> Iterator[FeedItem]:
        records = self._records()
        try:
            first = next(records, None)          # reading it sets self.columns from the header
            if first is not None:
                plan = _Plan(self.columns, self.format)
                rest = _chain_one(first, records)
                yield from (self._gmc(rest, plan) if self.format == "gmc" else self._shopify(rest, plan))
        finally:
            records.close()
            if self._skipped_count > len(self.skipped):
                self.skipped.append(f"... and {self._skipped_count - len(self.skipped)} more rows skipped")

    def _item(self, product: Product, refs: list[str], problems: list[str], line: int) -> FeedItem:
        local: dict[str, Path] = {}
        remote: list[str] = []
        resolve = self._images.resolve
        where = f"line {line}"
        for ref in refs:
            resolve(ref, local, remote, problems, where)
        return FeedItem(product=product, images=list(local.values()),
                        remote_images=list(dict.fromkeys(remote)), problems=problems, line=line)

    def _price(self, raw: str, line: int, column: str, problems: list[str], extra: dict[str, str]):
        value, currency = parse_price(raw)
        if value is None:
            problems.append(f"line {line}: {column} {_quote(raw)} not understood; kept as text")
            extra[column] = raw
        return value, currency

    # GMC -------------------------------------------------------------------------------------
    def _gmc(self, records, plan: "_Plan") -> Iterator[FeedItem]:
        seen = _SeenIds()
        idx = plan.index
        i_id = idx["id"]
        simple = [(role, idx[role]) for role in ("title", "brand", "url", "description", "sku", "gtin",
                                                  "group_id") if role in idx]
        i_type, i_gcat = idx.get("product_type"), idx.get("google_category")
        i_price, i_cur = idx.get("price"), idx.get("currency")
        price_name = plan.header[i_price] if i_price is not None else "price"
        gcat_label = plan.label.get(i_gcat)
        single = [i for i in plan.images if plan.keys[i] not in _GMC_MORE_IMAGES]
        lists = [i for i in plan.images if plan.keys[i] in _GMC_MORE_IMAGES]
        extra_cols = plan.extra
        for line, row, problems in records:
            pid = row[i_id].strip()
            if not pid:
                self._skip(f"line {line}: no {plan.header[i_id]}; row skipped")
                continue
            product = Product(id=pid)
            for role, i in simple:
                value = row[i].strip()
                if value:
                    if role in _TEXT_ROLES:     # feeds often carry HTML entities ("HeatTech&trade;")
                        value = unescape_entities(value)
                    setattr(product, role, value)
            extra = product.extra
            for i, label in extra_cols:
                value = row[i].strip()
                if value:
                    extra[label] = value
            category = row[i_type].strip() if i_type is not None else ""
            gcat = row[i_gcat].strip() if i_gcat is not None else ""
            if category:
                product.category = category
                if gcat:                                # both given: the other one is kept too
                    extra[gcat_label] = gcat
            elif gcat:
                product.category = gcat
            if i_price is not None and (raw := row[i_price].strip()):
                product.price, product.currency = self._price(raw, line, price_name, problems, extra)
            if i_cur is not None and (cur := row[i_cur].strip()):
                if product.currency is None:
                    product.currency = _currency(cur) or None
                if product.currency is None or product.currency != (_currency(cur) or None):
                    extra[plan.header[i_cur]] = cur     # not a currency, or not the price's one
            refs = [c for i in single if (c := row[i].strip())]
            for i in lists:
                if row[i].strip():
                    refs.extend(_split_list(row[i]))
            item = self._item(product, refs, problems, line)
            if seen.add(pid):
                item.repeated = True
                item.problems.insert(0, f"line {line}: id {_quote(pid)} appears again in this feed; "
                                        f"read again (later rows update the product)")
            yield item

    # Shopify ---------------------------------------------------------------------------------
    def _shopify(self, records, plan: "_Plan") -> Iterator[FeedItem]:
        seen = _SeenIds()
        i_handle = plan.index["id"]
        group: _ShopifyGroup | None = None
        for line, row, problems in records:
            handle = row[i_handle].strip()
            if not handle:
                self._skip(f"line {line}: no {plan.header[i_handle]}; row skipped")
                continue
            if group is not None and handle == group.handle:
                group.add(line, row, problems)
                continue
            if group is not None:
                yield self._shopify_item(group, plan)
            group = _ShopifyGroup(handle, line, row, problems, repeated=seen.add(handle))
        if group is not None:
            yield self._shopify_item(group, plan)

    def _shopify_item(self, g: "_ShopifyGroup", plan: "_Plan") -> FeedItem:
        first, idx, problems = g.first, plan.index, g.problems

        def cell(row, role):
            i = idx.get(role)
            return row[i].strip() if i is not None else ""

        p = Product(id=g.handle)
        p.title = unescape_entities(cell(first, "title")) or None
        p.brand = unescape_entities(cell(first, "brand")) or None
        body = cell(first, "description")
        p.description = (html_to_text(body) or None) if body else None
        for i, label in plan.extra:
            value = first[i].strip()
            if value:
                p.extra[label] = value
        kind, category = cell(first, "type"), cell(first, "product_category")
        p.category = kind or category or None
        if kind and category:
            p.extra[plan.label[idx["product_category"]]] = category
        skus, prices, gtins, currency = [], [], [], None
        for line, row in g.rows:
            if sku := cell(row, "sku"):
                skus.append(sku)
            if gtin := cell(row, "gtin"):
                gtins.append(gtin)
            if cur := cell(row, "currency"):
                currency = currency or _currency(cur) or None
            if raw := cell(row, "price"):
                value, cur = parse_price(raw)
                if value is None:
                    problems.append(f"line {line}: {plan.header[idx['price']]} {_quote(raw)} not understood; "
                                    f"ignored")
                else:
                    prices.append(value)
                    currency = currency or cur
        p.sku = skus[0] if skus else None
        p.gtin = gtins[0] if gtins else None
        p.price = prices[0] if prices else None
        p.currency = currency
        if skus:
            p.extra["skus"] = ", ".join(dict.fromkeys(skus))
        if len(set(prices)) > 1:
            p.extra["variant prices"] = ", ".join(f"{v:g}" for v in dict.fromkeys(prices))
        refs = [c for _, row in g.rows for i in plan.images if (c := row[i].strip())]
        item = self._item(p, refs, problems, g.line)
        if g.repeated:
            item.repeated = True
            item.problems.insert(0, f"line {g.line}: Handle {_quote(g.handle)} appears again after other "
                                    f"products; these rows are read as another item with the same id")
        return item


def _chain_one(first, rest):
    yield first
    yield from rest


class _ShopifyGroup:
    """Consecutive rows of one Handle: the first holds the product, the others variants/images."""
    __slots__ = ("handle", "line", "first", "rows", "problems", "repeated")

    def __init__(self, handle: str, line: int, row: list[str], problems: list[str], repeated: bool):
        self.handle, self.line, self.first, self.rows = handle, line, row, [(line, row)]
        self.problems, self.repeated = list(problems), repeated

    def add(self, line: int, row: list[str], problems: list[str]) -> None:
        self.rows.append((line, row))
        self.problems.extend(problems)


class _Plan:
    """Column plan of one header: which column holds each role (first accepted name wins), the
    image columns, and the columns copied to Product.extra (under unique original names)."""

    def __init__(self, header: list[str], fmt: str):
        fields = _GMC_FIELDS if fmt == "gmc" else _SHOPIFY_FIELDS
        images = _GMC_IMAGES + _GMC_MORE_IMAGES if fmt == "gmc" else _SHOPIFY_IMAGES
        dropped = () if fmt == "gmc" else _SHOPIFY_CONSUMED
        self.header = header
        self.keys = [_key(h) for h in header]
        first: dict[str, int] = {}
        for i, k in enumerate(self.keys):
            first.setdefault(k, i)
        self.index: dict[str, int] = {}
        for role, names in fields.items():
            for name in names:
                if name in first:
                    self.index[role] = first[name]
                    break
        self.images = [i for i, k in enumerate(self.keys) if k in images]
        self.label: dict[int, str] = {}
        used: set[str] = set()
        for i, name in enumerate(header):
            base = name or f"column {i + 1}"
            label, n = base, 2
            while label in used:
                label, n = f"{base} ({n})", n + 1
            used.add(label)
            self.label[i] = label
        claimed = set(self.index.values()) | set(self.images) | {
            i for i, k in enumerate(self.keys) if k in dropped}
        self.extra = [(i, self.label[i]) for i in range(len(header)) if i not in claimed]
