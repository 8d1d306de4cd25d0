"""Compare model packs on retrieval, classification agreement and speed (see docs/models.md).

For each pack: embeds every photo of the Luma set (``images/`` and ``eval/copies/``), decoded with
``cv2.imread`` and preprocessed by the pack's own ``Model.preprocess``, then reports

* copies R@1: the query's best gallery match (``copies_gallery.txt``) is a relevant one (queries
  with an empty ``relevant`` are skipped for R@1), raw embedding cosine, no re-ranking;
* views R@1: same, gallery = all of ``images/`` minus the query itself;
* micro-AP of each set as the dataset README defines it (top-10 pairs of every query pooled,
  sorted by score; average precision over all relevant pairs);
* top-1 agreement with the first pack and the mean cosine between the two packs' embeddings of
  the same photo;
* top-1 agreement restricted to the photos the first pack is confident about (top-1 p >= 0.5);
* inference ms/image at batch 32 on preprocessed tensors (best and median batch: on a shared
  machine the best batch is the better estimate of the model's own cost) and the decode +
  preprocess ms/image (cv2.imread of the full JPEG + Model.preprocess). The 1-minute load
  average is printed so contended timings can be recognised.

Run from the repository root::

    python models/compare_packs.py [PACK ...] [--data ../shared/datasets/luma] [--threads N]

PACK is a pack name under models/, a pack folder or a manifest (default: every shipped pack).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.model import Model, available_packs, load_model  # noqa: E402

BATCH = 32


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"{path}: cannot decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def embed_all(model: Model, data: Path, rel_paths: list[str]) -> dict:
    probs, embs, infer_times, prep_time = [], [], [], 0.0
    for start in range(0, len(rel_paths), BATCH):
        t0 = time.perf_counter()
        x = np.stack([model.preprocess(read_rgb(data / p)) for p in rel_paths[start:start + BATCH]])
        t1 = time.perf_counter()
        p, e = model.run_tensor(x)
        t2 = time.perf_counter()
        prep_time += t1 - t0
        if len(x) == BATCH:
            infer_times.append((t2 - t1) / BATCH)
        probs.append(p)
        embs.append(e)
    return {
        "probs": np.concatenate(probs),
        "embs": np.concatenate(embs),
        "ms_per_image": 1000 * float(np.min(infer_times)),
        "ms_per_image_median": 1000 * float(np.median(infer_times)),
        "prep_ms_per_image": 1000 * prep_time / len(rel_paths),
    }


def read_queries(path: Path) -> list[tuple[str, set[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["query"], {x for x in (r["relevant"] or "").split(";") if x})
                for r in csv.DictReader(f)]


def retrieval(index: dict[str, int], embs: np.ndarray, queries, gallery: list[str],
              exclude_self: bool) -> tuple[float, float, int]:
    """(R@1 over queries with a relevant item, micro-AP over all queries, n queries for R@1)."""
    g = embs[[index[p] for p in gallery]]
    q = embs[[index[p] for p, _ in queries]]
    sims = q @ g.T
    if exclude_self:
        pos = {p: i for i, p in enumerate(gallery)}
        for qi, (p, _) in enumerate(queries):
            if p in pos:
                sims[qi, pos[p]] = -np.inf
    hits, n_r1, pool, total_relevant = 0, 0, [], 0
    for qi, (_, relevant) in enumerate(queries):
        order = np.argsort(-sims[qi], kind="stable")[:10]
        total_relevant += len(relevant)
        if relevant:
            n_r1 += 1
            hits += gallery[order[0]] in relevant
        pool += [(float(sims[qi, j]), gallery[j] in relevant) for j in order]
    pool.sort(key=lambda t: -t[0])
    correct = np.array([c for _, c in pool], dtype=bool)
    precision_at = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    micro_ap = float(precision_at[correct].sum() / max(1, total_relevant))
    return hits / max(1, n_r1), micro_ap, n_r1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("packs", nargs="*")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "luma")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    packs = args.packs or available_packs()

    data = args.data
    copies = read_queries(data / "eval" / "copies.csv")
    views = read_queries(data / "eval" / "views.csv")
    copies_gallery = [l.strip() for l in (data / "eval" / "copies_gallery.txt").read_text().splitlines() if l.strip()]
    images = sorted(f"images/{p.name}" for p in (data / "images").iterdir() if p.suffix.lower() == ".jpg")
    paths = sorted(set(images) | set(copies_gallery) | {q for q, _ in copies} | {q for q, _ in views})
    index = {p: i for i, p in enumerate(paths)}

    rows, first = [], None
    for pack in packs:
        model = load_model(pack, providers=["CPUExecutionProvider"], threads=args.threads)
        model.run_tensor(np.zeros((BATCH, 3, model.input_size, model.input_size), np.float32))  # warm-up
        out = embed_all(model, data, paths)
        c_r1, c_ap, c_n = retrieval(index, out["embs"], copies, copies_gallery, exclude_self=False)
        v_r1, v_ap, v_n = retrieval(index, out["embs"], views, images, exclude_self=True)
        row = {"pack": model.model_id, "copies R@1": c_r1, "copies micro-AP": c_ap,
               "views R@1": v_r1, "views micro-AP": v_ap,
               "ms/img b32 best": out["ms_per_image"], "ms/img b32 median": out["ms_per_image_median"],
               "decode+prep ms/img": out["prep_ms_per_image"]}
        if first is None:
            first = out
        same = out["probs"].argmax(1) == first["probs"].argmax(1)
        confident = first["probs"].max(1) >= 0.5
        row["top-1 agree"] = float(same.mean())
        row["top-1 agree (p>=.5)"] = float(same[confident].mean())
        row["cos vs first"] = float((out["embs"] * first["embs"]).sum(1).mean())
        rows.append(row)
        print(f"{model.model_id} on {model.provider}, {model.session.get_session_options().intra_op_num_threads} threads: "
              f"{len(paths)} photos ({int(confident.sum())} with first-pack top-1 p >= 0.5), "
              f"copies R@1 over {c_n} queries, views R@1 over {v_n}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)

    keys = list(rows[0])
    print()
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(r[k] if isinstance(r[k], str) else f"{r[k]:.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
