"""`lookalike bench`: ingest speed (against a perceptual-hash peer), search latency per stage,
index recall / latency / memory / build time at scale, GUI start-up time.

Everything here is measured on the machine it runs on and printed with that machine's details;
docs/benchmarks.md records the figures and the commands that produced them.

The scale part uses synthetic embeddings (:func:`synthetic_embeddings`): products in clusters of
a few photos, 1280-d, whose variance spectrum follows the power law fitted to the real Luma
embeddings. The real JPEGs are searched against that catalog, so decode, model, SQLite and
re-ranking costs are real; only the other catalog rows are synthetic.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .catalog_marker import remove_catalog
from .errors import LookalikeError

DEFAULT_SCALES = (100_000,)
# the variance spectrum of the Luma embeddings (EfficientNet-Lite0, 717 photos) decays like
# i^-1.33 and their mean has norm 0.70 (typical cosine between two photos ~0.5)
SPECTRUM_EXPONENT = 1.33
MEAN_NORM = 0.70
WITHIN_CLUSTER = 0.25          # share of the spread that separates photos of one product
CLUSTER_MEAN_SIZE = 3.0


# ---------------------------------------------------------------------- machine
def machine_info(model=None) -> dict:
    info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "python": platform.python_version(),
            "platform": platform.platform(), "cpu": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["cores"] = os.cpu_count()
    try:
        mem = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        info["ram_gib"] = round(int(mem["MemTotal"].split()[0]) / 2**20, 1)
    except (OSError, KeyError, ValueError):
        pass
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import onnxruntime as ort
        info["onnxruntime"] = ort.__version__
    except ImportError:
        pass
    if model is not None:
        info["model"] = model.model_id
        info["provider"] = model.provider
    return info


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def rss_bytes() -> int:
    """Resident memory of this process now (Linux; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def percentiles(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": int(v.size)}


# ---------------------------------------------------------------------- synthetic embeddings
def _spectrum_sd(dim: int, exponent: float, mean_norm: float) -> np.ndarray:
    lam = np.arange(1, dim + 1, dtype=np.float64) ** -exponent
    lam *= (1.0 - mean_norm ** 2) / lam.sum()
    return np.sqrt(lam).astype(np.float32)


def synthetic_embeddings(n: int, *, dim: int = 1280, seed: int = 0, chunk: int = 50_000,
                         exponent: float = SPECTRUM_EXPONENT) -> Iterator[np.ndarray]:
    """Unit vectors resembling image embeddings, yielded in chunks (a million 1280-d float32 is
    5 GB: never all at once). Products are clusters of ~3 photos; the spread follows a power-law
    spectrum (in the coordinate basis: PCA and HNSW do not care about the rotation)."""
    sd = _spectrum_sd(dim, exponent, MEAN_NORM)
    done = 0
    part = 0
    while done < n:
        rng = np.random.default_rng([seed, part])
        m = min(chunk, n - done)
        sizes = rng.geometric(1.0 / CLUSTER_MEAN_SIZE, size=m)
        owner = np.repeat(np.arange(m), sizes)[:m]
        centres = rng.standard_normal((owner[-1] + 1, dim), dtype=np.float32) * (sd * np.sqrt(1 - WITHIN_CLUSTER))
        centres[:, 0] += MEAN_NORM
        x = centres[owner]
        x += rng.standard_normal((m, dim), dtype=np.float32) * (sd * np.sqrt(WITHIN_CLUSTER))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x
        done += m
        part += 1


def synthetic_queries(base: np.ndarray, n: int, *, seed: int = 1,
                      exponent: float = SPECTRUM_EXPONENT) -> np.ndarray:
    """Another photo of ``n`` catalog products: catalog vectors plus within-product noise."""
    rng = np.random.default_rng(seed)
    sd = _spectrum_sd(base.shape[1], exponent, MEAN_NORM)
    pick = rng.choice(len(base), size=min(n, len(base)), replace=False)
    q = base[pick] + rng.standard_normal((len(pick), base.shape[1]), dtype=np.float32) * (sd * np.sqrt(WITHIN_CLUSTER))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


class TopK:
    """Exact top-k by inner product over vectors seen in chunks (the ground truth)."""

    def __init__(self, queries: np.ndarray, k: int):
        self.q = queries
        self.k = k
        self.ids = np.full((len(queries), 0), -1, np.int64)
        self.sims = np.zeros((len(queries), 0), np.float32)

    def update(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        s = self.q @ vectors.T
        all_s = np.concatenate([self.sims, s], axis=1)
        all_i = np.concatenate([self.ids, np.broadcast_to(ids, s.shape)], axis=1)
        keep = np.argsort(-all_s, axis=1, kind="stable")[:, :self.k]
        self.sims = np.take_along_axis(all_s, keep, 1)
        self.ids = np.take_along_axis(all_i, keep, 1)


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(a[:k].tolist()) & set(b[:k].tolist())) / k for a, b in zip(found, truth)]))


