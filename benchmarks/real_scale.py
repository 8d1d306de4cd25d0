"""Real-photo scale benchmark: import, search and duplicate scan on catalogs of N real images.

    python -m benchmarks.real_scale --sizes 10000 --work-dir /tmp/real-scale [--json FILE]
    python -m benchmarks.real_scale --sizes 10000 --work-dir /tmp/real-scale --stages import

For each size N, in WORK_DIR/real-N/:

1. ``generate``: the folder of N images from real photos with 10% planted edited copies
   (benchmarks/real_catalog.py: its docstring says what makes the images distinct), reused when
   it was made before with the same settings.
2. ``peer``: the pHash peer of ``lookalike bench`` (PIL + imagehash.phash, one fresh process)
   over the same files, page cache warmed first.
3. ``import``: a fresh catalog, the folder imported as ``lookalike index DIR/originals
   DIR/uploads`` does (engine.ingest, the copies after their originals). Images/s, CPU, and the
   ratio to the peer.
4. ``search``: a fresh process opens the catalog and the model; the time to its first answer is
   added to the import's time: **time until searchable**. Then every planted copy (or
   ``--search-copies`` of them) and ``--search-originals`` originals without a copy are searched
   through ``engine.search.Searcher`` (k = 10, one result per image, the query's own catalog
   image excluded: the query is treated as a new upload, so verification and the passes for
   queries without a copy run as they would). p50/p95 wall per kind. A copy is **found first**
   when the first result is its original, scored at or above "copy".
5. ``scan``: ``lookalike dupes`` at the copy threshold (engine.duplicates.scan with the catalog's
   model, as the command runs it). Seconds, ms per image, the scan's stage timings. A reported
   group asserts that all its images are copies of each other: every pair inside a group is a
   reported pair. **Recall**: planted (copy, original) pairs inside one group. **Precision**:
   of the reported pairs that involve a planted copy or its original, the planted ones. Pairs
   between other originals are counted apart (false by construction).

Each stage runs in its own process, which reports its peak resident memory (``ru_maxrss``). The
load average is recorded before and after each stage (other programs share the machine). Ctrl+C
stops the running stage at its next step (the catalogs stay consistent) and the figures measured
so far are written. Figures: a table on stdout and a JSON file (default WORK_DIR/real-scale.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("generate", "peer", "import", "search", "scan")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)     # KiB on Linux


def _cancel_event() -> threading.Event:
    """An event set by Ctrl+C (SIGINT), which the engine's jobs poll between steps."""
    event = threading.Event()

    def handler(signum, frame):
        if event.is_set():                 # a second Ctrl+C: stop at once
            raise KeyboardInterrupt
        event.set()

    signal.signal(signal.SIGINT, handler)
    return event


