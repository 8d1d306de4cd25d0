"""Feed cell values: price and currency parsing, and image references resolved to local files
(confined to the feed's folder) or kept as remote links. Internal to :mod:`engine.feeds`."""

from __future__ import annotations

import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname


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
