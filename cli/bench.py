"""``lookalike bench``: ingest speed (against a perceptual-hash peer), search latency per stage,
index recall / latency / memory / build time at scale, GUI start-up time, printed with the
machine's details. The measurements themselves are in engine/benchmark.py."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from cli.common import OK, add_model_option


def register(sub) -> None:
    from engine.benchmark import DEFAULT_SCALES

    p = sub.add_parser("bench", help="measure ingest, search, index and GUI start-up speed")
    p.add_argument("--folder", required=True, metavar="DIR",
                   help="images to ingest and query with (e.g. a few hundred of your catalog's photos)")
    add_model_option(p, help="model pack (default: the bundled default)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N images only")
    p.add_argument("--workers", type=int, default=None, help="ingest decode workers (default: automatic)")
    p.add_argument("--queries", type=int, default=50, metavar="N", help="search queries per catalog (default 50)")
    p.add_argument("--index-queries", type=int, default=200, metavar="N",
                   help="queries for index recall/latency (default 200)")
    p.add_argument("--scale", type=_scales, default=list(DEFAULT_SCALES), metavar="N,N",
                   help="catalog sizes for the index and search figures (default 100000; 1000000 "
                        "takes long: its build is minutes to an hour on 2 cores)")
    p.add_argument("--ef", type=_scales_ef, default=[128, 256, 512], metavar="N,N",
                   help="HNSW search depths to measure recall and latency at (default 128,256,512)")
    p.add_argument("--skip-scale", action="store_true", help="no synthetic large catalogs")
    p.add_argument("--skip-gui", action="store_true", help="no GUI start-up measurement")
    p.add_argument("--work-dir", default=None, metavar="DIR", help="where the benchmark catalogs go "
                   "(default: a temporary folder, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the benchmark catalogs (WORK_DIR/ingest, "
                   "WORK_DIR/scale-N): --search-only reuses them")
    p.add_argument("--search-only", metavar="CATALOG", default=None,
                   help="only measure search latency, against this existing catalog folder "
                        "(e.g. WORK_DIR/scale-100000 of a run with --keep)")
    p.add_argument("--search-k", type=int, default=10, metavar="K",
                   help="results per search query (default 10; the GUI asks 60)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write all figures as JSON")
    p.set_defaults(handler=run)


def _scales(text: str) -> list[int]:
    try:
        values = [int(float(x)) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers such as 100000,1000000") from None
    if any(v < 1000 for v in values):
        raise argparse.ArgumentTypeError("scales must be at least 1000 images")
    return values


def _scales_ef(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers such as 128,256") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("ef values must be positive")
    return values


def run(args) -> int:
    run_bench(args)
    return OK


def run_bench(args, out: Callable[[str], None] = print) -> dict:
    """Measure and print line by line (``out``); the figures also go to ``--json``."""
    from engine.benchmark import (bench_gui_startup, bench_index, bench_ingest, bench_phash,
                                  bench_search, build_synthetic_catalog, list_images, machine_info)
    from engine.errors import LookalikeError
    from engine.index import DEFAULT_EF_CONSTRUCTION, DEFAULT_M
    from engine.model import load_model

    model = load_model(args.model)
    info = machine_info(model)
    out("machine  " + ", ".join(f"{k}={v}" for k, v in info.items()))
    results: dict = {"machine": info}
    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise LookalikeError(f"{folder}: no such folder (--folder names the images to benchmark with)")
    files = list_images(folder, args.limit)
    if not files:
        raise LookalikeError(f"{folder}: no images to benchmark with")
    query_files = files[:: max(1, len(files) // args.queries)][:args.queries]
    if args.search_only:
        # the search part alone, against a catalog built before (e.g. a kept scale catalog)
        catalog_dir = Path(args.search_only).expanduser()
        if not (catalog_dir / "catalog.db").is_file():
            raise LookalikeError(f"{catalog_dir}: no catalog here (build one with --keep --work-dir)")
        for f in query_files:
            f.read_bytes()
        s = bench_search(catalog_dir, model, query_files, k=args.search_k)
        results["search"] = {str(catalog_dir): s}
        _print_stages(out, f"search, {catalog_dir}", s)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        return results
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # warm the page cache once so neither contender pays for the first disk read
        for f in files:
            f.read_bytes()
        ph = bench_phash(files) if importlib.util.find_spec("imagehash") else None
        if ph is None:
            out("pHash peer     skipped: imagehash is not installed (pip install 'lookalike[bench]')")
        else:
            out(f"pHash peer     {ph['images_per_s']:7.1f} images/s  ({ph['images']} images, {ph['seconds']:.1f} s, "
                f"{ph['cpu_ms_per_image']:.1f} CPU ms/image; PIL + imagehash.phash)")
        ing = bench_ingest(files, model, work / "ingest", workers=args.workers)
        out(f"ingest         {ing['images_per_s']:7.1f} images/s  ({ing['images']} images searchable after "
            f"{ing['seconds']:.1f} s, {ing['cpu_ms_per_image']:.1f} CPU ms/image)")
        out(f"  features     {ing['features_images_per_s']:7.1f} images/s  (local features of "
            f"{ing['features_images']} images in {ing['features_seconds']:.1f} s, "
            f"{ing['features_cpu_ms_per_image']:.1f} CPU ms/image; whole import {ing['total_seconds']:.1f} s)")
        results.update(phash=ph, ingest=ing)
        if ph is not None:
            ratio = ing["images_per_s"] / ph["images_per_s"]
            out(f"ingest / pHash {ratio:7.2f}x")
            results["ingest_over_phash"] = ratio

        s = bench_search(work / "ingest", model, query_files, k=args.search_k)
        results["search"] = {len(files): s}
        _print_stages(out, f"search, {ing['images']} images", s)

        results["scale"] = {}
        for n in ([] if args.skip_scale else args.scale):
            out(f"scale {n}: building a catalog of {n} images ({ing['images']} real + synthetic)")
            cat_dir = work / f"scale-{n}"
            build = build_synthetic_catalog(cat_dir, n, model.model_id, real_catalog=work / "ingest",
                                            progress=lambda m: None)
            out(f"  index build  {build['index_build_seconds']:.1f} s, {build['index_build_cpu_seconds']:.0f} CPU s "
                f"(PCA fit + HNSW M={DEFAULT_M} ef_construction={DEFAULT_EF_CONSTRUCTION} + save; "
                f"rows written in {build['rows_seconds']:.1f} s), projection {build['projection']}")
            idx = bench_index(cat_dir, queries=args.index_queries, ef_values=args.ef)
            out(f"  index RAM    {idx['rss_bytes_per_image']:.0f} B/image (RSS after loading "
                f"{idx['vectors']} vectors; file {build['index_file_bytes'] / idx['vectors']:.0f} B/image)")
            for row in idx["by_ef"]:
                out(f"  ef={row['ef']:<4} recall@10 {row['recall_at_10']:.4f} (index alone {row['recall_at_10_index_only']:.4f})"
                    f"  index p50 {row['hnsw_ms']['p50']:.3f} ms  +exact re-rank p50 {row['nearest_ms']['p50']:.2f}"
                    f" p95 {row['nearest_ms']['p95']:.2f} ms  {row['queries_per_s']:.0f} queries/s")
            s = bench_search(cat_dir, model, query_files, k=args.search_k)
            _print_stages(out, f"search, {n} images", s)
            results["scale"][n] = {"build": build, "index": idx, "search": s}
            if not args.keep:
                shutil.rmtree(cat_dir, ignore_errors=True)

        if not args.skip_gui:
            gui = bench_gui_startup()
            results["gui_startup"] = gui
            if gui is None:
                out("GUI start-up   n/a (desktop/ not installed)")
            elif "error" in gui:
                out(f"GUI start-up   failed: {gui['error']}")
            else:
                out(f"GUI start-up   p50 {gui['seconds']['p50']:.2f} s to a shown window "
                    f"(offscreen, {len(gui['runs'])} runs: {', '.join(f'{x:.2f}' for x in gui['runs'])})")
        results["machine"]["load_average_end"] = machine_info()["load_average"]
        out("load average at the end: " + str(results["machine"]["load_average_end"]))
    finally:
        if not args.work_dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


def _print_stages(out, title: str, stages: dict) -> None:
    load = stages.get("load_average", {})
    out(f"{title}: ms per stage, k={stages.get('k', 10)} ({stages['wall']['n']} queries; "
        f"load average {load.get('before')} before, {load.get('after')} after)")
    out(f"  {'stage':<14} {'wall p50':>8} {'wall p95':>8} {'CPU p50':>8} {'CPU p95':>8} {'runs':>5}")
    for stage, p in stages.items():
        if not isinstance(p, dict) or "p50" not in p:
            continue
        c = p.get("cpu") or {}
        cpu = f"{c['p50']:8.2f} {c['p95']:8.2f}" if c.get("p50") is not None else f"{'':8} {'':8}"
        out(f"  {stage:<14} {p['p50']:8.2f} {p['p95']:8.2f} {cpu} {p['n']:5d}")
