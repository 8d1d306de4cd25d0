"""Paired before/after search latency: an earlier revision's engine and the working tree's, in one
process, alternating query by query on the same catalog, so that both see the same machine load.

On a shared machine every wall-clock figure moves with what else runs; the paired median ratio
does not (much). The earlier revision's ``engine/`` is exported with ``git archive`` into a
temporary folder and imported as the package ``engine_before``. Each side loads its own model
(same pack) and opens the catalog read-only. It also says whether both returned the same results
with the same scores for every query.

    python benchmarks/search_ab.py --before 2123eec --catalog /tmp/b/scale-100000 [-k 10]
    chrt -f 10 python benchmarks/search_ab.py ...   # as root: real-time, both cores for the run
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def export_engine(rev: str, into: Path) -> None:
    """``engine/`` of ``rev`` as the package ``engine_before`` under ``into``."""
    data = subprocess.run(["git", "archive", rev, "engine"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    (into / "engine").rename(into / "engine_before")
    for py in (into / "engine_before").rglob("*.py"):
        text = py.read_text(encoding="utf-8")
        py.write_text(re.sub(r"\bfrom engine\.", "from engine_before.", text), encoding="utf-8")


LUMA_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "luma" / "images"


def main() -> int:
    from engine.benchmark import list_images
    from engine.model import resolve_pack

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, metavar="REV", help="git revision to compare with")
    p.add_argument("--catalog", required=True, help="catalog folder (e.g. a kept bench catalog)")
    p.add_argument("--folder", default=str(LUMA_IMAGES), help="query photos (default: ../shared Luma images)")
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2, help="passes over the queries (default 2)")
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--model", metavar="PACK", default=None, help="model pack (default: the bundled default)")
    args = p.parse_args()
    pack = resolve_pack(args.model)          # both sides load this pack (the working tree's)

    files = list_images(Path(args.folder))
    queries = files[:: max(1, len(files) // args.queries)][:args.queries]
    with tempfile.TemporaryDirectory(prefix="search-ab-") as tmp:
        export_engine(args.before, Path(tmp))
        sys.path.insert(0, tmp)
        sides = {}
        for name, pkg in (("before", "engine_before"), ("now", "engine")):
            search = importlib.import_module(f"{pkg}.search")
            catalog = importlib.import_module(f"{pkg}.catalog").Catalog.open(args.catalog, create=False, readonly=True)
            model = importlib.import_module(f"{pkg}.model").load_model(pack)
            searcher = search.Searcher(catalog, model)
            searcher.search_path(queries[0], k=args.k)           # warm: index load, sessions
            sides[name] = searcher
        wall: dict[str, list[float]] = {n: [] for n in sides}
        cpu: dict[str, list[float]] = {n: [] for n in sides}
        differ = 0
        load = os.getloadavg()
        for rnd in range(args.rounds):
            for i, q in enumerate(queries):
                order = list(sides) if (i + rnd) % 2 == 0 else list(sides)[::-1]
                got = {}
                for name in order:
                    t, c = time.perf_counter(), time.process_time()
                    r = sides[name].search_path(q, k=args.k)
                    wall[name].append((time.perf_counter() - t) * 1000)
                    cpu[name].append((time.process_time() - c) * 1000)
                    got[name] = [(m.image_id, round(m.score, 9)) for m in r.results]
                differ += got["before"] != got["now"]
    print(f"{args.catalog}, k={args.k}: {len(queries)} queries x {args.rounds} rounds, "
          f"load average {[round(x, 2) for x in load]} -> {[round(x, 2) for x in os.getloadavg()]}")
    for name in sides:
        w, c = np.array(wall[name]), np.array(cpu[name])
        print(f"  {name:<7} wall p50 {np.percentile(w, 50):6.2f}  mean {w.mean():6.2f}  p95 {np.percentile(w, 95):6.2f}"
              f"   CPU p50 {np.percentile(c, 50):6.2f}  mean {c.mean():6.2f}")
    ratio = statistics.median(np.array(wall["now"]) / np.array(wall["before"]))
    cratio = statistics.median(np.array(cpu["now"]) / np.array(cpu["before"]))
    print(f"  paired median ratio now / before: wall {ratio:.3f}, CPU {cratio:.3f}")
    print(f"  results differ for {differ} of {len(queries) * args.rounds} searches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
