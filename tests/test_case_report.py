"""The evidence report's PDF layout holds whatever an offers CSV brings (engine.case_report_pdf)."""

from __future__ import annotations

import pypdfium2 as pdfium

from engine.case_report import FONTS, ReportedOffer
from engine.case_report_pdf import render_pdf
from engine.case_store import OfferRecord

META = {"case": "c", "generated": "2026-12-07T12:00:00Z", "version": "0", "models": "m", "catalog": "/c",
        "catalog_id": "", "offers": 1, "platform": "p", "decisions": {}}


def test_long_offer_data_is_cut_to_fit_a_page(tmp_path):
    record = OfferRecord(offer="https://m.example/" + "x" * 2000, image_path="/gone/offer.jpg", number=7,
                         fields={"description": "very long text " * 2000, **{f"column {i}": "v" * 200 for i in range(40)}},
                         score=0.93, strength="likely copy", matches=[{"path": "/gone/photo.jpg", "evidence": {}}])
    item = ReportedOffer(record, {"path": "/gone/photo.jpg", "title": "T" * 3000}, "ab" * 32, "cd" * 32)
    out = tmp_path / "r.pdf"
    out.write_bytes(render_pdf(META, [item], FONTS))
    doc = pdfium.PdfDocument(str(out))
    assert len(doc) == 2                                   # the summary, then the offer's page
    text = doc[1].get_textpage().get_text_range()
    assert "the HTML report has it all" in text and "ab" * 32 in text.replace("\r\n", "").replace("\n", "")