# ---------------------------------------------------------------------- ingest vs pHash
def list_images(folder: Path, limit: int | None = None) -> list[Path]:
    from .imaging import is_image_path

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_path(p))
    return files[:limit] if limit else files


_PHASH_PEER = """
import json, sys, time
import imagehash
from PIL import Image
files = json.load(sys.stdin)
t, c = time.perf_counter(), time.process_time()
for f in files:
    with Image.open(f) as im:
        imagehash.phash(im)
print(json.dumps([time.perf_counter() - t, time.process_time() - c]))
"""


def bench_phash(files: Sequence[Path]) -> dict:
    """The perceptual-hash peer: PIL open + imagehash.phash, single process, as such tools do. It
    runs in a fresh Python process that imports nothing of Lookalike: this process's allocator
    setting (``imaging.HEAP_TOP_PAD``) would otherwise speed up its full-size PIL decodes too
    (18.2 instead of ~24 CPU ms/image), which a pHash tool does not have."""
    try:
        import imagehash  # noqa: F401  (the child needs it: a clear error here)
    except ImportError as exc:
        raise LookalikeError(f"the pHash peer needs imagehash ({exc}); install the 'bench' extra") from None
    done = subprocess.run([sys.executable, "-c", _PHASH_PEER], input=json.dumps([str(f) for f in files]),
                          capture_output=True, text=True, check=True)
    wall, cpu = json.loads(done.stdout.strip().splitlines()[-1])
    return {"images": len(files), "seconds": wall, "images_per_s": len(files) / wall,
            "cpu_ms_per_image": cpu / len(files) * 1000}


def bench_ingest(files: Sequence[Path], model, catalog_dir: Path, *, workers: int | None = None) -> dict:
    from .catalog import Catalog
    from .ingest import ingest

    remove_catalog(catalog_dir)        # a previous run's; never a folder of other files
    t, c = time.perf_counter(), time.process_time()
    searchable: dict[str, float] = {}

    def on_searchable(_report) -> None:
        searchable.update(wall=time.perf_counter() - t, cpu=time.process_time() - c)

    with Catalog.open(catalog_dir) as cat:
        report = ingest(cat, model, [str(f) for f in files], workers=workers, on_searchable=on_searchable)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    done = report.added + report.updated
    first = searchable.get("wall", wall)
    feats = report.features
    n_feats = feats.stored if feats else 0
    # images/s and CPU ms/image until the images are searchable (the embedding pass), then the
    # local-feature pass on its own, and the whole import
    return {"images": done, "failed": len(report.failed), "seconds": first,
            "images_per_s": done / first if first else 0.0,
            "cpu_ms_per_image": searchable.get("cpu", cpu) / max(done, 1) * 1000,
            "features_images": n_feats,
            "features_seconds": feats.seconds if feats else 0.0,
            "features_images_per_s": feats.images_per_second if feats else 0.0,
            "features_cpu_ms_per_image": (cpu - searchable.get("cpu", cpu)) / max(n_feats, 1) * 1000,
            "total_seconds": wall, "total_images_per_s": done / wall if wall else 0.0}


