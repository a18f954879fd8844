"""Prequential replay wall time: one process (serial) against worker processes, same run.

Replays one log through the chosen systems twice, serially and with ``--jobs`` workers
(``streamrec.app.evaluation.parallel``), checks that every system's per-event outcomes are
identical, prints both wall times and their ratio, and saves JSON. Each pass is repeated
``--repeat`` times and the median reported (the machine is shared and noisy).

    python benchmarks/replay.py                          # synthetic log, default systems
    python benchmarks/replay.py --log ../shared/data/ml-100k/u.data --format movielens \
        --limit 10000 --systems most-popular,recent-popular,item-knn,markov,streamrec
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402

from streamrec.app.evaluation import PrequentialEvaluator  # noqa: E402
from streamrec.app.evaluation.parallel import run_parallel  # noqa: E402
from streamrec.app.evaluation.systems import SystemOptions, build_systems  # noqa: E402

DEFAULT_SYSTEMS = "most-popular,recent-popular,item-knn,markov,streamrec"


def load_events(args: argparse.Namespace) -> list:
    if args.log is None:
        from streamrec.producers.synthetic import SyntheticStream
        return list(SyntheticStream(n_users=500, n_items=800, n_events=args.limit or 10_000,
                                    seed=args.seed).events())
    from streamrec.producers.logs import read_log
    events = read_log(Path(args.log), args.format)
    return events[: args.limit] if args.limit else events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", default=None, help="log file (default: a synthetic stream)")
    parser.add_argument("--format", default="movielens")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    names = [n for n in args.systems.split(",") if n]
    events = load_events(args)
    options = SystemOptions(seed=0)
    serial_s, parallel_s = [], []
    identical = True
    for _ in range(args.repeat):
        built, _unavailable = build_systems(names, options)
        start = time.perf_counter()
        serial = PrequentialEvaluator(built, (10,), 10_000).run(events)
        serial_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        parallel, _lost = run_parallel(names, options, events, (10,), 10_000, args.jobs)
        parallel_s.append(time.perf_counter() - start)
        identical &= all(serial.metrics[n].outcome_digest()
                         == parallel.metrics[n].outcome_digest()
                         for n in serial.metrics)
    serial_median, parallel_median = statistics.median(serial_s), statistics.median(parallel_s)
    print(f"{len(events):,} events x {len(names)} systems ({', '.join(names)})")
    print(f"serial    median {serial_median:7.1f} s  runs {[round(s, 1) for s in serial_s]}")
    print(f"jobs={args.jobs}    median {parallel_median:7.1f} s  runs "
          f"{[round(s, 1) for s in parallel_s]}")
    print(f"speed-up  {serial_median / parallel_median:.2f}x; outcomes identical: {identical}")
    save_results("replay", {
        "log": args.log or "synthetic", "limit": args.limit, "events": len(events),
        "systems": names, "jobs": args.jobs, "repeat": args.repeat,
        "serial_s": serial_s, "parallel_s": parallel_s, "serial_median_s": serial_median,
        "parallel_median_s": parallel_median, "speedup": serial_median / parallel_median,
        "outcomes_identical": identical})
    if not identical:
        raise SystemExit("parallel outcomes differ from the serial ones")


if __name__ == "__main__":
    main()
