"""Fit and check the "same product" score on re-shot photos (grocery phone photos, Luma other views).

    python benchmarks/same_product.py collect --out /tmp/sp          # evidence of every candidate
    python benchmarks/same_product.py fit --details /tmp/sp          # cross-validated fit + table
    python benchmarks/same_product.py table --details /tmp/sp        # the shipped score, per set

``collect`` builds the catalogs (grocery ``products.csv`` for phone -> catalog, ``photos.csv`` for
phone -> phone, the Luma photos and the Luma feed for other views) in ``--cache``, searches every
query of the chosen split with the real pipeline (a query that is a photo the learned metric was
fitted on with a metric fitted without it, as ``lookalike eval`` does) and writes each query's
first candidate group (the 50 nearest by embedding, every one scored) with its evidence and
whether it is the right product. ``fit``
fits the logistic "same product" model on the VAL split only (grocery) and the Luma views,
cross-validated by query, and prints the coefficients; ``table`` prints R@1 per set and group,
ranking by the embedding alone and by the shipped score, and precision/recall at the "same
product" threshold. Nothing is tuned per product: the grocery test split is only ever reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import scoring  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
GROCERY = SHARED / "grocery"
LUMA = SHARED / "luma"
CANDIDATES = 50


def _sets(split: str) -> list[tuple[str, Path, Path]]:
    """(name, gallery, queries CSV)."""
    return [(f"p2c-{split}", GROCERY / "products.csv", GROCERY / "eval" / f"{split}_phone_to_catalog.csv"),
            (f"p2p-{split}", GROCERY / "photos.csv", GROCERY / "eval" / f"{split}_phone_to_phone.csv"),
            ("views", LUMA / "images", LUMA / "eval" / "views.csv"),
            ("views-feed", LUMA / "products.csv", LUMA / "eval" / "views.csv"),
            ("copies", LUMA / "eval" / "copies_gallery.txt", LUMA / "eval" / "copies.csv")]


def collect(args) -> None:
    from engine.catalog import Catalog
    from engine.evaluation import _own_ids, held_out_metrics, read_gallery, read_queries
    from engine.ingest import ingest
    from engine.model import load_model
    from engine.search import SearchFilters, Searcher

    model = load_model(None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split in args.split.split(","):
        for name, gallery, csv_path in _sets(split):
            if (name in ("views", "views-feed", "copies") and split != args.split.split(",")[0]) or (args.sets and name not in args.sets):
                continue
            catalog = Catalog.open(Path(args.cache) / f"{gallery.parent.name}-{gallery.name.replace('.', '-')}")
            ingest(catalog, model, read_gallery([str(gallery)]) if gallery.suffix == ".txt" else [str(gallery)])
            searcher = Searcher(catalog, model)
            queries = read_queries(csv_path)
            owns = [_own_ids(catalog, q.query) for q in queries]
            plan, _ = held_out_metrics(catalog, owns)      # queries never teach the learned metric
            rows = []
            for n, q in enumerate(queries, 1):
                searcher.metric_override = plan[n - 1]
                filters = SearchFilters(exclude_ids=owns[n - 1])
                result = searcher.search_path(q.query, k=CANDIDATES, filters=filters, group="image")
                relevant = {str(Path(p)) for p in q.relevant}
                for m in result.results:
                    rows.append({"query": q.query, "group": q.extra.get("group", "all"), "path": m.path,
                                 "product_id": m.product.get("product_id"), "score": m.score,
                                 "label": str(Path(m.path)) in relevant, **m.evidence.to_json()})
                if n % 25 == 0:
                    print(f"{name}: {n}/{len(queries)}", file=sys.stderr)
            with open(out / f"{name}.jsonl", "w") as fh:
                for r in rows:
                    fh.write(json.dumps(r) + "\n")
            catalog.close()
            print(f"{name}: {len(queries)} queries, {len(rows)} candidates -> {out / (name + '.jsonl')}")


def load(details: Path, name: str) -> list[dict]:
    with open(details / f"{name}.jsonl") as fh:
        return [json.loads(line) for line in fh]


def by_query(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["query"], []).append(r)
    return out


def r_at_1(rows: list[dict], key) -> dict[str, float]:
    """R@1 per group (and "all") over the queries with a right candidate among theirs or not."""
    hits: dict[str, list[bool]] = {}
    for q, cands in by_query(rows).items():
        best = max(cands, key=key)
        for g in ("all", cands[0]["group"]):
            hits.setdefault(g, []).append(bool(best["label"]))
    return {g: float(np.mean(v)) for g, v in hits.items()}


#: each sub-model of the "same product" score, the sets it is fitted on, and its features
SUBMODELS = {
    "studio": (("views",), ("cosine", "colour", "log_inliers")),
    "studio_learned": (("views-feed",), ("product", "colour", "log_inliers")),
    "phone": (("p2c-val",), ("centre", "log_inliers", "text")),
    "phone_learned": (("p2p-val",), ("product", "log_inliers", "text")),
}


def features(r: dict) -> dict[str, float]:
    return {"cosine": r["cosine"], "colour": r["colour"], "log_inliers": float(np.log1p(r["inliers"])),
            "text": r["text"], "product": r.get("product", r["cosine"]), "centre": r.get("centre", r["cosine"])}


def fit(args) -> None:
    """Each sub-model on its own queries (the gate picks one per query: a studio backdrop or a
    phone photo; a catalog with or without a learned metric), cross-validated by query."""
    details = Path(args.details)
    for name, (sets, names) in SUBMODELS.items():
        rows = [r for s in sets for r in load(details, s)]
        x = np.array([[features(r)[n] for n in names] for r in rows])
        y = np.array([r["label"] for r in rows], float)
        if name.startswith("phone") and not any(r["text"] for r in rows):
            keep = [i for i, n in enumerate(names) if n != "text"]      # no words read: no text term
            x, names = x[:, keep], tuple(names[i] for i in keep)
        coef, intercept = _logistic(x, y, args.l2)
        print(f"{name}: " + json.dumps({"intercept": round(intercept, 3),
                                        "coef": {n: round(float(c), 3) for n, c in zip(names, coef)}}))
        queries = np.array([r["query"] for r in rows])
        fold = {q: i % 5 for i, q in enumerate(np.random.default_rng(0).permutation(np.unique(queries)))}
        f = np.array([fold[q] for q in queries])
        pred = np.zeros(len(y))
        for k in range(5):
            c, b = _logistic(x[f != k], y[f != k], args.l2)
            pred[f == k] = x[f == k] @ c + b
        for n, r in enumerate(rows):
            r["cv"] = pred[n]
        for s in sets:
            print(f"  {s:8s} R@1 cosine {_fmt(r_at_1(rows, lambda r: r['cosine']))}")
            print(f"  {s:8s} R@1 cv     {_fmt(r_at_1(rows, lambda r: r['cv']))}")


def _logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 200) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (standardised inside)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    a = np.c_[z, np.ones(len(z))]
    w = np.zeros(a.shape[1])
    reg = np.r_[np.full(z.shape[1], l2), 0.0]
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -30, 30)))
        g = a.T @ (p - y) + reg * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    coef = w[:-1] / sd
    return coef, float(w[-1] - (w[:-1] * mu / sd).sum())


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{g}={v:.3f}" for g, v in sorted(d.items(), key=lambda kv: kv[0] != "all"))


def table(args) -> None:
    details = Path(args.details)
    threshold = scoring.THRESHOLDS["same product"]
    for path in sorted(details.glob("*.jsonl")):
        rows = load(details, path.stem)
        rescore(rows)
        print(f"{path.stem:9s} cosine {_fmt(r_at_1(rows, lambda r: r['cosine']))}")
        print(f"{path.stem:9s} score  {_fmt(r_at_1(rows, lambda r: r['score']))}")
        top = [max(c, key=lambda r: r["score"]) for c in by_query(rows).values()]
        said = [r for r in top if r["score"] >= threshold]
        precision = np.mean([r["label"] for r in said]) if said else float("nan")
        print(f"{path.stem:9s} same product (top result >= {threshold:.3f}): precision {precision:.3f}, "
              f"recall {len([r for r in said if r['label']]) / max(len(top), 1):.3f}")


def rescore(rows: list[dict]) -> None:
    """Each candidate's score by the shipped scoring, from its recorded evidence."""
    if not rows:
        return
    g = {k: np.array([r.get(k, 0.0) if r.get(k) is not None else r["cosine"] for r in rows], float)
         for k in ("cosine", "inliers", "colour", "aligned", "unchanged", "margin", "product", "text", "backdrop",
                   "centre")}
    s = scoring.score_arrays(g["cosine"], g["inliers"], g["colour"], g["aligned"], g["unchanged"], g["margin"],
                             identical=np.array([r["identical"] for r in rows]), product=g["product"],
                             text=g["text"], backdrop=g["backdrop"], learned=np.array([r["metric"] for r in rows]),
                             centre=g["centre"])
    for r, v in zip(rows, s):
        r["score"] = float(v)