# ---------------------------------------------------------------------- scale
def build_synthetic_catalog(directory: Path, n: int, model_id: str, *, seed: int = 0,
                            real_catalog: Path | None = None, progress: Callable[[str], None] = print
                            ) -> dict:
    """A catalog of ``n`` images: the real ones of ``real_catalog`` (rows copied, embeddings
    kept) plus synthetic rows with fake paths. Returns timings of the steps."""
    from .catalog import Catalog

    remove_catalog(directory)          # a previous run's; never a folder of other files
    out: dict = {}
    with Catalog.open(directory) as cat:
        t = time.perf_counter()
        real = 0
        if real_catalog is not None:
            from .features import FEATURES_VERSION

            with Catalog.open(real_catalog, create=False, readonly=True) as src:
                rows = []
                records = list(src.iter_records())
                # the real rows keep their stored local features, as a real catalog has them
                # (without them every search would decode its candidates' files to verify them)
                blobs = src.local_feature_blobs([r["image_id"] for r in records], FEATURES_VERSION)
                dense = src.dense_feature_blobs([r["image_id"] for r in records], FEATURES_VERSION)
                for rec in records:
                    emb = src.embeddings([rec["image_id"]])[0]
                    row = {"path": rec["path"], "content_hash": rec["content_hash"],
                           "file_size": rec["file_size"], "mtime": 0.0, "width": rec["width"],
                           "height": rec["height"], "product_id": None, "model_id": model_id,
                           "embedding": emb, "labels": rec["labels"]}
                    b = blobs.get(rec["image_id"])
                    if b is not None:
                        row["local_features"] = (FEATURES_VERSION, *b, dense.get(rec["image_id"]))
                    rows.append(row)
                cat.put_images(rows)
                real = len(rows)
        done = real
        for chunk in synthetic_embeddings(n - real, seed=seed, chunk=20_000):
            rows = [{"path": f"/synthetic/{done + i:07d}.jpg", "content_hash": f"s{done + i:015x}",
                     "file_size": 100_000, "mtime": 0.0, "width": 1300, "height": 1600,
                     "product_id": None, "model_id": model_id, "embedding": v,
                     "labels": [["synthetic", 1.0]]} for i, v in enumerate(chunk)]
            cat.put_images(rows)
            done += len(rows)
            progress(f"  catalog rows: {done}/{n}")
        out["rows_seconds"] = time.perf_counter() - t
        t, c = time.perf_counter(), time.process_time()
        projection = cat.vectors.fit_projection() if cat.vectors.projection_due() else None
        if projection is None:
            cat.vectors.rebuild()
        out["index_build_seconds"] = time.perf_counter() - t    # PCA fit + HNSW build + save
        out["index_build_cpu_seconds"] = time.process_time() - c
        out["projection"] = None if projection is None else {
            "dim": projection.dim, "explained": round(projection.explained, 4)}
        out["index_file_bytes"] = cat.index_path.stat().st_size
    return out


def bench_index(catalog_dir: Path, *, queries: int = 200, k: int = 10, seed: int = 1,
                ef_values: Sequence[int] = (64, 128, 256)) -> dict:
    """Recall@k against exact search over the stored full embeddings, query latency (single
    thread) of the index alone (``hnsw_ms``: graph walk + in-memory scoring, for a projected
    index) and of ``Catalog.nearest`` (``nearest_ms``: + exact re-rank of the shortlist with the
    stored embeddings), RAM per image of the loaded index."""
    from .catalog import Catalog

    with Catalog.open(catalog_dir, create=False) as cat:
        # queries: other photos of synthetic products (the catalog's rows + within-product noise)
        ids_all = np.array(cat.image_ids_at("/synthetic"), np.int64)
        rng = np.random.default_rng(seed)
        base_ids = np.sort(rng.choice(ids_all, size=min(queries, len(ids_all)), replace=False))
        q = synthetic_queries(cat.embeddings(base_ids.tolist()), len(base_ids), seed=seed)
        truth = TopK(q, k)
        for ids, vecs in cat.iter_embeddings(batch=20_000):
            truth.update(ids, vecs)
        t = time.perf_counter()
        index = cat.vectors.index()
        load_s = time.perf_counter() - t
        n = len(index)
        res: dict = {"vectors": n, "index_load_seconds": load_s,
                     "rss_bytes_per_image": index_rss_bytes(catalog_dir) / n,
                     "index": index.info(), "by_ef": []}
        res["index"].pop("deleted", None)
        for ef in ef_values:
            index.set_ef(ef)
            hnsw_ms, full_ms, found = [], [], []
            for v in q:
                t = time.perf_counter()
                index.query(v, k)
                hnsw_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                ids, _ = cat.vectors.nearest(v, k)
                full_ms.append((time.perf_counter() - t) * 1000)
                found.append(ids[0])
            hnsw_only = index.query(q, k)[0]
            res["by_ef"].append({
                "ef": ef, "recall_at_10": recall_at(np.array(found), truth.ids, k),
                "recall_at_10_index_only": recall_at(hnsw_only, truth.ids, k),
                "hnsw_ms": percentiles(hnsw_ms), "nearest_ms": percentiles(full_ms),
                "queries_per_s": 1000.0 / statistics.mean(full_ms)})
        index.set_ef(index.ef)
    return res


