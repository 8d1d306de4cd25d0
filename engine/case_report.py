"""The evidence report of a brand-protection case: one self-contained HTML file (images embedded,
nothing fetched) or a PDF (fpdf2), for a takedown notice.

A summary table comes first; then, per offer: the offer's image and data, the catalog image it
copies and that image's product data, the catalog image aligned onto the offer and their
difference, the edits found, the score and its evidence, the SHA-256 of both files (hashed as the
report is written, and compared with the offer's hash at the check: a file changed since is
flagged), the date of the check and the decision. The header names the Lookalike version, the
model and the catalog.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__
from .case_store import DECISION_LABELS, INFRINGING, OfferRecord
from .catalog_schema import now_iso
from .errors import ImageError, OutputError
from .export import open_output
from .imaging import load_image

Progress = Callable[[int, int, str], None]

#: long side of the images embedded in the report (pixels)
IMAGE_SIDE = 560
JPEG_QUALITY = 85
#: the offers' rendering runs on this many threads (decoding and alignment release the GIL)
WORKERS = 2
FONTS = Path(__file__).resolve().parent.parent / "assets" / "fonts"


@dataclass
class ReportedOffer:
    record: OfferRecord
    match: dict                    # the best match (Match.to_json) with its catalog record's product data
    offer_sha256: str | None       # hashed now (None: the file is gone)
    match_sha256: str | None
    images: dict[str, bytes] = field(default_factory=dict)   # offer, match, aligned, difference: JPEG
    aligned_on: str = ""           # how the catalog image was put in the offer's frame
    changed_share: float | None = None   # of the compared pixels (the difference image)
    warnings: list[str] = field(default_factory=list)

    @property
    def edits(self) -> list[str]:
        return list((self.record.edits or {}).get("edits", []))


@dataclass
class WrittenReport:
    path: Path
    offers: int
    warnings: list[str] = field(default_factory=list)


def select_offers(catalog, name: str, *, min_score: float | None = None) -> list[OfferRecord]:
    """The offers a report covers, strongest first: those decided infringing, or with
    ``min_score`` every checked offer scoring at least that (decided not infringing or not)."""
    offers = catalog.case_store.offers(name)
    if min_score is None:
        return [r for r in offers if r.decision == INFRINGING and r.best]
    return [r for r in offers if r.best and r.score is not None and r.score >= min_score]


def write_report(catalog, name: str, offers: Sequence[OfferRecord], path: str | os.PathLike, *,
                 progress: Progress | None = None, cancel=None) -> WrittenReport | None:
    """Write the report of ``offers`` to ``path`` (.html or .pdf, by its suffix); None when
    cancelled (nothing is written then: the file appears whole or not at all, as
    engine.export.open_output writes it)."""
    target = Path(os.fspath(path)).expanduser()
    suffix = target.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise OutputError(f"{target}: the report is written as .html or .pdf")
    items = gather(catalog, offers, progress=progress, cancel=cancel)
    if items is None:
        return None
    meta = _meta(catalog, name, items)
    if suffix == ".pdf":
        from .case_report_pdf import render_pdf

        data = render_pdf(meta, items, FONTS)
    else:
        data = render_html(meta, items).encode("utf-8")
    with open_output(target, protect=catalog.directory, binary=True) as out:
        out.write(data)
    return WrittenReport(target, len(items), [w for it in items for w in it.warnings])


# ---------------------------------------------------------------------- gathering
def gather(catalog, offers: Sequence[OfferRecord], *, progress: Progress | None = None,
           cancel=None) -> list[ReportedOffer] | None:
    """Hash, decode, align and render every offer (in order); None when cancelled."""
    ids = [int(r.best["image_id"]) for r in offers if r.best and r.best.get("image_id") is not None]
    records = {rec["image_id"]: rec for rec in catalog.image_records(ids)}
    out: list[ReportedOffer] = []
    if progress:
        progress(0, len(offers), "")
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="case-report") as pool:
        futures = [pool.submit(_gather_one, r, records.get(int(r.best["image_id"])) if r.best else None)
                   for r in offers]
        for i, f in enumerate(futures):
            if cancel is not None and cancel.is_set():
                for rest in futures[i:]:
                    rest.cancel()
                return None
            out.append(f.result())
            if progress:
                progress(i + 1, len(offers), offers[i].image_path)
    return out


def _gather_one(record: OfferRecord, catalog_record: dict | None) -> ReportedOffer:
    best = dict(record.best or {})
    if catalog_record:       # the product data as the catalog holds it now
        for key in ("title", "brand", "category", "url", "product_id", "sku", "gtin", "description"):
            if catalog_record.get(key):
                best[key] = catalog_record[key]
        if catalog_record.get("price") is not None:
            best["price"] = f"{catalog_record['price']:.2f} {catalog_record.get('currency') or ''}".strip()
    item = ReportedOffer(record, best, _sha256(record.image_path), _sha256(best.get("path")))
    if item.offer_sha256 is None:
        item.warnings.append(f"offer #{record.number}: {record.image_path} is gone; its hash is the one "
                             "taken at the check")
    elif record.sha256 and item.offer_sha256 != record.sha256:
        item.warnings.append(f"offer #{record.number}: {record.image_path} changed since it was checked "
                             f"on {record.checked_at}; check the case again")
    if item.match_sha256 is None:
        item.warnings.append(f"offer #{record.number}: catalog image {best.get('path')} is gone")
    try:
        offer_rgb = load_image(record.image_path)
        match_rgb = load_image(best["path"])
    except (ImageError, KeyError):
        return item
    item.images["offer"] = _jpeg(offer_rgb)
    item.images["match"] = _jpeg(match_rgb)
    from .edits import detect_edits

    found = detect_edits(offer_rgb, match_rgb, transform=(best.get("evidence") or {}).get("transform", ""))
    if found.alignment is not None:
        item.images["aligned"] = _jpeg(found.alignment.match)
        item.aligned_on = found.alignment.describe()
    if found.difference is not None:
        item.images["difference"] = _jpeg(found.difference.image)
        item.changed_share = float(found.difference.changed_fraction)
    return item


def _sha256(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _jpeg(rgb: np.ndarray) -> bytes:
    im = Image.fromarray(rgb)
    im.thumbnail((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def _meta(catalog, name: str, items: list[ReportedOffer]) -> dict:
    models = sorted({it.record.model_id for it in items if it.record.model_id})
    return {"case": name, "generated": now_iso(), "version": __version__, "models": ", ".join(models),
            "catalog": str(catalog.directory), "catalog_id": catalog.catalog_id or "", "offers": len(items),
            "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
            "decisions": DECISION_LABELS}


# ---------------------------------------------------------------------- HTML
def render_html(meta: dict, items: list[ReportedOffer]) -> str:
    """The report as one HTML page: images as data: URIs, no script, nothing fetched."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["data_uri"] = lambda b: "data:image/jpeg;base64," + base64.b64encode(b).decode("ascii")
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * float(v):.1f}%"
    env.filters["basename"] = lambda p: os.path.basename(p or "")
    return env.get_template("case_report.html").render(meta=meta, items=items, evidence_rows=evidence_rows)


def evidence_rows(item: ReportedOffer) -> list[tuple[str, str]]:
    """(label, value) lines of the score's evidence, for people."""
    r, ev = item.record, (item.match.get("evidence") or {})
    rows = [("Score", f"{r.score:.3f} ({r.strength or 'below similar'})" if r.score is not None else "")]
    if ev:
        rows.append(("Embedding similarity", f"{ev.get('cosine', 0):.3f}"))
        if ev.get("verified"):
            rows.append(("Matching local features", f"{ev.get('inliers', 0)} (RANSAC homography inliers)"))
            rows.append(("Pixel agreement after alignment", f"{ev.get('aligned', 0):.3f}"))
            rows.append(("Colours kept", f"{100 * ev.get('unchanged', 0):.0f}% of the product's pixels"))
        if ev.get("transform"):
            rows.append(("Matched as", ev["transform"]))
        if ev.get("identical"):
            rows.append(("Identical", "the same image (bytes or pixels)"))
    if item.aligned_on:
        rows.append(("Alignment", item.aligned_on))
    if item.changed_share is not None:
        rows.append(("Pixels changed", f"{100 * item.changed_share:.1f}% of the aligned area"))
    return rows
