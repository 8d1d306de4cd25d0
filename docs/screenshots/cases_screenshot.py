"""Make docs/screenshots/cases.png: the Cases window on a realistic brand-protection case (and
report.png, a page of its evidence report).

    python docs/screenshots/cases_screenshot.py --catalog DIR [--luma ../shared/datasets/luma]
        [--offers 36] [--out docs/screenshots/cases.png]

DIR is a catalog of the Luma copies gallery (``lookalike index --catalog DIR $(cat
eval/copies_gallery.txt)``, run in the Luma folder). It is copied into a temporary folder and given
the Luma product data there (the catalog given is not changed). The offers are the first
``--offers`` queries of ``eval/copies.csv`` (edited copies of gallery photos, and photos of other
products), written as an offers CSV with made-up marketplace columns; they are checked into a
case "Marketplace sweep", a few are decided, and the window is shown with the strongest offer
selected. Taken in a real window under Xvfb when ``xvfb-run`` is installed (offscreen otherwise),
and saved as an optimised PNG (make_screenshots.shrink).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
CASE = "Marketplace sweep"
SELLERS = ("fitgear_outlet", "yoga-deals-24", "BestPriceSport", "lumastyle.shop", "activewear_direct")
#: rows decided in the screenshot: (row, decision, note)
DECISIONS = ((0, "infringing", "our studio photo, mirrored; takedown sent"), (1, "infringing", ""),
             (3, "unsure", "ask the seller for the source"))


def attach_products(catalog: Path, luma: Path) -> None:
    """Link the catalog's images to their Luma products (title, SKU, price)."""
    from engine.catalog import Catalog

    by_image: dict[str, dict] = {}
    with open(luma / "products.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            amount, _, currency = (row.get("price") or "").partition(" ")
            product = {"id": row["id"], "title": row["title"], "brand": row["brand"] or None,
                       "price": float(amount) if amount else None, "currency": currency or None,
                       "category": row["product_type"] or None}
            for link in [row["image_link"], *(row.get("additional_image_link") or "").split(",")]:
                if link.strip():
                    by_image[str((luma / link.strip()).resolve())] = product
    with Catalog.open(catalog, create=False) as cat:
        found = {r["path"]: by_image[str(Path(r["path"]).resolve())] for r in cat.iter_records()
                 if str(Path(r["path"]).resolve()) in by_image}
        cat.upsert_products({p["id"]: p for p in found.values()}.values())
        cat.link_images((path, p["id"]) for path, p in found.items())


def offers_csv(luma: Path, folder: Path, count: int) -> Path:
    """The offers CSV: the first ``count`` copies.csv queries with made-up marketplace columns."""
    with open(luma / "eval" / "copies.csv", newline="", encoding="utf-8") as fh:
        queries = [row["query"] for row in csv.DictReader(fh)][:count]
    out = folder / "offers.csv"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["offer_url", "seller", "price", "image"])
        for i, query in enumerate(queries):
            w.writerow([f"https://market.example/item/{48120 + 7 * i}", SELLERS[i % len(SELLERS)],
                        f"{9.99 + (i * 3.7) % 40:.2f} USD", str(luma / query)])
    return out


def prepare(catalog: Path, luma: Path, work: Path, count: int) -> Path:
    from engine.case_check import check_offers, read_offers
    from engine.catalog import Catalog
    from engine.session import load_model_for

    copy = work / "catalog"
    shutil.copytree(catalog, copy, ignore=shutil.ignore_patterns("write.lock"))
    attach_products(copy, luma)
    with Catalog.open(copy, create=False) as cat:
        offers, problems = read_offers([offers_csv(luma, work, count)])
        check_offers(cat, load_model_for(cat), CASE, offers)
        strongest = cat.case_store.offers(CASE)
        for row, decision, note in DECISIONS:
            cat.case_store.decide(CASE, strongest[row].number, decision, note or None)
    return copy


def shoot(catalog: Path, out: Path, size: tuple[int, int], timeout: float) -> int:
    """Open the Cases window on ``catalog``'s case, wait for its thumbnails, grab it."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop
    from PySide6.QtWidgets import QApplication

    from desktop.cases_view import CasesView
    from desktop.session import Session

    app = QApplication.instance() or QApplication([sys.argv[0]])
    session = Session()
    loop = QEventLoop()
    session.catalogOpened.connect(lambda _info: loop.quit())
    session.open_catalog(catalog, create=False)
    loop.exec()
    view = CasesView(session)
    view.setWindowTitle(f"Cases — {catalog.name}")
    view.resize(*size)
    view.show()
    clock = QElapsedTimer()
    clock.start()

    def ready() -> bool:
        if view.case != CASE or not session.ready or view.model.rowCount() == 0:
            return False
        rows = range(min(view.model.rowCount(), 12))
        for row in rows:
            view.model.index(row, 1).data(1)  # DecorationRole: asks for the thumbnails
            view.model.index(row, 2).data(1)
        detail = view.detail
        return (all(view.offer_thumbs.is_settled(view.model.record(row).number) for row in rows)
                and all(view.match_thumbs.is_settled(int(view.model.record(row).best["image_id"]))
                        for row in rows if view.model.record(row).best)
                and detail.offer_images.is_settled(detail.record.number)
                and (detail.record.best is None
                     or detail.match_images.is_settled(int(detail.record.best["image_id"]))))

    while not ready():
        if clock.elapsed() > timeout * 1000:
            print("cases screenshot: timed out", file=sys.stderr)
            return 1
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    view.table.setFocus()
    for _ in range(20):     # the last repaints
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
    view.grab().save(str(out))
    view.shutdown()
    session.shutdown()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--luma", type=Path, default=ROOT.parent / "shared" / "datasets" / "luma")
    ap.add_argument("--offers", type=int, default=36)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "cases.png")
    ap.add_argument("--report-out", type=Path, default=ROOT / "docs" / "screenshots" / "report.png",
                    help="also the first offer page of the case's PDF evidence report, rendered here")
    ap.add_argument("--size", default="1480x900")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--shoot", type=Path, help=argparse.SUPPRESS)  # internal: the prepared catalog
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.shoot is not None:
        return shoot(args.shoot, args.out, size, args.timeout)
    sys.path.insert(0, str(Path(__file__).parent))
    from make_screenshots import run_on_display, shrink

    with tempfile.TemporaryDirectory(prefix="lookalike-cases-") as tmp:
        catalog = prepare(args.catalog, args.luma.resolve(), Path(tmp), args.offers)
        run_on_display([sys.executable, __file__, "--catalog", str(args.catalog), "--shoot", str(catalog),
                        "--out", str(args.out), "--size", args.size, "--timeout", str(args.timeout)])
        if args.report_out:
            report_page(catalog, Path(tmp) / "report.pdf", args.report_out)

    shrink(args.out)
    if args.report_out:
        shrink(args.report_out)
    return 0


def report_page(catalog: Path, pdf: Path, out: Path) -> None:
    """The case's PDF evidence report (the offers decided infringing), its first offer page as PNG."""
    import pypdfium2 as pdfium

    from engine.case_report import select_offers, write_report
    from engine.catalog import Catalog

    with Catalog.open(catalog, readonly=True) as cat:
        write_report(cat, CASE, select_offers(cat, CASE), pdf)
    pdfium.PdfDocument(str(pdf))[1].render(scale=1.6).to_pil().convert("RGB").save(out)


if __name__ == "__main__":
    sys.exit(main())
