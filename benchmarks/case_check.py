"""Brand-protection batch check: throughput of ``lookalike case check`` on 1,000 offers, copies
found, and the time to write a 100-offer evidence report (HTML and PDF).

    python benchmarks/case_check.py --work-dir /tmp/case-bench [--offers 1000] [--report 100]

The offers are edited copies made by benchmarks/make_copies.py from the Luma photos (seeded):
4 in 5 copy a catalog photo (some twice), 1 in 5 copy a photo that is not in the catalog. The
catalog is every other Luma photo (built on first use, about 20 s, and reused). The check runs
with verification and edit detection, as the command does, committing each offer; a second run
of the same case measures the resume (nothing to search). "Copies found": offers whose best
match is their original with the strength "likely copy" or more; "false copies": offers of
photos not in the catalog, or matched to another image, called a copy.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LUMA = ROOT.parent / "shared" / "datasets" / "luma"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _prepare(work: Path, n_offers: int) -> tuple[Path, Path]:
    from benchmarks import make_copies

    copies = work / f"copies-{n_offers}"
    if not (copies / "queries.csv").exists():
        positives = round(n_offers * 0.8)
        make_copies.main(["--images", str(LUMA / "images"), "--out", str(copies),
                          "--positives", str(positives), "--negatives", str(n_offers - positives)])
    offers = copies / "offers.csv"
    if not offers.exists():
        with open(copies / "queries.csv", newline="") as src, open(offers, "w", newline="") as dst:
            w = csv.writer(dst)
            w.writerow(["offer_url", "seller", "image", "original"])
            for i, row in enumerate(csv.DictReader(src)):
                w.writerow([f"https://market.example/offer/{i}", f"seller-{i % 37}", row["query"], row["relevant"]])
    catalog = work / "catalog"
    if not (catalog / "catalog.db").exists():
        from engine.catalog import Catalog
        from engine.ingest import ingest
        from engine.model import load_model

        gallery = (copies / "gallery.txt").read_text().split()
        with Catalog.open(catalog) as cat:
            ingest(cat, load_model(), gallery)
    return catalog, offers


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", required=True, type=Path)
    ap.add_argument("--offers", type=int, default=1000)
    ap.add_argument("--report", type=int, default=100, help="offers in the timed report")
    args = ap.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    catalog_dir, offers_csv = _prepare(args.work_dir, args.offers)

    from engine.case_check import check_offers, read_offers
    from engine.case_report import select_offers, write_report
    from engine.catalog import Catalog
    from engine.session import load_model_for

    with Catalog.open(catalog_dir, create=False) as catalog:
        model = load_model_for(catalog, None)
        if catalog.case_store.exists("bench"):
            catalog.case_store.delete("bench")
        offers, problems = read_offers([offers_csv])
        assert not problems, problems[:3]
        truth = {o.key: o.fields.get("original", "") for o in offers}
        t, c = time.perf_counter(), _cpu()
        report = check_offers(catalog, model, "bench", offers)
        wall, cpu = time.perf_counter() - t, _cpu() - c
        found = false = 0
        for r in report.checked:
            copy = r.strength.endswith("copy")
            right = bool(truth[r.offer]) and r.best is not None and r.best["path"] == truth[r.offer]
            found += copy and right
            false += copy and not right
        positives = sum(1 for v in truth.values() if v)
        print(f"checked {len(report.checked)} offers ({len(report.failed)} failed) in {wall:.1f} s: "
              f"{len(report.checked) / wall:.1f} offers/s, {1000 * cpu / len(report.checked):.1f} CPU ms/offer "
              f"on {os.cpu_count()} cores")
        print(f"copies found {found}/{positives} ({found / positives:.3f}); false copies {false}; "
              f"offers with edits measured {sum(r.edits is not None for r in report.checked)}")
        t = time.perf_counter()
        again = check_offers(catalog, model, "bench", offers)
        print(f"second run: {len(again.checked)} searched, {again.skipped} skipped, {time.perf_counter() - t:.1f} s")

        chosen = select_offers(catalog, "bench", min_score=0.0)[: args.report]
        for suffix in ("html", "pdf"):
            out = args.work_dir / f"report.{suffix}"
            t = time.perf_counter()
            written = write_report(catalog, "bench", chosen, out)
            print(f"report of {written.offers} offers as {suffix.upper()}: {time.perf_counter() - t:.1f} s, "
                  f"{out.stat().st_size / 2**20:.1f} MiB ({out})")
        catalog.case_store.delete("bench")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