class _Bar:
    """A tqdm bar driven by the engine's progress(done, total, message) callbacks."""

    def __init__(self, desc: str, unit: str = "img"):
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, unit=unit, file=sys.stderr, leave=False, mininterval=1.0)

    def __call__(self, done, total, message="") -> None:
        if done < self.bar.n:                # the next step of a job counts from 0 again
            self.bar.reset(total=total or None)
        elif total and self.bar.total != total:
            self.bar.total = total
        text = message if isinstance(message, str) and os.path.sep not in message else ""
        if text != getattr(self, "text", None):    # a step's name, not a file's path
            self.text = text
            self.bar.set_postfix_str(text[:30], refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------- stages (child processes)
def stage_generate(a) -> dict:
    from benchmarks.real_catalog import build_folder

    cancel = _cancel_event()
    bar = _Bar("generating")
    t = time.perf_counter()
    truth = build_folder(Path(a.folder), a.n, a.seed, a.copy_share, progress=lambda d, n: bar(d, n),
                         cancel=cancel)
    bar.close()
    return {"seconds_this_run": round(time.perf_counter() - t, 1), "generator_seconds": truth["seconds"],
            "images": truth["n"], "originals": len(truth["originals"]), "copies": len(truth["copies"]),
            "stats": truth["stats"]}


def stage_import(a) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    from engine.catalog import Catalog
    from engine.catalog_marker import remove_catalog
    from engine.ingest import ingest
    from engine.session import load_model_for

    cancel = _cancel_event()
    remove_catalog(Path(a.catalog))          # a previous run's; never a folder of other files
    folder = Path(a.folder)
    bar = _Bar("importing")
    with Catalog.open(a.catalog) as catalog:
        model = load_model_for(catalog)
        searchable: dict = {}

        def on_searchable(_report) -> None:     # the embedding pass is committed: searchable
            searchable.update(wall=time.perf_counter() - t, cpu=time.process_time() - c)

        t, c = time.perf_counter(), time.process_time()
        report = ingest(catalog, model, [str(folder / "originals"), str(folder / "uploads")],
                        progress=bar, cancel=cancel, on_searchable=on_searchable)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        bar.close()
        count = catalog.count_images()
    done = report.added + report.updated
    per_image = max(done, 1)
    split = {}
    if searchable:       # the two passes: until searchable, then the local features
        s_wall, s_cpu = searchable["wall"], searchable["cpu"]
        f_wall, f_cpu = wall - s_wall, cpu - s_cpu
        split = {"searchable_seconds": round(s_wall, 2),
                 "searchable_images_per_s": round(done / s_wall, 1) if s_wall else 0.0,
                 "searchable_cpu_ms_per_image": round(s_cpu / per_image * 1000, 2),
                 "features_seconds": round(f_wall, 2),
                 "features_images_per_s": round(done / f_wall, 1) if f_wall else 0.0,
                 "features_cpu_ms_per_image": round(f_cpu / per_image * 1000, 2)}
    return {"images": done, "catalog_images": count, "failed": len(report.failed), "cancelled": report.cancelled,
            **split,
            "seconds": round(wall, 2), "images_per_s": round(done / wall, 1) if wall else 0.0,
            "cpu_ms_per_image": round(cpu / per_image * 1000, 2),
            "process_seconds": round(time.perf_counter() - t0, 2),
            "process_cpu_seconds": round(time.process_time() - c0, 1)}


def _truth(a) -> dict:
    return json.loads((Path(a.folder) / "truth.json").read_text())


def _ids(catalog, folder: Path) -> dict[str, int]:
    """Catalog image id of each image of the folder, by its path relative to the folder."""
    root = str(folder.resolve()) + os.sep
    return {p[len(root):]: i for i, p in catalog.db.conn.execute("SELECT id, path FROM images")
            if p.startswith(root)}


def stage_search(a) -> dict:
    t0 = time.perf_counter()
    import numpy as np

    from engine import scoring
    from engine.benchmark import percentiles
    from engine.catalog import Catalog
    from engine.search import Searcher, SearchFilters
    from engine.session import load_model_for

    cancel = _cancel_event()
    folder = Path(a.folder).resolve()
    truth = _truth(a)
    copy_threshold = scoring.resolve_threshold("copy")
    rng = np.random.default_rng(a.seed + 17)
    copies = truth["copies"]
    if a.search_copies and a.search_copies < len(copies):
        copies = [copies[i] for i in sorted(rng.choice(len(copies), a.search_copies, replace=False))]
    copied = {c["original"] for c in truth["copies"]}
    plain = [o["path"] for o in truth["originals"] if o["path"] not in copied]
    originals = [plain[i] for i in sorted(rng.choice(len(plain), min(a.search_originals, len(plain)),
                                                     replace=False))]
    with Catalog.open(a.catalog, create=False) as catalog:
        model = load_model_for(catalog)
        searcher = Searcher(catalog, model)
        ids = _ids(catalog, folder)
        first = originals[0] if originals else copies[0]["path"]
        searcher.search_path(folder / first, k=10, group="image",
                             filters=SearchFilters(exclude_ids=frozenset({ids[first]})))
        first_answer = time.perf_counter() - t0
        walls: dict[str, list[float]] = {"copy": [], "original": []}
        per_copy, false_copies = {}, 0
        bar = _Bar("searching", unit="query")
        total = len(copies) + len(originals)
        queries = [("copy", c["path"], c) for c in copies] + [("original", p, None) for p in originals]
        for n, (kind, rel, c) in enumerate(queries):
            if cancel.is_set():
                break
            if rel not in ids:            # not imported (its error is in the import's figures)
                continue
            t = time.perf_counter()
            r = searcher.search_path(folder / rel, k=10, group="image",
                                     filters=SearchFilters(exclude_ids=frozenset({ids[rel]})))
            walls[kind].append((time.perf_counter() - t) * 1000)
            top = r.results[0] if r.results else None
            if kind == "copy":
                original = ids.get(c["original"])
                per_copy[rel] = {"edit": c["edit"], "top1": bool(top and top.image_id == original),
                                 "found": bool(top and top.image_id == original and top.score >= copy_threshold),
                                 "score": round(float(top.score), 4) if top else None}
            elif top is not None and top.score >= copy_threshold:
                false_copies += 1
            bar(n + 1, total)
        bar.close()
    found = sum(v["found"] for v in per_copy.values())
    by_edit: dict[str, list[int]] = {}
    for v in per_copy.values():
        by_edit.setdefault(v["edit"], [0, 0])
        by_edit[v["edit"]][0] += v["found"]
        by_edit[v["edit"]][1] += 1
    return {"first_answer_seconds": round(first_answer, 2), "cancelled": cancel.is_set(),
            "copy_queries": {k: round(v, 2) if v is not None else None
                             for k, v in percentiles(walls["copy"]).items()},
            "original_queries": {k: round(v, 2) if v is not None else None
                                 for k, v in percentiles(walls["original"]).items()},
            "all_queries": {k: round(v, 2) if v is not None else None
                            for k, v in percentiles(walls["copy"] + walls["original"]).items()},
            "copies_searched": len(per_copy), "found_first": found,
            "found_first_share": round(found / len(per_copy), 4) if per_copy else None,
            "top1_share": round(sum(v["top1"] for v in per_copy.values()) / len(per_copy), 4) if per_copy else None,
            "originals_with_a_false_copy": false_copies,
            "found_first_by_edit": {e: round(f / t, 3) for e, (f, t) in sorted(by_edit.items())},
            "per_copy": per_copy}


def stage_scan(a) -> dict:
    from engine.catalog import Catalog
    from engine.duplicates import ScanCancelled, scan, scan_model

    cancel = _cancel_event()
    folder = Path(a.folder).resolve()
    truth = _truth(a)
    with Catalog.open(a.catalog, create=False, readonly=True) as catalog:
        ids = _ids(catalog, folder)
        bar = _Bar("scanning", unit="")
        t, c = time.perf_counter(), time.process_time()
        try:
            result = scan(catalog, threshold="copy", progress=bar, cancel=cancel, model=scan_model(catalog))
        except ScanCancelled:
            bar.close()
            return {"cancelled": True, "seconds": round(time.perf_counter() - t, 1)}
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        bar.close()
        images = catalog.count_images()
    paths = {i: p for p, i in ids.items()}
    reported = set()
    for g in result.groups:
        members = sorted([g.representative.image_id] + [m.image_id for m in g.members])
        reported.update(combinations(members, 2))
    planted = {}
    for cp in truth["copies"]:
        a_, b_ = ids.get(cp["path"]), ids.get(cp["original"])
        if a_ is not None and b_ is not None:
            planted[(min(a_, b_), max(a_, b_))] = cp
    involved = {i for p in planted for i in p}
    near = [p for p in reported if p[0] in involved or p[1] in involved]
    true = [p for p in near if p in planted]
    found = {planted[p]["path"] for p in true}
    by_edit: dict[str, list[int]] = {}
    for p, cp in planted.items():
        by_edit.setdefault(cp["edit"], [0, 0])
        by_edit[cp["edit"]][0] += p in reported
        by_edit[cp["edit"]][1] += 1
    false = [(paths.get(x), paths.get(y)) for x, y in set(reported) - set(planted)]
    near_false = [(paths.get(x), paths.get(y)) for x, y in set(near) - set(planted)]
    kinds, near_kinds = _false_pair_kinds(truth, false), _false_pair_kinds(truth, near_false)
    shared = near_kinds["same cell"] + near_kinds["same photo"]
    return {"images": images, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "false_pairs": len(false), "false_pairs_by_kind": kinds,
            "false_pairs_involving_planted": len(near_false),
            "false_pairs_involving_planted_by_kind": near_kinds,
            "precision_on_planted_not_counting_shared_photos":
                round(len(true) / (len(near) - shared), 4) if len(near) > shared else None,
            "ms_per_image": round(wall / max(images, 1) * 1000, 2),
            "timings": {k: round(v, 1) for k, v in result.timings.items()},
            "candidates": result.candidates, "rechecked": result.rechecked, "turned": result.turned,
            "groups": len(result.groups), "reported_pairs": len(reported), "planted_pairs": len(planted),
            "recall": round(len(true) / len(planted), 4) if planted else None,
            "precision_on_planted": round(len(true) / len(near), 4) if near else None,
            "pairs_involving_planted": len(near),
            "pairs_between_other_originals": len(reported) - len(near),
            "recall_by_edit": {e: round(f / n, 3) for e, (f, n) in sorted(by_edit.items())},
            "found_copies": sorted(found),
            "false_pair_sample": sorted([list(p) for p in false])[:200]}   # paths in the folder


def _false_pair_kinds(truth: dict, pairs) -> dict[str, int]:
    """What the two images of each false pair have in common: a cell (two grids sharing a
    quarter), another part of one source photo (quarters of one shelf photo show the same
    packs), a product (two Grocery shots of one product, two Luma views of one style), nothing."""
    from benchmarks.real_catalog import product_of

    cells = {o["path"]: {tuple(c) for c in o["cells"]} for o in truth["originals"]}
    for cp in truth["copies"]:
        cells[cp["path"]] = cells[cp["original"]]
    out = {"same cell": 0, "same photo": 0, "same product": 0, "nothing": 0}
    for x, y in pairs:
        a, b = cells.get(x, set()), cells.get(y, set())
        if a & b:
            out["same cell"] += 1
        elif {c[0] for c in a} & {c[0] for c in b}:
            out["same photo"] += 1
        elif {product_of(c[0]) for c in a} & {product_of(c[0]) for c in b}:
            out["same product"] += 1
        else:
            out["nothing"] += 1
    return out


STAGE_FUNCS = {"generate": stage_generate, "import": stage_import, "search": stage_search, "scan": stage_scan}


def _child_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=list(STAGE_FUNCS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--folder", required=True)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("-n", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--copy-share", type=float, default=0.1)
    ap.add_argument("--search-copies", type=int, default=0)
    ap.add_argument("--search-originals", type=int, default=100)
    a = ap.parse_args(argv)
    try:
        out = STAGE_FUNCS[a.stage](a)
        code = 130 if out.get("cancelled") else 0
    except KeyboardInterrupt:
        out, code = {"cancelled": True}, 130
    out["peak_rss_mb"] = _peak_rss_mb()
    Path(a.out).write_text(json.dumps(out))
    return code


# ---------------------------------------------------------------------- the command
def _run_stage(stage: str, args, n: int, folder: Path, catalog: Path) -> dict:
    out = catalog.parent / f"stage-{stage}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.real_scale", "_stage", stage, "--out", str(out),
           "--folder", str(folder), "--catalog", str(catalog), "-n", str(n), "--seed", str(args.seed),
           "--copy-share", str(args.copy_share), "--search-copies", str(args.search_copies),
           "--search-originals", str(args.search_originals)]
    before = _load()
    t = time.perf_counter()
    # the stage runs in its own session: Ctrl+C reaches this process, which passes it on (the
    # stage stops at its next step; a second Ctrl+C stops it at once)
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    interrupted = False
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
            proc.send_signal(signal.SIGINT)
    result = json.loads(out.read_text()) if out.is_file() else {"error": f"exit status {code}"}
    result["stage_wall_seconds"] = round(time.perf_counter() - t, 1)
    result["load_average"] = {"before": before, "after": _load()}
    if interrupted or code == 130 or result.get("cancelled"):
        raise _Cancelled(result)
    if code != 0:
        raise RuntimeError(f"stage {stage} failed (exit status {code})")
    return result


