"""numpy FM next to river's FMClassifier on one labelled stream, in the same process.

The stream: MovieLens 100K in event-time order; every rating is a positive, followed by
``--negatives`` items drawn uniformly from the items seen so far (seeded), each labelled 0.
Features per row: user, item, the item's genres (multi-hot), the user's age band, gender
and occupation, and the hour of day of the event. Both backends get the very same rows and
the same factors, learning rate and initial scale.

Both are scored by progressive validation: each row is predicted before it is learned
(river row by row; numpy a micro-batch at a time, so numpy predicts with a model up to one
batch staler, from the same forward pass that computes its gradient). Throughput counts
everything after the feature dicts exist: for numpy,
encoding dicts to indices + predict-and-learn; for river, predict + learn. Learn-only rates
(numpy: predict-and-learn on encoded rows) are printed as well.

    .venv/bin/python benchmarks/online_fm.py [--negatives 3] [--factors 16] [--lr 0.02] [--batch 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402

from streamrec.online_models.fm import NumpyFM, RiverFM  # noqa: E402
from streamrec.producers.logs import read_log  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def build_stream(data: Path, negatives: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """Feature dicts and labels: each event's positive row then its sampled negatives."""
    items: dict[str, dict[str, float]] = {}
    for line in (data / "u.item").read_text(encoding="latin-1").splitlines():
        parts = line.split("|")
        items[parts[0]] = {f"genre_{g}": 1.0 for g, flag in zip(GENRES, parts[5:]) if flag == "1"}
    users: dict[str, dict[str, str]] = {}
    for line in (data / "u.user").read_text().splitlines():
        uid, age, gender, occupation, _ = line.split("|")
        users[uid] = {"age": str(min(int(age) // 10, 6)), "gender": gender,
                      "occupation": occupation}
    rng = np.random.default_rng(seed)
    seen: list[str] = []
    known: set[str] = set()
    X: list[dict] = []
    y: list[int] = []
    for event in read_log(data / "u.data", "movielens"):
        context = {"user": event.user_id, **users[event.user_id],
                   "hour": str(int(event.ts // 3600) % 24)}
        X.append({**context, "item": event.item_id, **items[event.item_id]})
        y.append(1)
        if seen:
            for pick in rng.integers(len(seen), size=negatives):
                X.append({**context, "item": seen[pick], **items[seen[pick]]})
                y.append(0)
        if event.item_id not in known:
            known.add(event.item_id)
            seen.append(event.item_id)
    return X, np.array(y, dtype=np.float32)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties get their average rank)."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
    ends = np.r_[starts[1:], len(p)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos = float(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def run_river(X: list[dict], y: np.ndarray, args: argparse.Namespace) -> dict:
    fm = RiverFM(n_factors=args.factors, lr=args.lr, init_scale=args.init_scale, seed=args.seed)
    predictions = np.empty(len(X))
    predict_s = learn_s = 0.0
    clock = time.perf_counter
    labels = y.astype(bool).tolist()
    for n, x in enumerate(X):
        t0 = clock()
        predictions[n] = fm.predict_proba_one(x)
        t1 = clock()
        fm.learn_one(x, labels[n])
        learn_s += clock() - t1
        predict_s += t1 - t0
    return {"predictions": predictions, "seconds": predict_s + learn_s, "learn_seconds": learn_s}


def run_numpy(X: list[dict], y: np.ndarray, args: argparse.Namespace) -> dict:
    fm = NumpyFM(n_factors=args.factors, lr=args.lr, init_scale=args.init_scale,
                 count_power=args.count_power, seed=args.seed)
    predictions = np.empty(len(X))
    encode_s = learn_s = 0.0
    clock = time.perf_counter
    started = clock()
    for start in range(0, len(X), args.batch):
        t0 = clock()
        rows, values = fm.encode(X[start:start + args.batch])
        t1 = clock()
        # learn_encoded returns its predictions from before the step: progressive validation.
        predictions[start:start + len(rows)] = fm.learn_encoded(rows, values,
                                                                y[start:start + len(rows)])
        encode_s += t1 - t0
        learn_s += clock() - t1
    return {"predictions": predictions, "seconds": clock() - started, "learn_seconds": learn_s,
            "encode_seconds": encode_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--factors", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--init-scale", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--count-power", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    X, y = build_stream(args.data, args.negatives, args.seed)
    print(f"stream: {len(X):,} rows ({int(y.sum()):,} positives, {args.negatives} sampled "
          f"negatives each), ~{np.mean([len(x) for x in X[:10000]]):.1f} features/row; "
          f"factors {args.factors}, lr {args.lr}, numpy batch {args.batch}")
    results = {"numpy": run_numpy(X, y, args), "river": run_river(X, y, args)}
    rows = {}
    tail = slice(len(X) // 2, None)
    for name, r in results.items():
        p = r.pop("predictions")
        rows[name] = {**r, "samples_per_s": len(X) / r["seconds"],
                      "learn_samples_per_s": len(X) / r["learn_seconds"],
                      "auc": auc(y, p), "log_loss": log_loss(y, p),
                      "auc_second_half": auc(y[tail], p[tail]),
                      "log_loss_second_half": log_loss(y[tail], p[tail])}
    print(f"\n{'':22}{'river FMClassifier':>20}{'numpy FM':>14}{'ratio / diff':>16}")
    for key, label in [("samples_per_s", "samples/s (all work)"),
                       ("learn_samples_per_s", "samples/s (learn)")]:
        river, ours = rows["river"][key], rows["numpy"][key]
        print(f"{label:22}{river:>20,.0f}{ours:>14,.0f}{ours / river:>15.1f}x")
    for key in ("auc", "log_loss", "auc_second_half", "log_loss_second_half"):
        river, ours = rows["river"][key], rows["numpy"][key]
        print(f"{key:22}{river:>20.4f}{ours:>14.4f}{ours - river:>+16.4f}")
    speedup = rows["numpy"]["samples_per_s"] / rows["river"]["samples_per_s"]
    auc_gap = abs(rows["numpy"]["auc"] - rows["river"]["auc"])
    loss_gap = abs(rows["numpy"]["log_loss"] - rows["river"]["log_loss"])
    passed = speedup >= 30 and auc_gap <= 0.005 and loss_gap <= 0.01
    print(f"\ntarget (>= 30x, |dAUC| <= 0.005, |dlogloss| <= 0.01): "
          f"{'PASS' if passed else 'FAIL'}")
    save_results("online_fm", {"config": vars(args) | {"data": str(args.data)},
                               "rows": len(X), "results": rows, "speedup": speedup,
                               "auc_gap": auc_gap, "log_loss_gap": loss_gap, "passed": passed})


if __name__ == "__main__":
    main()
