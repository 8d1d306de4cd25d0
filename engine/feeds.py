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

Helpers live in ``feed_columns`` (column names, format), ``feed_text`` (encoding, dialect, HTML)
and ``feed_values`` (prices, image references); this module holds the entry points and the reader.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import feed_text
from .errors import FeedError
from .feed_columns import _FORMAT_NAMES, _GMC_MORE_IMAGES, _Plan, _classify
from .feed_text import (_SURROGATES, _choose_dialect, _detect_encoding, _first_record, _is_utf8, _repair,
                        html_to_text, unescape_entities)
from .feed_values import _currency, _ImageRefs, _quote, _split_list, parse_price

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


def _refuse_binary(path: Path, encoding: str) -> None:
    """FeedError when the file holds binary data anywhere (a binary file named .csv; a header
    followed by random or zeroed bytes). Checked over the whole file before the first row is
    read, so nothing of a damaged feed is imported rather than its garbage as products."""
    with _open_binary(path) as fh:
        try:
            at = feed_text.binary_offset(fh, encoding)
        except OSError as exc:
            raise FeedError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if at is not None:
        raise FeedError(f"{path}: not a text feed (binary data at byte {at}); check that this is "
                        "the feed's CSV file, or export the feed again")


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

# roles whose cells may carry HTML character references ("HeatTech&trade;"); decoded on read
_TEXT_ROLES = frozenset({"title", "brand", "description"})



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
        _refuse_binary(path, self.encoding)
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
        escaped_before = feed_text._escaped        # a module global: read it where it lives
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
                if not repairing and feed_text._escaped != escaped_before:
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

