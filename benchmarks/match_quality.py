"""Match-quality benchmark: runs the real search pipeline on labelled query sets, ablates its
stages, fits the calibrated score with cross-validation and picks the named thresholds.

    python benchmarks/match_quality.py run  --set copies --out /tmp/mq   # details per configuration
    python benchmarks/match_quality.py fit  --details /tmp/mq            # coefficients, CV figures

``run`` writes ``<set>-<config>.jsonl`` (every query's top-30 with its evidence) for the
configurations: embedding only; + verification; + mirrored query; + turned queries (full).
``fit`` fits the logistic score on half of the queries and reports on the other half (2-fold,
queries split at random with a fixed seed, both folds reported), then fits on all and prints the
coefficients for engine/scoring.py and the thresholds that give the target precision.
Figures and the commands that made them: docs/match-quality.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import evaluation, scoring, search  # noqa: E402
from engine.evaluation import Ranking  # noqa: E402

LUMA = Path(os.environ.get("LOOKALIKE_LUMA", Path(__file__).resolve().parent.parent.parent / "shared/datasets/luma"))
SETS = {
    "copies": (LUMA / "eval/copies.csv", [LUMA / "eval/copies_gallery.txt"]),
    "views": (LUMA / "eval/views.csv", [LUMA / "images"]),
}
CONFIGS = {
    "embedding": dict(verify=False),
    "verified": dict(verify=True, MIRROR_TOP=0, ROTATED_TOP=0),
    "mirror": dict(verify=True, ROTATED_TOP=0),
    "full": dict(verify=True),
}
POOL_K = 30
K = 10
FEATURES = ("cosine", "log_inliers", "aligned", "colour")


# ---------------------------------------------------------------------- running
def cmd_run(args) -> int:
    from engine.model import load_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    for set_name in args.set:
        csv_path, gallery_items = SETS[set_name]
        queries = evaluation.read_queries(csv_path)
        gallery = evaluation.read_gallery(gallery_items)
        catalog = evaluation.build_gallery_catalog(gallery, model)
        for config in args.config:
            opts = dict(CONFIGS[config])
            verify = opts.pop("verify")
            saved = {k: getattr(search, k) for k in opts}
            for k, v in opts.items():
                setattr(search, k, v)
            try:
                rankings = evaluation.run_queries(search.Searcher(catalog, model, verify=verify), queries, POOL_K)
            finally:
                for k, v in saved.items():
                    setattr(search, k, v)
            path = out / f"{set_name}-{config}.jsonl"
            with open(path, "w") as fh:
                for r in rankings:
                    fh.write(json.dumps({"query": r.query, "relevant": sorted(r.relevant), "results": r.results,
                                         "evidence": r.evidence, "extra": r.extra}) + "\n")
            s = evaluation.summarise(rankings, K)
            s["latency_ms"] = evaluation.latency_summary(rankings)
            print(f"== {set_name} / {config}\n{evaluation.format_summary(s)}", flush=True)
        catalog.close()
    return 0


# ---------------------------------------------------------------------- latency
def cmd_latency(args) -> int:
    """Per-stage cost of single-query search, as process CPU time (all threads) and wall time.
    CPU time is what a query costs on an idle machine with one query at a time (the model's two
    intra-op threads add up, so it over-states the model's wall time on 2 cores); wall time is
    also printed but depends on what else the machine runs."""
    import time
    import types

    from engine.model import load_model

    model = load_model(args.model)
    out = {}
    for set_name in args.set:
        csv_path, gallery_items = SETS[set_name]
        queries = evaluation.read_queries(csv_path)[:: args.every]
        gallery = evaluation.read_gallery(gallery_items)
        catalog = evaluation.build_gallery_catalog(gallery, model)
        searcher = search.Searcher(catalog, model)
        searcher.search_path(queries[0].query)        # warm-up (index load, sessions)
        for clock_name, clock in (("cpu", time.process_time), ("wall", time.perf_counter)):
            search.time = types.SimpleNamespace(perf_counter=clock)
            try:
                per_stage: dict[str, list[float]] = {}
                for q in queries:
                    t = searcher.search_path(q.query).timings
                    t.pop("total", None)
                    t["total"] = sum(t.values())
                    for k, v in t.items():
                        per_stage.setdefault(k, []).append(v)
            finally:
                search.time = time
            n = len(queries)
            out[(set_name, clock_name)] = {
                k: (float(np.mean(v + [0.0] * (n - len(v)))), float(np.percentile(v + [0.0] * (n - len(v)), 90)),
                    len(v) / n) for k, v in per_stage.items()}
        catalog.close()
        for clock_name in ("cpu", "wall"):
            print(f"== {set_name}: {clock_name} ms per query over {len(queries)} queries "
                  f"(mean, p90, share of queries running the stage)")
            for k, (mean, p90, share) in out[(set_name, clock_name)].items():
                print(f"  {k:15} {mean:7.1f} {p90:7.1f}  {share:4.0%}")
    return 0


# ---------------------------------------------------------------------- fitting
def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def design(rows: list[dict], features=FEATURES) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Feature matrix, labels and (query number, result number) for every pooled pair."""
    X, y, where = [], [], []
    for qi, r in enumerate(rows):
        rel = set(r["relevant"])
        for ri, ((path, _), ev) in enumerate(zip(r["results"], r["evidence"])):
            f = scoring.feature_vector(ev["cosine"], ev["inliers"], ev["colour"], ev.get("aligned", 0.0))
            X.append([float(f[n]) for n in features])
            y.append(path in rel)
            where.append((qi, ri))
    return np.asarray(X), np.asarray(y, float), where


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = (X - mu) / sd

    def loss(w):
        z = Z @ w[1:] + w[0]
        return float(np.sum(np.logaddexp(0, z) - y * z) + l2 * np.sum(w[1:] ** 2))

    def grad(w):
        z = Z @ w[1:] + w[0]
        p = 1 / (1 + np.exp(-z))
        g = np.empty_like(w)
        g[0] = np.sum(p - y)
        g[1:] = Z.T @ (p - y) + 2 * l2 * w[1:]
        return g

    w = minimize(loss, np.zeros(X.shape[1] + 1), jac=grad, method="L-BFGS-B").x
    coef = w[1:] / sd
    return coef, float(w[0] - np.sum(coef * mu))


def rescored(rows: list[dict], coef, intercept, features=FEATURES) -> list[Ranking]:
    out = []
    for r in rows:
        X, _, _ = design([r], features)
        scores = 1 / (1 + np.exp(-(X @ coef + intercept))) if len(X) else np.zeros(0)
        res = sorted(zip([p for p, _ in r["results"]], scores.tolist()), key=lambda x: -x[1])
        out.append(Ranking(r["query"], frozenset(r["relevant"]), res[:K]))
    return out


def by_cosine(rows: list[dict]) -> list[Ranking]:
    return [Ranking(r["query"], frozenset(r["relevant"]),
                    sorted([(p, ev["cosine"]) for (p, _), ev in zip(r["results"], r["evidence"])],
                           key=lambda x: -x[1])[:K]) for r in rows]


def threshold_for_precision(rankings, precision: float) -> float:
    scores, correct, _ = evaluation.pool(rankings, K)
    order = np.argsort(-scores)
    s, c = scores[order], correct[order]
    prec = np.cumsum(c) / np.arange(1, len(c) + 1)
    ok = np.nonzero(prec >= precision)[0]
    return float(s[ok[-1]]) if len(ok) else 1.0


def cmd_fit(args) -> int:
    d = Path(args.details)
    sets = {name: load(d / f"{name}-{args.config}.jsonl") for name in ("copies", "views")}
    rng = np.random.default_rng(0)
    folds = {name: rng.permutation(len(rows)) % 2 for name, rows in sets.items()}
    subsets = {"cosine": ("cosine",), "+inliers": ("cosine", "log_inliers"),
               "+aligned": ("cosine", "log_inliers", "aligned"), "+colour": FEATURES}
    report = {}
    for label, feats in subsets.items():
        for fold in (0, 1):
            train = [r for name, rows in sets.items() for r, f in zip(rows, folds[name]) if f != fold]
            X, y, _ = design(train, feats)
            coef, b = fit_logistic(X, y)
            for name, rows in sets.items():
                test = [r for r, f in zip(rows, folds[name]) if f == fold]
                train_set = [r for r, f in zip(rows, folds[name]) if f != fold]
                rk = rescored(test, coef, b, feats)
                s = evaluation.summarise(rk, K, thresholds={})
                # thresholds picked on the training half, measured on the test half
                t_copy = threshold_for_precision(rescored(train_set, coef, b, feats), 0.99) \
                    if name == "copies" else None
                if t_copy is not None:
                    p, rcl, _ = evaluation.precision_recall_at(rk, t_copy, K)
                    s["copy@train"] = {"threshold": t_copy, "precision": p, "recall": rcl}
                report.setdefault(label, {}).setdefault(name, []).append(s)
    for label, per_set in report.items():
        for name, folds_s in per_set.items():
            m = {k: np.mean([s[k] for s in folds_s]) for k in ("R@1", "R@5", "mAP", "micro-AP")}
            line = f"{label:10} {name:7} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items())
            if "copy@train" in folds_s[0]:
                line += "  copy-thr P/R " + " | ".join(
                    f"{s['copy@train']['threshold']:.3f}: {s['copy@train']['precision']:.3f}/{s['copy@train']['recall']:.3f}"
                    for s in folds_s)
            print(line)
    base = {name: evaluation.summarise(by_cosine(rows), K, thresholds={}) for name, rows in sets.items()}
    for name, s in base.items():
        print(f"cosine-rank {name:7} R@1 {s['R@1']:.3f}  R@5 {s['R@5']:.3f}  mAP {s['mAP']:.3f}  micro-AP {s['micro-AP']:.3f}")
    X, y, _ = design([r for rows in sets.values() for r in rows])
    coef, b = fit_logistic(X, y)
    print("final COEF", json.dumps(dict(zip(FEATURES, np.round(coef, 3).tolist()))), "INTERCEPT", round(b, 3))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--set", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--config", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("latency")
    p.add_argument("--set", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--every", type=int, default=4, help="use every n-th query")
    p.add_argument("--model", default=None)
    p.set_defaults(fn=cmd_latency)
    p = sub.add_parser("fit")
    p.add_argument("--details", required=True)
    p.add_argument("--config", default="full")
    p.set_defaults(fn=cmd_fit)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