class _Cancelled(Exception):
    pass


def _peer(folder: Path) -> dict:
    from engine.benchmark import bench_phash, list_images

    files = list_images(folder)
    for f in files:                         # warm the page cache: neither contender pays for it
        f.read_bytes()
    before = _load()
    r = bench_phash(files)
    r["load_average"] = {"before": before, "after": _load()}
    return r


def measure_size(args, n: int, results: dict, out=print) -> dict:
    base = Path(args.work_dir) / f"real-{n}"
    folder, catalog = base / "images", base / "catalog"
    base.mkdir(parents=True, exist_ok=True)
    fig: dict = results.setdefault("sizes", {}).setdefault(str(n), {})
    for key in ("import_over_peer", "time_until_searchable_s", "searchable_images_per_s",
                "scan_finds_of_search_found", "search_found_not_scan"):
        fig.pop(key, None)                  # derived below from this run's figures
    for stage in args.stages:
        out(f"[{n}] {stage} …")
        fig.pop(stage, None)                # an earlier run's, now measured again
        if stage == "peer":
            fig["peer"] = _peer(folder)
        else:
            fig[stage] = _run_stage(stage, args, n, folder, catalog)
        _save(args, results)
    imp, peer, search = fig.get("import"), fig.get("peer"), fig.get("search")
    if imp and peer:       # the target compares the time until searchable with the peer
        rate = imp.get("searchable_images_per_s") or imp["images_per_s"]
        fig["import_over_peer"] = round(rate / peer["images_per_s"], 2)
    if imp and search:
        until = imp.get("searchable_seconds", imp["seconds"])
        fig["time_until_searchable_s"] = round(until + search["first_answer_seconds"], 1)
        fig["searchable_images_per_s"] = round(imp["images"] / fig["time_until_searchable_s"], 1)
    scan = fig.get("scan")
    if search and scan and search.get("per_copy"):
        by_search = {p for p, v in search["per_copy"].items() if v["found"]}
        by_scan = set(scan.get("found_copies", ()))
        fig["scan_finds_of_search_found"] = round(len(by_search & by_scan) / len(by_search), 4) if by_search else None
        fig["search_found_not_scan"] = len(by_search - by_scan)
    _save(args, results)
    return fig


