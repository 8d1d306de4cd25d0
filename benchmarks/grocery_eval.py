"""Same product from another photo (issue 16): the grocery sets through `lookalike eval`'s engine.

    python benchmarks/grocery_eval.py --split val --cache /tmp/grocery-eval
    python benchmarks/grocery_eval.py --split test --cache /tmp/grocery-eval      # report, never tune

Four sets (``../shared/datasets/grocery``, README there): val/test x
``phone_to_catalog`` (a phone photo -> its product's store catalog photo; gallery: the Merchant
feed ``products.csv``, 41 products) and ``phone_to_phone`` (-> the train phone photos of its
product; gallery: the Shopify export ``photos.csv``, 1,350 photos of the 41 products). Each set
runs through ``engine.evaluation.evaluate`` exactly as ``lookalike eval`` does (the galleries are
imported as feeds, products and all) and the table shows, per set and group, the raw embedding's
R@1 (cosine, exact), Lookalike's R@1 and the precision / recall at the "same product"
threshold. The other half of the store's products is held out elsewhere: tune nothing per
product, and tune on val only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import evaluation  # noqa: E402

GROCERY = Path(os.environ.get("LOOKALIKE_GROCERY", ROOT.parent / "shared" / "datasets" / "grocery"))
#: set -> the feed that is its gallery
SETS = {"phone_to_catalog": "products.csv", "phone_to_phone": "photos.csv"}
SAME = "same product"


def run_set(data: Path, split: str, name: str, model, k: int, cache: Path | None, quiet: bool):
    from cli.common import Progress

    feed = data / SETS[name]
    gallery = evaluation.read_gallery([feed])
    queries = evaluation.read_queries(data / "eval" / f"{split}_{name}.csv")
    catalog_dir = cache / feed.stem if cache else None
    with Progress(disable=quiet, leave=False) as progress:
        return evaluation.evaluate(gallery, queries, model, k=k, catalog_dir=catalog_dir,
                                   reference="cosine", progress=progress)


def table(results: dict[tuple[str, str], dict]) -> str:
    f = evaluation._fmt
    head = (f"{'set':17} {'split':5} {'group':11} {'queries':>7} {'raw R@1':>8} {'Lookalike R@1':>14}"
            f"  {SAME + ' P / R (pairs)':>28}")
    lines = [head, "-" * len(head)]
    for (name, split), s in results.items():
        ref = s["reference"]
        rows = [(g, fig, ref["groups"][g]) for g, fig in s.get("groups", {}).items()]
        rows.append(("all", s, ref))
        for g, fig, rf in rows:
            t = fig["thresholds"][SAME]
            pr = f"{f(t['precision'])} / {f(t['recall'])} ({t['pairs']})"
            lines.append(f"{name:17} {split:5} {g:11} {fig['queries']:>7} {f(rf['R@1']):>8} "
                         f"{f(fig['R@1']):>14}  {pr:>28}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=("val", "test", "both"), default="val")
    ap.add_argument("--sets", nargs="+", choices=tuple(SETS), default=list(SETS))
    ap.add_argument("--data", type=Path, default=GROCERY, help="the grocery dataset folder")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder for the gallery catalogs (one sub-folder per feed; default: "
                         "lookalike eval's cache, keyed by the feed and model)")
    ap.add_argument("-k", type=int, default=evaluation.DEFAULT_K)
    ap.add_argument("--model", default=None, help="model pack (default: the bundled default)")
    ap.add_argument("--json", type=Path, help="write every set's full summary here")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    from engine.model import load_model
    from engine.scoring import THRESHOLDS

    data = args.data.expanduser().resolve()
    if not (data / "eval").is_dir():
        print(f"grocery dataset not found at {data} (--data or LOOKALIKE_GROCERY)", file=sys.stderr)
        return 2
    cache = args.cache.expanduser().resolve() if args.cache else None
    splits = ("val", "test") if args.split == "both" else (args.split,)
    model = load_model(args.model)
    results: dict[tuple[str, str], dict] = {}
    for split in splits:
        for name in args.sets:
            started = time.perf_counter()
            summary, _ = run_set(data, split, name, model, args.k, cache, args.quiet)
            summary["seconds"] = round(time.perf_counter() - started, 1)
            results[(name, split)] = summary
            print(f"{split} {name}: {summary['queries']} queries, {summary['seconds']} s", file=sys.stderr)

    print(f"model {model.model_id}, top {args.k}, '{SAME}' = score >= {THRESHOLDS[SAME]}")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({f"{split}/{name}": s for (name, split), s in results.items()},
                                        indent=2))

    q = shlex.quote
    print("\nreproduce:")
    cmd = ["python", "benchmarks/grocery_eval.py", "--split", args.split, "--sets", *args.sets]
    if args.data != GROCERY:
        cmd += ["--data", str(data)]
    if cache:
        cmd += ["--cache", str(cache)]
    if args.k != evaluation.DEFAULT_K:
        cmd += ["-k", str(args.k)]
    if args.model:
        cmd += ["--model", args.model]
    print("  " + " ".join(q(c) for c in cmd))
    for split in splits:
        for name in args.sets:
            feed = data / SETS[name]
            cmd = ["lookalike", "eval", "--gallery", str(feed),
                   "--queries", str(data / "eval" / f"{split}_{name}.csv")]
            if cache:
                cmd += ["--cache", str(cache / feed.stem)]
            if args.k != evaluation.DEFAULT_K:
                cmd += ["-k", str(args.k)]
            if args.model:
                cmd += ["--model", args.model]
            print("  " + " ".join(q(c) for c in cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