def index_rss_bytes(catalog_dir: Path) -> int:
    """Resident memory that opening the catalog and loading its index adds to a fresh process
    (measured in a child process, so nothing else this process allocated is counted)."""
    code = (
        "import sys, gc\n"
        "from engine.benchmark import rss_bytes\n"
        "from engine.catalog import Catalog\n"
        "import numpy, hnswlib, sqlite_utils\n"
        "cat = Catalog.open(sys.argv[1], create=False, readonly=True)\n"
        "cat.vectors.projection_key(); gc.collect(); before = rss_bytes()\n"
        "index = cat.vectors.index(); gc.collect()\n"
        "print(rss_bytes() - before)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(catalog_dir)], capture_output=True, text=True,
                          cwd=str(Path(__file__).resolve().parent.parent), timeout=1800)
    if proc.returncode != 0:
        raise LookalikeError(f"{catalog_dir}: index memory probe failed "
                             f"({(proc.stderr.strip().splitlines() or ['?'])[-1]})")
    return int(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- search latency
def bench_search(catalog_dir: Path, model, queries: Sequence[Path], *, k: int = 10) -> dict:
    """Per-stage latency of single searches with a warm engine (model and index loaded once):
    wall and CPU milliseconds (the whole process's CPU time, every thread: the stable figure
    while other programs load the machine), with the load average before and after. A stage
    that runs for some queries only (the mirrored pass) has its percentiles over those."""
    from .catalog import Catalog
    from .search import Searcher

    load_before = _load_average()
    with Catalog.open(catalog_dir, create=False) as cat:
        searcher = Searcher(cat, model)
        searcher.search_path(queries[0], k=k)        # warm: index load, first-run allocations
        stages: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        walls, cpus = [], []
        for path in queries:
            t, c = time.perf_counter(), time.process_time()
            r = searcher.search_path(path, k=k)
            walls.append((time.perf_counter() - t) * 1000)
            cpus.append((time.process_time() - c) * 1000)
            if r.error:
                raise LookalikeError(f"{path}: {r.error}")
            for stage, ms in r.timings.items():
                stages.setdefault(stage, []).append(ms)
            for stage, ms in r.cpu.items():
                cpu.setdefault(stage, []).append(ms)
    out = {stage: {**percentiles(v), "cpu": percentiles(cpu.get(stage, []))} for stage, v in stages.items()}
    out["wall"] = {**percentiles(walls), "cpu": percentiles(cpus)}
    out["k"] = k
    out["load_average"] = {"before": load_before, "after": _load_average()}
    return out


# ---------------------------------------------------------------------- GUI start-up
def bench_gui_startup(runs: int = 3) -> dict | None:
    """Seconds from launching ``python -m desktop.app --ready-probe`` (offscreen) until its
    window is shown and the event loop runs. None when the GUI is not installed."""
    import importlib.util

    if importlib.util.find_spec("desktop.app") is None:
        return None
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "desktop.app", "--ready-probe"], env=env,
                              capture_output=True, text=True, timeout=120,
                              cwd=str(Path(__file__).resolve().parent.parent))
        if "READY" not in proc.stdout:
            return {"error": (proc.stderr.strip().splitlines() or ["no READY line"])[-1]}
        times.append(time.perf_counter() - t)
    return {"seconds": percentiles(times), "runs": times}