def _save(args, results: dict) -> None:
    results["machine"]["load_average_now"] = _load()
    Path(args.json).write_text(json.dumps(results, indent=1))


def print_table(results: dict, out=print) -> None:
    def get(d, *keys):
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    rows = [
        ("images (originals + copies)", lambda s: f"{get(s, 'generate', 'originals')} + {get(s, 'generate', 'copies')}"
         if get(s, "generate") else "-"),
        ("pHash peer, images/s", lambda s: f(get(s, "peer", "images_per_s"))),
        ("import until searchable, images/s", lambda s: f(get(s, "import", "searchable_images_per_s"))),
        ("import until searchable / peer", lambda s: f(get(s, "import_over_peer"), "{:.2f}x")),
        ("import until searchable, CPU ms/image", lambda s: f(get(s, "import", "searchable_cpu_ms_per_image"))),
        ("local-feature pass, images/s", lambda s: f(get(s, "import", "features_images_per_s"))),
        ("local-feature pass, CPU ms/image", lambda s: f(get(s, "import", "features_cpu_ms_per_image"))),
        ("whole import, images/s", lambda s: f(get(s, "import", "images_per_s"))),
        ("whole import, CPU ms/image", lambda s: f(get(s, "import", "cpu_ms_per_image"))),
        ("time until searchable, s", lambda s: f(get(s, "time_until_searchable_s"))),
        ("import peak RSS, MB", lambda s: f(get(s, "import", "peak_rss_mb"), "{:.0f}")),
        ("search p50 / p95 ms, copies", lambda s: f"{f(get(s, 'search', 'copy_queries', 'p50'))} / "
                                                  f"{f(get(s, 'search', 'copy_queries', 'p95'))}"),
        ("search p50 / p95 ms, originals", lambda s: f"{f(get(s, 'search', 'original_queries', 'p50'))} / "
                                                     f"{f(get(s, 'search', 'original_queries', 'p95'))}"),
        ("search finds copies first", lambda s: f(get(s, "search", "found_first_share"), "{:.3f}")),
        ("search peak RSS, MB", lambda s: f(get(s, "search", "peak_rss_mb"), "{:.0f}")),
        ("dupes scan, s", lambda s: f(get(s, "scan", "seconds"))),
        ("dupes scan, ms/image", lambda s: f(get(s, "scan", "ms_per_image"))),
        ("scan recall (planted pairs)", lambda s: f(get(s, "scan", "recall"), "{:.3f}")),
        ("scan precision (their pairs)", lambda s: f(get(s, "scan", "precision_on_planted"), "{:.3f}")),
        ("scan: other pairs reported", lambda s: f(get(s, "scan", "pairs_between_other_originals"), "{}")),
        ("scan: false pairs (same cell / photo / product / nothing)",
         lambda s: f"{f(get(s, 'scan', 'false_pairs'), '{}')} ("
                   + " / ".join(str(v) for v in (get(s, "scan", "false_pairs_by_kind") or {}).values()) + ")"),
        ("scan precision, not counting shared photos",
         lambda s: f(get(s, "scan", "precision_on_planted_not_counting_shared_photos"), "{:.3f}")),
        ("scan finds of search's finds", lambda s: f(get(s, "scan_finds_of_search_found"), "{:.3f}")),
        ("scan peak RSS, MB", lambda s: f(get(s, "scan", "peak_rss_mb"), "{:.0f}")),
    ]
    sizes = results.get("sizes", {})
    from tabulate import tabulate

    table = [[name] + [fn(sizes[n]) for n in sizes] for name, fn in rows]
    out(tabulate(table, headers=["", *sizes], tablefmt="github"))
    for n, s in sizes.items():
        loads = [f"{k} {get(v, 'load_average', 'before')}→{get(v, 'load_average', 'after')}"
                 for k, v in s.items() if isinstance(v, dict) and "load_average" in v]
        out(f"load average ({n}): " + "; ".join(loads))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_stage":
        return _child_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000", help="catalog sizes, comma-separated (default 10000)")
    ap.add_argument("--work-dir", required=True, help="where the folders and catalogs go (kept for reuse)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--copy-share", type=float, default=0.1, help="share of the images that are planted copies")
    ap.add_argument("--stages", default=",".join(STAGES),
                    help=f"stages to run, comma-separated (default all: {','.join(STAGES)}); a stage "
                         "reuses what an earlier run left (the folder, the catalog)")
    ap.add_argument("--search-copies", type=int, default=0, metavar="N",
                    help="planted copies to search (default 0: all of them)")
    ap.add_argument("--search-originals", type=int, default=100, metavar="N",
                    help="originals without a copy to search (default 100)")
    ap.add_argument("--json", default=None, help="figures file (default WORK_DIR/real-scale.json)")
    args = ap.parse_args(argv)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        ap.error(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
    sizes = [int(float(x)) for x in args.sizes.split(",") if x.strip()]
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    args.json = args.json or str(Path(args.work_dir) / "real-scale.json")
    from engine.benchmark import machine_info

    command = "python -m benchmarks.real_scale " + " ".join(argv)
    results = {"command": command, "machine": machine_info()}
    try:       # figures of stages an earlier run measured (e.g. --stages scan after a full run)
        earlier = json.loads(Path(args.json).read_text())
        results["sizes"] = {n: s for n, s in earlier.get("sizes", {}).items()}
        results["earlier_commands"] = earlier.get("earlier_commands", []) + [earlier.get("command")]
    except (OSError, ValueError):
        pass
    print("machine  " + ", ".join(f"{k}={v}" for k, v in results["machine"].items()))
    code = 0
    try:
        for n in sizes:
            measure_size(args, n, results)
    except _Cancelled as exc:
        print("interrupted: the figures measured so far are in " + args.json, file=sys.stderr)
        results.setdefault("cancelled", exc.args[0] if exc.args else True)
        code = 130
    except KeyboardInterrupt:
        print("interrupted: the figures measured so far are in " + args.json, file=sys.stderr)
        code = 130
    except RuntimeError as exc:           # a stage failed: its traceback is above
        print(f"{exc}: the figures measured so far are in {args.json}", file=sys.stderr)
        code = 1
    _save(args, results)
    print_table(results)
    print(f"figures: {args.json}")
    return code


if __name__ == "__main__":
    sys.exit(main())
