"""Match-quality benchmark: runs the real search pipeline on labelled query sets, ablates its
stages, fits the calibrated score with cross-validation and picks the named thresholds.

    python benchmarks/match_quality.py run  --set copies --out /tmp/mq   # details per configuration
    python benchmarks/match_quality.py fit  --details /tmp/mq            # coefficients, CV figures
    python benchmarks/match_quality.py thresholds --details /tmp/mq      # shipped coefficients, thresholds re-picked

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

from engine import evaluation, match_policy, scoring, search  # noqa: E402
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
        per_stage: dict[str, dict[str, list[float]]] = {"cpu": {}, "wall": {}}
        for q in queries:
            own = catalog.image_by_path(q.query)       # as in lookalike eval: not itself
            f = search.SearchFilters(exclude_ids=frozenset([own["id"]]) if own else frozenset())
            r = searcher.search_path(q.query, filters=f)
            for clock_name, t in (("cpu", r.cpu), ("wall", r.timings)):
                for k, v in t.items():
                    per_stage[clock_name].setdefault(k, []).append(v)
        n = len(queries)
        for clock_name, stages in per_stage.items():
            out[(set_name, clock_name)] = {
                k: (float(np.mean(v + [0.0] * (n - len(v)))), float(np.percentile(v + [0.0] * (n - len(v)), 90)),
                    len(v) / n) for k, v in stages.items()}
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


def evidence_of(r: dict) -> list[scoring.Evidence]:
    """The evidence of a details row. Margins as search computed them (over every verified
    candidate of the query, not only the stored top results) where the details carry them."""
    evs = [scoring.Evidence(cosine=e["cosine"], inliers=e["inliers"], colour=e["colour"],
                            aligned=e.get("aligned", 0.0), unchanged=e.get("unchanged", 0.0))
           for e in r["evidence"]]
    match_policy.set_margins(evs)
    for ev, e in zip(evs, r["evidence"]):
        if "margin" in e:
            ev.margin = e["margin"]
    return evs


def features(ev: scoring.Evidence) -> dict[str, float]:
    f = scoring.feature_vector(ev.cosine, ev.inliers, ev.colour, ev.aligned, ev.unchanged, ev.margin)
    return {k: float(v) for k, v in f.items()}


def regime(ev: scoring.Evidence) -> str:
    return "verified" if ev.inliers >= scoring.MARGIN_MIN_INLIERS else "visual"


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (on standardised features), coefficients returned
    for the raw features."""
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


def same_item(query: str, path: str) -> bool:
    """Luma names: <style>-<colour>[-0]_<view>.jpg. Another view of the query's own style-colour
    is the same product although the views set lists only main views as relevant: such pairs
    are left out of the calibration fit (they are neither right nor wrong answers to learn from);
    the reported metrics still count them wrong, as the eval files define."""
    key = lambda p: Path(p).stem.split("_")[0]  # noqa: E731
    return key(query) == key(path)


EXCLUDE_SAME_ITEM = True


def fit_models(rows: list[dict], spec: dict[str, tuple[str, ...]]) -> dict:
    data: dict[str, tuple[list, list]] = {name: ([], []) for name in spec}
    for r in rows:
        rel = set(r["relevant"])
        for (path, _), ev in zip(r["results"], evidence_of(r)):
            if EXCLUDE_SAME_ITEM and path not in rel and same_item(r["query"], path):
                continue
            g = regime(ev) if len(spec) > 1 else next(iter(spec))
            f = features(ev)
            data[g][0].append([f[n] for n in spec[g]])
            data[g][1].append(path in rel)
    models = {}
    for g, (X, y) in data.items():
        coef, b = fit_logistic(np.asarray(X), np.asarray(y, float))
        models[g] = {"intercept": round(b, 3), "coef": {n: round(float(c), 3) for n, c in zip(spec[g], coef)}}
    return models


#: The copy fit's model of an unverified candidate (cosine and colour only), fitted beside the
#: engine's "verified" model: the fit is evaluated as a pair here, while the engine scores an
#: unverified candidate with its "same product" models (engine.scoring.same_product).
VISUAL_MODEL = {"intercept": -12.491, "coef": {"cosine": 4.722, "colour": 7.762}}
COPY_MODELS = {**scoring.MODELS, "visual": VISUAL_MODEL}


def rescored(rows: list[dict], models: dict) -> list[Ranking]:
    out = []
    for r in rows:
        res = []
        for (path, _), ev in zip(r["results"], evidence_of(r)):
            m = models[regime(ev)] if len(models) > 1 else next(iter(models.values()))
            f = features(ev)
            z = m["intercept"] + sum(c * f[n] for n, c in m["coef"].items())
            res.append((path, float(1 / (1 + np.exp(-z)))))
        res.sort(key=lambda x: -x[1])
        out.append(Ranking(r["query"], frozenset(r["relevant"]), res[:K]))
    return out


