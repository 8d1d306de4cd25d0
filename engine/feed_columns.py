"""Feed columns: name normalisation, the GMC and Shopify column tables, format detection from a
header, and the column plan the reader follows. Internal to :mod:`engine.feeds`."""

from __future__ import annotations

import re


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
