"""Why a result matched, in plain words: the lines of the details panel's "Why it matched" box,
the words read on the query with the ones that matched the product's text marked, and the short
form of the result cards' tooltips.

Everything here reads a search ``Match``'s ``evidence`` (engine.scoring.Evidence) with
``getattr`` and defaults, so results made before a field existed (no ``learned``, ``words``, ...)
still show what they have. No widgets: the panel puts the HTML in labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from typing import Any

from engine.match_policy import ALIGNED_CONFIRMED
from engine.scoring import MARGIN_MIN_INLIERS, STUDIO_BACKDROP
from engine.text_reading import fold, normalise_words

#: a matched word on the query: bold, in this colour
MATCHED_COLOR = "#2e7d32"
#: a muted note ("3 more lines", a number's meaning)
MUTED_COLOR = "#78909c"
#: colour agreement (histogram intersection) from which colours "agree", under which they "differ"
COLOUR_AGREE = 0.7
COLOUR_DIFFER = 0.4
#: characters of read text shown before the rest is summed up as "N more lines" (lines with a
#: matched word are always shown)
READ_BUDGET = 160

_TOKEN = re.compile(r"[^\W_]+")
# a number with a unit or a percent sign, as engine.text_reading reads it as one word ("1,5 %")
_QUANTITY = re.compile(r"\d+(?:[.,]\d+)?\s?(?:%|[^\W\d_]+)")
_DIGIT_GROUPS = re.compile(r"\d+(?:[ -]\d+)+")


def evidence_of(match: Any) -> Any | None:
    return getattr(match, "evidence", None) if match is not None else None


def word_pairs(match: Any) -> list[tuple[str, str]]:
    """The (query word, product word) pairs that matched, from the evidence ([] when none, or
    when the evidence predates text matching)."""
    pairs = []
    for pair in getattr(evidence_of(match), "words", None) or []:
        try:
            query, product = pair[0], pair[1]
        except (TypeError, IndexError, KeyError):
            continue
        if query and product:
            pairs.append((str(query), str(product)))
    return pairs


# ---------------------------------------------------------------------- spellings
def product_spellings(product: dict | None) -> dict[str, str]:
    """Normalised word -> how the product's data spells it ("mjolk" -> "Mjölk"), from its title,
    brand, category and SKU."""
    spelled: dict[str, str] = {}
    product = product or {}
    for key in ("title", "brand", "category", "sku", "product_id", "gtin"):
        value = product.get(key)
        if not value:
            continue
        text = str(value)
        for span in _spans(text):
            for word in span.words:
                spelled.setdefault(word, text[span.start : span.end])
    return spelled


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    words: frozenset[str]


def _spans(line: str) -> list[_Span]:
    """The pieces of a line that give normalised words: each token, a number with its unit or
    percent sign ("1,5 %", "500 G": one word), and runs of digit groups (a GTIN under its
    barcode). Shortest first, so a word is marked on the smallest piece that holds it."""
    out = []
    for pattern in (_TOKEN, _QUANTITY, _DIGIT_GROUPS):
        for m in pattern.finditer(line):
            words = frozenset(normalise_words(m.group()))
            if words:
                out.append(_Span(m.start(), m.end(), words))
    out.sort(key=lambda sp: (sp.end - sp.start, sp.start))
    return out


def query_spellings(read: Iterable[str]) -> dict[str, str]:
    """Normalised word -> how it was read on the query ("mellanmjolk" -> "MELLANMJÖLK")."""
    spelled: dict[str, str] = {}
    for line in read or ():
        for span in _spans(str(line)):
            for word in span.words:
                spelled.setdefault(word, str(line)[span.start : span.end])
    return spelled


def _targets(pairs: list[tuple[str, str]], spelled: dict[str, str]) -> dict[str, list[str]]:
    """Query word -> the product words it matched, spelled as the product's data spells them,
    only those that differ from the query word (an OCR misreading, a compound word's piece)."""
    out: dict[str, list[str]] = {}
    for query, product in pairs:
        targets = out.setdefault(query, [])
        if fold(product) != fold(query):
            shown = spelled.get(product, product)
            if shown not in targets:
                targets.append(shown)
    return out


def _marked(text: str, targets: list[str]) -> str:
    arrow = f" → {escape(', '.join(targets))}" if targets else ""
    return f"<b style='color:{MATCHED_COLOR}'>{escape(text)}{arrow}</b>"


# ---------------------------------------------------------------------- the read text
def read_html(read: Iterable[str], match: Any = None, *, budget: int = READ_BUDGET) -> str:
    """The lines read on the query, joined by " · ", with the words that matched ``match``'s
    product text in bold green (and the product word after an arrow when it differs: "MJOIK →
    Mjölk"). Lines past ``budget`` characters without a matched word are summed up as "N more
    lines". A matched word found on no line (should not happen) is added at the end."""
    lines = [str(line) for line in read or () if str(line).strip()]
    pairs = word_pairs(match)
    targets = _targets(pairs, product_spellings(getattr(match, "product", None)))
    wanted = set(targets)
    placed: set[str] = set()
    shown: list[str] = []
    used = hidden = 0
    for line in lines:
        marks: list[tuple[int, int, str]] = []
        for span in _spans(line):
            hit = sorted(span.words & wanted)
            if not hit or any(s < span.end and span.start < e for s, e, _ in marks):
                continue
            marks.append((span.start, span.end, hit[0]))
            placed.update(hit)
        if not marks and used + len(line) > budget:
            hidden += 1
            continue
        used += len(line)
        marks.sort()
        html, at = [], 0
        for start, end, word in marks:
            html.append(escape(line[at:start]))
            html.append(_marked(line[start:end], targets[word]))
            at = end
        html.append(escape(line[at:]))
        shown.append("".join(html))
    for word in targets:
        if word not in placed:
            shown.append(_marked(word, targets[word]))
    text = " · ".join(shown)
    if hidden:
        more = f"{hidden} more line{'s' if hidden > 1 else ''}"
        text += f" <span style='color:{MUTED_COLOR}'>… {more}</span>"
    return text


def matched_words_text(match: Any, read: Iterable[str] = ()) -> str:
    """The matched words in one plain line, as read on the query ("MELLANMJÖLK, 1,5 %, MJOIK →
    Mjölk"); "" when none."""
    pairs = word_pairs(match)
    if not pairs:
        return ""
    spelled = query_spellings(read)
    targets = _targets(pairs, product_spellings(getattr(match, "product", None)))
    parts = []
    for word, products in targets.items():
        text = spelled.get(word, word)
        parts.append(f"{text} → {', '.join(products)}" if products else text)
    return ", ".join(parts)


# ---------------------------------------------------------------------- the reasons
def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def verified_geometry(evidence: Any) -> bool:
    """Local features were compared and enough of them agree under one geometry: the same
    photograph (engine.scoring.MARGIN_MIN_INLIERS)."""
    return bool(getattr(evidence, "verified", False)) and int(
        getattr(evidence, "inliers", 0) or 0
    ) >= MARGIN_MIN_INLIERS


def why_lines(match: Any, read: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(name, HTML) rows of "why it matched", strongest evidence first; [] without evidence."""
    ev = evidence_of(match)
    if ev is None:
        return []
    rows: list[tuple[str, str]] = []
    if getattr(ev, "identical", False):
        rows.append(("Image", "<b>identical</b> (the same file or the same pixels)"))

    cosine = _number(getattr(ev, "cosine", None))
    centre = _number(getattr(ev, "centre", None))
    learned = _number(getattr(ev, "learned", None))
    product = _number(getattr(ev, "product", None))
    # the learned and product similarities only where they add something: without a learned
    # metric the first is the cosine, and a product with one photo gives the same number again
    looks, said = [], set()
    for value, template in (
        (cosine, "<b>{}</b>"),
        (centre, "{} by the photo's centre"),
        (learned, "{} tuned to the catalog"),
        (product, "{} to the product's photos"),
    ):
        if value is not None and f"{value:.2f}" not in said:
            looks.append(template.format(f"{value:.2f}"))
            said.add(f"{value:.2f}")
    if looks:
        rows.append(("Looks alike", " · ".join(looks)))

    if verified_geometry(ev):
        parts = [f"<b>{int(ev.inliers)}</b> matching points"]
        transform = str(getattr(ev, "transform", "") or "")
        if transform:
            parts[0] += f", {escape(transform)}"
        aligned = _number(getattr(ev, "aligned", None))
        if aligned is not None and aligned >= ALIGNED_CONFIRMED:
            parts.append(f"pixels agree ({aligned:.2f})")
        elif aligned is not None:
            parts.append(f"pixels partly agree ({aligned:.2f})")
        rows.append(("Lines up", " · ".join(parts)))

    colour = _number(getattr(ev, "colour", None))
    backdrop = _number(getattr(ev, "backdrop", None)) or 0.0
    # colour counts for a studio photo (a phone photo's colours are mostly its scene's); a
    # verified match says it with its aligned pixels above
    if colour is not None and backdrop >= STUDIO_BACKDROP and not verified_geometry(ev):
        word = (
            "agree" if colour >= COLOUR_AGREE else "differ" if colour < COLOUR_DIFFER
            else "partly agree"
        )
        rows.append(("Colours", f"{word} ({colour:.2f})"))

    pairs = word_pairs(match)
    lines = [str(line) for line in read or () if str(line).strip()]
    if pairs:
        text = _number(getattr(ev, "text", None))
        n = len({q for q, _ in pairs})
        score = f" (text match {text:.2f})" if text is not None else ""
        rows.append(("Words", f"<b>{n}</b> read on the photo match the product{score}"))
    elif lines and hasattr(ev, "words"):
        rows.append(("Words", "none read on the photo is in the product's text"))
    if lines or pairs:
        rows.append(("Read", read_html(lines, match)))
    return rows


#: what the numbers of "why it matched" are, for its tooltip
WHY_TOOLTIP = (
    "Why it matched: what the score was computed from.\n"
    "Looks alike: similarity of the two pictures (cosine, 1 = alike); by the photo's centre:\n"
    "of what a photo taken in the world shows in its middle; tuned: in this catalog's\n"
    "learned space; to the product's photos: against all the photos of the product.\n"
    "Lines up: points of the two images that match under one geometry (the same print or\n"
    "photo; pixels agree: the same photo, a copy).\n"
    "Words: the text read on the photo that is in the product's data or on its photos,\n"
    "in bold green (→ the product's word when the reading differs)."
)


def why_html(match: Any, read: Iterable[str] = ()) -> str:
    """The rows of :func:`why_lines` as a small two-column HTML table ("" without evidence)."""
    rows = why_lines(match, read)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td style='color:{MUTED_COLOR}; padding-right:6px' valign='top'>{escape(name)}</td>"
        f"<td>{html}</td></tr>"
        for name, html in rows
    )
    return f"<table cellspacing='0' cellpadding='1'>{body}</table>"