def by_cosine(rows: list[dict]) -> list[Ranking]:
    return [Ranking(r["query"], frozenset(r["relevant"]),
                    sorted([(p, ev["cosine"]) for (p, _), ev in zip(r["results"], r["evidence"])],
                           key=lambda x: -x[1])[:K]) for r in rows]


def threshold_for_precision(rankings, precision: float) -> float:
    return pick_threshold(rankings, "precision", precision)


def pick_threshold(rankings, kind: str, target: float | None) -> float:
    """The lowest pooled score threshold with precision >= target ("precision"), the one with
    the best F1 ("f1"), or the highest one with recall >= target ("recall")."""
    scores, correct, n_pos = evaluation.pool(rankings, K)
    order = np.argsort(-scores, kind="stable")
    s, c = scores[order], correct[order]
    tp = np.cumsum(c)
    prec = tp / np.arange(1, len(c) + 1)
    rec = tp / max(n_pos, 1)
    if kind == "precision":
        ok = np.nonzero(prec >= target)[0]
        return float(s[ok[-1]]) if len(ok) else 1.0
    if kind == "recall":
        ok = np.nonzero(rec >= target)[0]
        return float(s[ok[0]]) if len(ok) else 0.0
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    return float(s[int(np.argmax(f1))])


SPECS = {
    "embedding only (cosine)": {"all": ("cosine",)},
    "cosine + colour": {"all": ("cosine", "colour")},
    "+ inliers": {"all": ("cosine", "colour", "log_inliers")},
    "+ aligned": {"all": ("cosine", "colour", "log_inliers", "aligned")},
    "gated, + margin, unchanged": {
        "verified": ("log_inliers", "aligned", "margin", "colour", "unchanged", "cosine"),
        "visual": ("cosine", "colour", "log_inliers")},
    "gated +best": {
        "verified": ("log_inliers", "aligned", "margin", "best", "colour", "unchanged", "partial", "cosine"),
        "visual": ("cosine", "colour")},
    # round 5: with the aligned correlation taken on luminance for grey queries, colour and cosine
    # add nothing to the verified model in cross-validation (their fitted weights were -0.40 and
    # 0.04): left out
    "gated +best, verified on geometry and pixels": {
        "verified": ("log_inliers", "aligned", "margin", "best", "unchanged", "partial"),
        "visual": ("cosine", "colour")},
}
FINAL = "gated +best, verified on geometry and pixels"
# "copy": precision >= 0.99 on the copies pool; "same product": the best F1 on the views pool;
# "similar": half of the views' relevant items recalled (a wide net)
TARGETS = {"copy": ("copies", "precision", 0.99), "same product": ("views", "f1", None),
           "similar": ("views", "recall", 0.5)}


def cmd_fit(args) -> int:
    global EXCLUDE_SAME_ITEM
    EXCLUDE_SAME_ITEM = not args.keep_same_item
    d = Path(args.details)
    sets = {name: load(d / f"{name}-{args.config}.jsonl") for name in ("copies", "views")}
    rng = np.random.default_rng(args.seed)
    folds = {name: rng.permutation(len(rows)) % 2 for name, rows in sets.items()}
    print(f"2-fold cross-validation (queries split at random, seed {args.seed}): fit on one half of "
          f"both sets, thresholds picked on that half, figures on the other half; mean of both folds")
    for label, spec in SPECS.items():
        per = {name: [] for name in sets}
        for fold in (0, 1):
            train = [r for name, rows in sets.items() for r, f in zip(rows, folds[name]) if f != fold]
            models = fit_models(train, spec)
            th = {}
            for tname, (set_name, kind, target) in TARGETS.items():
                tr = [r for r, f in zip(sets[set_name], folds[set_name]) if f != fold]
                th[tname] = pick_threshold(rescored(tr, models), kind, target)
            for name, rows in sets.items():
                test = [r for r, f in zip(rows, folds[name]) if f == fold]
                per[name].append(evaluation.summarise(rescored(test, models), K, thresholds=th))
        for name, ss in per.items():
            m = {k: np.mean([s[k] for s in ss]) for k in ("R@1", "R@5", "mAP", "micro-AP")}
            line = f"{label:28} {name:7} " + "  ".join(f"{k} {v:.3f}" for k, v in m.items())
            for tname in ("copy", "same product"):
                p = np.nanmean([s["thresholds"][tname]["precision"] for s in ss])
                rc = np.mean([s["thresholds"][tname]["recall"] for s in ss])
                line += f"  {tname}: P {p:.3f} R {rc:.3f}"
            print(line)
    for name, rows in sets.items():
        s = evaluation.summarise(by_cosine(rows), K, thresholds={})
        print(f"{'rank by cosine (no fit)':28} {name:7} R@1 {s['R@1']:.3f}  R@5 {s['R@5']:.3f}  "
              f"mAP {s['mAP']:.3f}  micro-AP {s['micro-AP']:.3f}")
    models = fit_models([r for rows in sets.values() for r in rows], SPECS[FINAL])
    print("\nfinal fit on all queries (engine/scoring.py MODELS, and VISUAL_MODEL here):")
    print(json.dumps(models, indent=1))
    th = {t: round(pick_threshold(rescored(sets[s], models), kind, target), 3)
          for t, (s, kind, target) in TARGETS.items()}
    print("thresholds at the target precisions (all queries):", json.dumps(th))
    for name, rows in sets.items():
        print(f"in-sample {name}:", evaluation.format_summary(evaluation.summarise(rescored(rows, models), K, th)))
    return 0


