"""Scoring speed: ONNX Runtime vs torch eager for the served model, and top-100 retrieval.

Two comparisons, each against its reference in the same process:

1. The served SASRec (2 blocks, d=64, max_len 50, 1,682 items as in ML-100K, random
   weights: speed does not depend on training) at batch 1 and 32: ONNX Runtime
   (``streamrec.export.serving``) vs torch eager under ``no_grad``, both with 2 threads. Calls are
   interleaved (torch, ORT, torch, ...) so both see the same background load.
   Target: ORT p50 <= 0.6x torch p50 at batch 1.
2. Top-100 of 100,000 items (d=64, float32, row-major) for one user vector, as served
   (``OnnxSequenceModel.top_k_rows``: the matvec into a reused buffer + ``top_k_indices``,
   exact) and as the naive numpy matvec + argpartition, against the time to *read* the
   same table once at the bandwidth measured here: the fastest of ``table.sum()``,
   ``sdot(flat, flat)`` and a copy into a preallocated buffer. Measured hot (table in the
   32 MiB L3, as in a busy scorer) and cold (a 96 MB buffer is read between repetitions
   to evict it, code included). Target (issue 5): retrieval <= 1.5x the read; goal 1.3x.

    .venv/bin/python benchmarks/scoring.py [--reps 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def save(name: str, payload: dict) -> None:
    """Save through the shared helper when present, else a local JSON write."""
    try:
        from bench_results import save_results
        save_results(name, payload)
    except ImportError:
        out = Path(__file__).resolve().parent / "results" / f"{name}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(payload, indent=2))
        print(f"saved {out}")


def stats(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {"p50_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(
        np.percentile(ms, 90)), 4), "min_ms": round(float(ms.min()), 4), "n": len(ms)}


def interleaved(fns: dict[str, Callable[[], object]], reps: int,
                between: Callable[[], object] | None = None,
                block: int = 1) -> dict[str, dict[str, float]]:
    """Time each function ``reps`` times, round-robin in runs of ``block`` calls.

    Round-robin gives every function the same share of background load; ``block`` > 1
    keeps a function's own working set in cache across its run (a copy benchmark would
    otherwise evict the table right before the next function's call).
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    clock = time.perf_counter
    for _ in range(max(reps // block, 1)):
        for name, fn in fns.items():
            for _ in range(block):
                if between is not None:
                    between()
                t0 = clock()
                fn()
                samples[name].append(clock() - t0)
    return {name: stats(s) for name, s in samples.items()}


def model_latency(reps: int) -> dict:
    import torch

    from streamrec.export.release import build_release
    from streamrec.export.train import TrainedModel
    from streamrec.export.model import SASRec
    from streamrec.export.vocab import ItemVocabulary

    torch.set_num_threads(2)
    vocab = ItemVocabulary(str(i) for i in range(1, 1683))
    model = SASRec(len(vocab), dim=64, max_len=50, n_blocks=2, seed=0).eval()
    release = build_release(TrainedModel(model, vocab))
    served = release.serving_model(threads=2)
    rng = np.random.default_rng(0)
    out: dict = {"exporter": release.exporter, "parity_max_abs_diff": {
        str(b): d for b, d in release.fixture.max_abs_diff.items()}}
    for batch in (1, 32):
        seqs = rng.integers(1, len(vocab) + 1, size=(batch, 50), dtype=np.int64)
        seqs[:, :10] = 0
        tensor = torch.from_numpy(seqs)

        def torch_eager() -> object:
            with torch.no_grad():
                return model(tensor).numpy()

        res = interleaved({"torch_eager": torch_eager,
                           "onnxruntime": lambda: served.user_vectors_encoded(seqs)}, reps)
        res["ort_over_torch_p50"] = round(res["onnxruntime"]["p50_ms"]
                                          / res["torch_eager"]["p50_ms"], 3)
        out[f"batch_{batch}"] = res
    return out


def retrieval(reps: int, n_items: int = 100_000, dim: int = 64, k: int = 100) -> dict:
    from streamrec.export.serving import OnnxSequenceModel

    rng = np.random.default_rng(1)
    table = rng.standard_normal((n_items + 1, dim), dtype=np.float32)
    served = OnnxSequenceModel.__new__(OnnxSequenceModel)  # just the retrieval half
    served.item_table = table
    served._init_tables()
    items = served._items
    user = rng.standard_normal(dim, dtype=np.float32)
    flat = items.reshape(-1)
    copy_buf = np.empty_like(items)
    np.copyto(copy_buf, items)  # touch the pages so the copy times no page faults
    got = served.top_k_rows(user, k)
    # exact: the stable brute-force order of the served scores, and numpy's matvec agrees
    assert np.array_equal(got, np.argsort(-served.scores(user), kind="stable")[:k])
    expected = np.argsort(-(items @ user), kind="stable")[:k]
    assert np.array_equal(np.sort(got), np.sort(expected)), "served top-k is not exact"

    def naive() -> object:
        scores = items @ user
        idx = np.argpartition(scores, n_items - k)[n_items - k:]
        return idx[np.argsort(-scores[idx])]

    fns = {"read_sum": lambda: items.sum(), "read_sdot": lambda: flat @ flat,
           "read_copy": lambda: np.copyto(copy_buf, items),
           "served_topk": lambda: served.top_k_rows(user, k),
           "served_matvec_only": lambda: served._score_one(user),
           "naive_matvec_argpartition": naive}
    evict = np.ones(24_000_000, dtype=np.float32)  # 96 MB > L3
    out: dict = {"n_items": n_items, "dim": dim, "k": k, "dtype": "float32",
                 "table_mb": round(items.nbytes / 1e6, 2)}
    for mode, between in (("hot", None), ("cold", lambda: evict.sum())):
        if mode == "hot":
            res = interleaved(fns, reps, block=50)
        else:
            res = interleaved(fns, max(reps // 10, 50), between)
        best = min(("read_sum", "read_sdot", "read_copy"), key=lambda n: res[n]["p50_ms"])
        read_ms = res[best]["p50_ms"]
        res["reference"] = best
        res["bandwidth_gb_s"] = round(items.nbytes / (read_ms / 1e3) / 1e9, 2)
        res["served_over_read_p50"] = round(res["served_topk"]["p50_ms"] / read_ms, 3)
        res["matvec_over_read_p50"] = round(res["served_matvec_only"]["p50_ms"] / read_ms, 3)
        res["naive_over_read_p50"] = round(
            res["naive_matvec_argpartition"]["p50_ms"] / read_ms, 3)
        out[mode] = res
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    started = time.perf_counter()
    # Retrieval first: it needs no torch, and torch's OpenMP workers keep spinning after
    # torch work, stealing the cores BLAS needs on this 2-core machine.
    top = retrieval(args.reps)
    latency = model_latency(args.reps)
    for batch in (1, 32):
        r = latency[f"batch_{batch}"]
        print(f"served SASRec batch {batch:>2}: torch eager p50 {r['torch_eager']['p50_ms']:.3f} "
              f"ms · ONNX Runtime p50 {r['onnxruntime']['p50_ms']:.3f} ms · ratio "
              f"{r['ort_over_torch_p50']:.2f} (target <= 0.6 at batch 1)")
    for mode in ("hot", "cold"):
        r = top[mode]
        print(f"top-{top['k']} of {top['n_items']:,} (d={top['dim']}, {mode}): served "
              f"{r['served_topk']['p50_ms']:.3f} ms (matvec {r['served_matvec_only']['p50_ms']:.3f}"
              f") · naive {r['naive_matvec_argpartition']['p50_ms']:.3f} ms · read "
              f"({r['reference']}) {r[r['reference']]['p50_ms']:.3f} ms = "
              f"{r['bandwidth_gb_s']} GB/s · served/read {r['served_over_read_p50']:.2f} "
              f"(matvec/read {r['matvec_over_read_p50']:.2f}; target <= 1.5, goal 1.3)")
    save("scoring", {"config": vars(args), "model_latency": latency, "retrieval": top,
                     "seconds": round(time.perf_counter() - started, 1),
                     # the machine is shared: a load above 2 means the figures are inflated
                     "load_average_1m_at_end": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
