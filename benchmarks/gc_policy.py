"""The scorer with CPython's default collector thresholds vs streamrec's (``streamrec.app.gc_policy``).

ML-100K's first ``--events`` clicks become user states (``benchmarks/scorer.py``'s
``ingest_states``: a state per click), and the scorer (deep model on, a SASRec trained for
one epoch on the same clicks, transitions on as shipped) answers them in batches of 500,
alternately under each policy in one process, ``--rounds`` times; best round each. The
collector never changes a result, only the time.

    taskset -c 1 .venv/bin/python benchmarks/gc_policy.py [--events 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scorer as bench  # noqa: E402
from bench_results import save_results  # noqa: E402

from streamrec.app.gc_policy import THRESHOLDS  # noqa: E402


def main() -> int:
    from streamrec.config import Settings
    from streamrec.consumers.score import ScoreProcessor
    from streamrec.producers.logs import read_log

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=bench.DATA)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(snapshot_every=1_000)
    events = read_log(args.data, "movielens")[: args.events]
    stream = bench.ingest_states(settings, events, 1)
    model, _ = bench.trained_model(events, 1)

    def make() -> ScoreProcessor:
        processor = ScoreProcessor(settings, clock=lambda: 1.0)
        processor.swap_deep(bench.deep_generator(model, processor.deep_candidates))
        return processor

    default = gc.get_threshold()
    policies = {"streamrec": THRESHOLDS, "cpython_default": default}
    runs: dict[str, list[float]] = {name: [] for name in policies}
    for round_ in range(args.rounds):
        for name, thresholds in policies.items():
            gc.collect()
            gc.set_threshold(*thresholds)
            seconds, triggers, _ = bench.run_once(make, stream, 500)
            runs[name].append(seconds / triggers * 1e6)
            print(f"round {round_ + 1} {name:>16}: {runs[name][-1]:7.1f} µs a trigger", flush=True)
    gc.set_threshold(*default)
    best = {name: min(values) for name, values in runs.items()}
    ratio = best["cpython_default"] / best["streamrec"]
    print(f"best: default {best['cpython_default']:.1f} µs, streamrec {best['streamrec']:.1f} µs "
          f"a trigger: {ratio:.2f}x")
    save_results("gc_policy", {"events": args.events, "thresholds": list(THRESHOLDS),
                               "default_thresholds": list(default),
                               "us_per_trigger": {k: [round(v, 1) for v in vs]
                                                  for k, vs in runs.items()},
                               "speedup": round(ratio, 2)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
