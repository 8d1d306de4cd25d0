"""Precision and recall of the edit report (engine.edits) on Luma's edited copies.

    python benchmarks/edit_detection.py [--luma DIR] [--dump details.json] [--threads 1]
    python benchmarks/edit_detection.py --real-catalog /tmp/rs-work/real-10000/images [-n 400]

Every positive row of eval/copies.csv (an edited copy and the catalog photo it was made from)
goes through ``detect_edits(query, original)`` with no search transform (the report must find a
mirror itself). The ``edits`` column is the truth: crop -> cropped, flip -> mirrored, rot ->
turned, color -> recoloured, text -> text added, pad -> padded; scale, blur and persp are edits
the report does not name, so a copy with only those must get none. Prints, per edit, true and
false positives, precision and recall; the pairs that did not register; and the milliseconds per
pair (decoding not counted), p50 and p95. Figures: docs/edits.md.

``--real-catalog DIR`` checks the report on another generator's copies instead, held out from
the thresholds: the planted copies of ``benchmarks/real_catalog.py`` (``DIR/truth.csv``: one
edit each, crop, pad, mirror, recolour, rotate90, text; recompress and resize must get none).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LUMA = Path(os.environ.get("LOOKALIKE_LUMA", ROOT.parent / "shared" / "datasets" / "luma"))
TRUTH = {"crop": "cropped", "flip": "mirrored", "rot": "turned", "color": "recoloured",
         "text": "text added", "pad": "padded",
         # benchmarks/real_catalog.py's names
         "mirror": "mirrored", "rotate90": "turned", "recolour": "recoloured"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--luma", default=str(LUMA))
    ap.add_argument("--dump", help="write each pair's edits and details to this JSON file")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (the batch check's "
                    "workers run one pair each)")
    ap.add_argument("-n", type=int, default=0, help="only the first n pairs")
    ap.add_argument("--real-catalog", help="a folder made by benchmarks/real_catalog.py: its planted "
                    "copies instead of Luma's")
    args = ap.parse_args(argv)
    import cv2

    from engine.edits import EDITS, detect_edits
    from engine.imaging import load_image

    cv2.setNumThreads(args.threads)
    if args.real_catalog:     # (copy, original, edit) rows, read like Luma's
        luma = Path(args.real_catalog)
        with open(luma / "truth.csv", newline="") as fh:
            rows = [{"query": r["copy"], "relevant": r["original"], "edits": r["edit"]}
                    for r in csv.DictReader(fh)]
    else:
        luma = Path(args.luma)
        with open(luma / "eval" / "copies.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["relevant"]]
    rows = rows[:args.n] if args.n else rows
    tp, fp, fn = Counter(), Counter(), Counter()
    ms, unregistered, dump, quiet_wrong = [], [], [], []
    detect_edits(load_image(luma / rows[0]["query"]), load_image(luma / rows[0]["relevant"]))  # warm
    for row in rows:
        query = load_image(luma / row["query"])
        original = load_image(luma / row["relevant"])
        started = time.perf_counter()
        report = detect_edits(query, original)
        ms.append((time.perf_counter() - started) * 1000)
        made = row["edits"].split("+")
        truth = {TRUTH[e] for e in made if e in TRUTH}
        found = set(report.edits)
        if report.alignment is None:
            unregistered.append(row["edits"])
        for e in EDITS:
            if e in found and e in truth:
                tp[e] += 1
            elif e in found:
                fp[e] += 1
                quiet_wrong.append(f"{row['query']} ({row['edits']}): {e}")
            elif e in truth:
                fn[e] += 1
        dump.append({"query": row["query"], "made": row["edits"], **report.to_json()})
    print(f"{len(rows)} copies, {len(unregistered)} not registered "
          f"({', '.join(unregistered) or 'none'})")
    print(f"{'edit':12} {'made':>5} {'found':>6} {'TP':>4} {'FP':>4} {'precision':>10} {'recall':>7}")
    for e in EDITS:
        made, found = tp[e] + fn[e], tp[e] + fp[e]
        precision = f"{tp[e] / found:.3f}" if found else "-"
        recall = f"{tp[e] / made:.3f}" if made else "-"
        print(f"{e:12} {made:5d} {found:6d} {tp[e]:4d} {fp[e]:4d} {precision:>10} {recall:>7}")
    plain = [d for d in dump if not {TRUTH.get(e) for e in d["made"].split("+")} - {None}]
    named = sum(1 for d in plain if d["edits"])
    print(f"copies with no edit the report names: {len(plain)}, {named} given an edit")
    print(f"ms per pair: p50 {np.percentile(ms, 50):.1f}, p95 {np.percentile(ms, 95):.1f}, "
          f"mean {np.mean(ms):.1f}")
    for line in quiet_wrong:
        print("  false:", line)
    if args.dump:
        Path(args.dump).write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