def cmd_thresholds(args) -> int:
    """Keep engine/scoring.py's coefficients and re-pick only the named thresholds (after a
    change to the evidence that needs no refit): 2-fold cross-validated figures of the shipped
    coefficients with thresholds picked on the other half (per seed), then the thresholds at the
    target precisions on all queries."""
    d = Path(args.details)
    sets = {name: load(d / f"{name}-{args.config}.jsonl") for name in ("copies", "views")}
    scored = {name: rescored(rows, COPY_MODELS) for name, rows in sets.items()}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        folds = {name: rng.permutation(len(rows)) % 2 for name, rows in sets.items()}
        per = {name: [] for name in sets}
        for fold in (0, 1):
            th = {t: pick_threshold([r for r, f in zip(scored[s], folds[s]) if f != fold], kind, target)
                  for t, (s, kind, target) in TARGETS.items()}
            for name in sets:
                test = [r for r, f in zip(scored[name], folds[name]) if f == fold]
                per[name].append(evaluation.summarise(test, K, thresholds=th))
        for name, ss in per.items():
            p = np.nanmean([s["thresholds"]["copy"]["precision"] for s in ss])
            rc = np.mean([s["thresholds"]["copy"]["recall"] for s in ss])
            print(f"seed {seed} {name:7} R@1 {np.mean([s['R@1'] for s in ss]):.3f}  "
                  f"micro-AP {np.mean([s['micro-AP'] for s in ss]):.3f}  copy: P {p:.3f} R {rc:.3f}")
    th = {t: round(pick_threshold(scored[s], kind, target), 3) for t, (s, kind, target) in TARGETS.items()}
    print("thresholds at the target precisions (all queries, shipped coefficients):", json.dumps(th))
    for name in sets:
        print(f"in-sample {name}:", evaluation.format_summary(evaluation.summarise(scored[name], K, th)))
    return 0


def cmd_table(args) -> int:
    """Figures per configuration, every one scored with the shipped engine/scoring.py (raw
    cosine for the embedding-only configuration: no verification, no colour)."""
    d = Path(args.details)
    print("| set | configuration | R@1 | R@5 | mAP | micro-AP | copy P / R | same product P / R |")
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(d.glob("*.jsonl")):
        set_name, config = path.stem.split("-", 1)
        rows = load(path)
        rk = by_cosine(rows) if config == "embedding" else rescored(rows, COPY_MODELS)
        s = evaluation.summarise(rk, K)
        t = s["thresholds"]
        f = lambda x: "n/a" if x != x else f"{x:.3f}"  # noqa: E731
        pr = lambda n: "-" if config == "embedding" else f"{f(t[n]['precision'])} / {f(t[n]['recall'])}"  # noqa: E731
        print(f"| {set_name} | {config} | {f(s['R@1'])} | {f(s['R@5'])} | {f(s['mAP'])} | {f(s['micro-AP'])} | "
              f"{pr('copy')} | {pr('same product')} |")
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
    p = sub.add_parser("table")
    p.add_argument("--details", required=True)
    p.set_defaults(fn=cmd_table)
    p = sub.add_parser("fit")
    p.add_argument("--details", required=True)
    p.add_argument("--config", default="full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-same-item", action="store_true",
                   help="fit on other views of the query's own style-colour as wrong answers too")
    p.set_defaults(fn=cmd_fit)
    p = sub.add_parser("thresholds", help="shipped coefficients, thresholds re-picked (cross-validated)")
    p.add_argument("--details", required=True)
    p.add_argument("--config", default="full")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.set_defaults(fn=cmd_thresholds)
    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
