"""Feed text: encoding detection and repair of undecodable bytes, delimiter (dialect) choice, and
HTML to plain text / character-reference decoding of cells. Internal to :mod:`engine.feeds`."""

from __future__ import annotations

import codecs
import csv
import html.parser
import io
import re

from .feed_columns import _score


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


# ------------------------------------------------------------------------------------ binary data
# C0 control characters other than TAB, LF, CR, VT and FF (in-cell line breaks some spreadsheet
# exports write), and DEL: text has almost none; random bytes have one in ten
_CONTROLS = bytes([*range(0x01, 0x09), *range(0x0E, 0x20), 0x7F])
_CONTROL_CHARS = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
_BLOCK = 4096                 # a block with more than 5% control bytes is binary, not text
_MAX_CONTROLS = _BLOCK // 20


def binary_offset(fh, encoding: str, chunk_size: int = 1 << 20) -> int | None:
    """Where binary data starts in a feed file (``fh``, opened in binary mode, read to its end),
    or None when it is all text: the first NUL character, or the first 4 KiB block that is more
    than 5% control characters. A genuine feed has neither, in any encoding; random or damaged
    bytes (a header followed by garbage, a file of zeros after a crash) have both. The file is
    read in 1 MiB chunks (bounded memory); UTF-16 and UTF-32 are checked after decoding."""
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace") if wide else None
    offset = 0
    while chunk := fh.read(chunk_size):
        if decoder is None:
            nul = chunk.find(0)
            if nul >= 0:
                return offset + nul
            if len(chunk.translate(None, _CONTROLS)) < len(chunk) - _MAX_CONTROLS:   # worth a look
                for start in range(0, len(chunk), _BLOCK):
                    block = chunk[start:start + _BLOCK]
                    if len(block) - len(block.translate(None, _CONTROLS)) > _MAX_CONTROLS:
                        return offset + start
        else:
            text = decoder.decode(chunk)
            if "\x00" in text or len(_CONTROL_CHARS.findall(text)) > len(text) // 20:
                return offset
        offset += len(chunk)
    return None


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