def thresholds(args) -> None:
    """The named thresholds on the top result of each grocery val query: "same product" the
    lowest score whose precision is at least --precision, "similar" at least 0.5."""
    details = Path(args.details)
    top = []
    for name in ("p2c-val", "p2p-val"):
        rows = load(details, name)
        rescore(rows)
        top += [max(c, key=lambda r: r["score"]) for c in by_query(rows).values()]
    scores = np.array([r["score"] for r in top])
    right = np.array([r["label"] for r in top], bool)
    order = np.argsort(-scores)
    precision = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    for name, target in (("same product", args.precision), ("similar", 0.5)):
        ok = np.nonzero(precision >= target)[0]
        n = ok.max() if len(ok) else -1
        t = scores[order][n] if n >= 0 else float("nan")
        print(f"{name}: threshold {t:.4f} (precision {precision[n]:.3f}, recall {right[order][:n + 1].sum() / len(top):.3f} "
              f"of {len(top)} val queries' top results)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", required=True)
    c.add_argument("--split", default="val", help="val, test or val,test")
    c.add_argument("--cache", default="/tmp/same-product-catalogs")
    c.add_argument("--sets", nargs="*", help="only these sets (p2c-val, p2p-val, views, ...)")
    f = sub.add_parser("fit")
    f.add_argument("--details", required=True)
    f.add_argument("--l2", type=float, default=1.0)
    t = sub.add_parser("table")
    t.add_argument("--details", required=True)
    h = sub.add_parser("thresholds")
    h.add_argument("--details", required=True)
    h.add_argument("--precision", type=float, default=0.90)
    args = p.parse_args()
    {"collect": collect, "fit": fit, "table": table, "thresholds": thresholds}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
