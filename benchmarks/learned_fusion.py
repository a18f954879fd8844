"""What the learned fusion costs the scorer: fixed weights against learned, in one run (issue 14).

ML-100K's first ``--events`` clicks become ``user-state`` records as in
``benchmarks/scorer.py`` (ingest on the in-process bus, one click per poll: every click a
trigger) and are replayed through ``ScoreProcessor`` in batches of ``--batch`` records with
``STREAMREC_FUSION`` ``fixed`` (the reference) and ``learned``, round-robin, best of
``--reps`` each, with and without a deep model (random weights: speed does not depend on
training). The learned side also writes its state (pools, gains) to ``scorer-state``; its
output count is printed beside. Pin to one core: ``taskset -c 1``.

    taskset -c 1 .venv/bin/python benchmarks/learned_fusion.py [--events 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402
from scorer import DATA, compare, deep_generator, ingest_states, random_model  # noqa: E402


def main() -> None:
    from streamrec.config import Settings
    from streamrec.consumers.score import ScoreProcessor
    from streamrec.producers.logs import read_log

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="scorer batch (records)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--name", default="learned_fusion", help="results/<name>.json")
    args = parser.parse_args()
    if args.events < 1 or args.batch < 1 or args.reps < 1:
        parser.error("--events, --batch and --reps must be >= 1")
    started = time.perf_counter()
    fixed = Settings(snapshot_every=1_000, fusion="fixed")
    learned = dataclasses.replace(fixed, fusion="learned")
    events = read_log(args.data, "movielens")[: args.events]
    stream = ingest_states(fixed, events, 1)
    model, _ = random_model(sorted({e.item_id for e in events}))
    out: dict = {"config": {k: str(v) for k, v in vars(args).items()},
                 "events": len(events), "records": len(stream)}
    for deep in (False, True):
        def make(settings: Settings):
            def build() -> ScoreProcessor:
                scorer = ScoreProcessor(settings, clock=lambda: 1.0)
                if deep:
                    scorer.swap_deep(deep_generator(model, settings.fusion_depth))
                return scorer
            return build
        best = compare({"fixed": (make(fixed), args.reps), "learned": (make(learned), args.reps)},
                       stream, args.batch)
        ratio = best["learned"]["us_per_trigger"] / best["fixed"]["us_per_trigger"]
        label = "deep" if deep else "online"
        out[label] = {**best, "learned_over_fixed": round(ratio, 3)}
        print(f"{label:>6}: fixed {best['fixed']['us_per_trigger']:.1f} us/trigger, "
              f"learned {best['learned']['us_per_trigger']:.1f} us/trigger "
              f"({ratio:.2f}x the fixed weights' cost)", flush=True)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    save_results(args.name, out)


if __name__ == "__main__":
    main()
