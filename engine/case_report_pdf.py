"""The PDF form of a case's evidence report (engine.case_report), laid out with fpdf2.

The text is set in DejaVu Sans (shipped in assets/fonts: product titles and offer data may be in
any script); A4 portrait, a summary table first, then one page per offer.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

MARGIN = 14          # mm
GAP = 4              # mm between the images of a pair
IMAGE_BOX = 68       # mm: the height of a row of images (both rows and the table fit one A4 page)
#: characters of one table cell at most (a table row must fit one page; the HTML report has all)
CELL_CHARS = 700


class _Report(FPDF):
    def __init__(self, meta: dict, fonts: Path):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.meta = meta
        self.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=MARGIN + 4)
        self.set_title(f"Evidence report: {meta['case']}")
        self.set_creator(f"Lookalike {meta['version']}")
        self.set_creation_date(datetime.now(timezone.utc))

    def footer(self):
        self.set_y(-MARGIN)
        self.set_font("DejaVu", "", 7)
        self.set_text_color(110)
        self.cell(0, 4, f"Lookalike {self.meta['version']} · case {self.meta['case']} · {self.meta['generated']}"
                        f" · page {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)

    def heading(self, text: str, size: float = 13) -> None:
        self.set_font("DejaVu", "B", size)
        self.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1.5)

    def text(self, text: str, size: float = 9, *, bold: bool = False) -> None:
        self.set_font("DejaVu", "B" if bold else "", size)
        self.multi_cell(0, size * 0.48, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _clip(text: str, n: int = CELL_CHARS) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "… (cut here; the HTML report has it all)"


def render_pdf(meta: dict, items: list, fonts: Path) -> bytes:
    """The report as PDF bytes."""
    from .case_report import evidence_rows

    pdf = _Report(meta, fonts)
    pdf.add_page()
    pdf.heading(f"Evidence report: {meta['case']}", 16)
    pdf.text(f"{meta['offers']} offers · generated {meta['generated']} by Lookalike {meta['version']} · "
             f"model {meta['models'] or 'unknown'} · catalog {meta['catalog']}"
             + (f" (id {meta['catalog_id']})" if meta["catalog_id"] else ""), 8.5)
    pdf.ln(3)
    pdf.heading("Summary", 12)
    pdf.set_font("DejaVu", "", 7.5)
    widths = (8, 52, 18, 34, 34, 36)
    with pdf.table(col_widths=widths, text_align=("RIGHT", "LEFT", "RIGHT", "LEFT", "LEFT", "LEFT"),
                   line_height=3.6, first_row_as_headings=True) as table:
        table.row(["#", "Offer", "Score", "Edits", "Catalog image", "Decision"])
        for it in items:
            r = it.record
            table.row([str(r.number), _clip(r.offer, 160), "" if r.score is None else f"{r.score:.3f}",
                       ", ".join(it.edits) or "none found", Path(it.match.get("path") or "").name,
                       meta["decisions"].get(r.decision, "")])
    for it in items:
        _offer_page(pdf, meta, it, evidence_rows(it))
    return bytes(pdf.output())


def _offer_page(pdf: _Report, meta: dict, it, rows: list[tuple[str, str]]) -> None:
    r = it.record
    pdf.add_page()
    pdf.heading(f"Offer {r.number}: {_clip(r.offer, 200)}", 12)
    for w in it.warnings:
        pdf.set_text_color(150, 90, 0)
        pdf.text("Warning: " + w, 8.5, bold=True)
        pdf.set_text_color(0)
    width = (pdf.epw - GAP) / 2
    changed = "" if it.changed_share is None else f"{100 * it.changed_share:.1f}% "
    for keys, captions in ((("offer", "match"), ("Offer image", "Catalog image")),
                           (("aligned", "difference"),
                            ("Catalog image in the offer's frame", f"Difference ({changed}changed)"))):
        if not any(k in it.images for k in keys):
            continue
        y = pdf.get_y()
        for i, key in enumerate(keys):
            if key in it.images:
                x = pdf.l_margin + i * (width + GAP)
                pdf.image(io.BytesIO(it.images[key]), x=x, y=y, w=width, h=IMAGE_BOX, keep_aspect_ratio=True)
        pdf.set_y(y + IMAGE_BOX + 1)
        pdf.set_font("DejaVu", "", 7.5)
        for i, caption in enumerate(captions):
            pdf.set_x(pdf.l_margin + i * (width + GAP))
            pdf.cell(width, 3.5, caption, align="C")
        pdf.ln(6)
    pdf.text("Edits found: " + (", ".join(it.edits) or "none"), 9.5, bold=True)
    pdf.ln(1)
    fields = "\n".join(f"{k}: {_clip(v, 300)}" for k, v in r.fields.items()) or "—"
    product = "\n".join(f"{k.replace('_', ' ')}: {it.match[k]}" for k in
                        ("product_id", "title", "brand", "price", "category", "url", "sku", "gtin") if it.match.get(k))
    decided = meta["decisions"].get(r.decision, "none") + (f" ({r.decided_at})" if r.decided_at else "") + \
        (f": {r.note}" if r.note else "")
    all_rows = [*rows, ("Offer", fields), ("Catalog product", product or "—"),
                ("SHA-256, offer file", it.offer_sha256 or r.sha256 or ""),
                ("SHA-256, catalog file", it.match_sha256 or ""),
                ("Offer image", r.image_path), ("Catalog image", it.match.get("path") or ""),
                ("Checked", f"{r.checked_at} with model {r.model_id}"), ("Decision", decided)]
    pdf.set_font("DejaVu", "", 7.5)
    with pdf.table(col_widths=(42, pdf.epw - 42), line_height=3.4, text_align="LEFT",
                   first_row_as_headings=False) as table:
        for label, value in all_rows:
            table.row([label, _clip(value)])
