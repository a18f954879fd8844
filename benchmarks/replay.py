"""Prequential replay wall time: one process (serial) against worker processes, same run.

Replays one log through the chosen systems twice, serially and with ``--jobs`` workers
(``streamrec.app.evaluation.parallel``), checks that every system's per-event outcomes are
identical, prints both wall times and their ratio, and saves JSON. Each pass is repeated
``--repeat`` times and the median reported (the machine is shared and noisy).

    python benchmarks/replay.py                          # synthetic log, default systems
    python benchmarks/replay.py --log ../shared/data/ml-100k/u.data --format movielens \
        --limit 10000 --systems most-popular,recent-popular,item-knn,markov,streamrec

With ``--full-variants``, it times ``streamrec-full`` instead: one serial replay per deep
trainer variant, in this one process (CPU and wall seconds, NDCG@10 and HR@10 overall and
from ``--held-out-from``), so variants compare as ratios within one run. ``before`` is the
trainer as it was before issue 14 item 5 (dynamo export, 2 torch and 2 serving threads),
``current`` is ``DEEP_TRAINER``, and ``EVERYxEPOCHS`` is the current one retrained every
EVERY events with EPOCHS warm epochs (``KEY=VALUE+KEY=VALUE``: any other overrides, as
for ``--deep-variants`` below):

    python benchmarks/replay.py --log ../shared/data/ml-100k/u.data --format movielens \
        --limit 12000 --full-variants before,current

With ``--deep-variants``, it replays the ``deep`` system alone once per variant of its
trainer, each ``current`` (``DEEP_TRAINER``) or ``KEY=VALUE+KEY=VALUE`` overrides of it
(any ``DeepSequentialRecommender`` argument): how issue 14 item 4 compared losses, epochs
and architectures on ML-100K's first half (NDCG@10 and HR@10 from ``--held-out-from``,
training wall seconds):

    python benchmarks/replay.py --log ../shared/data/ml-100k/u.data --format movielens \
        --limit 50000 --held-out-from 25000 --deep-variants current,dropout=0.5
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import save_results  # noqa: E402

from streamrec.app.evaluation import PrequentialEvaluator  # noqa: E402
from streamrec.app.evaluation.parallel import run_parallel  # noqa: E402
from streamrec.app.evaluation.systems import (  # noqa: E402
    SystemOptions, build_deep_trainer, build_systems)

DEFAULT_SYSTEMS = "most-popular,recent-popular,item-knn,markov,streamrec"
# The replay's deep trainer before issue 14 item 5 (commit c918566), as overrides of
# DEEP_TRAINER: the reference the speed-ups are measured against.
BEFORE = {"retrain_every": 5_000, "warm_epochs": 5, "exporter": "auto", "threads": 2,
          "serving_threads": 2, "max_len": 50}


def load_events(args: argparse.Namespace) -> list:
    if args.log is None:
        from streamrec.producers.synthetic import SyntheticStream
        return list(SyntheticStream(n_users=500, n_items=800, n_events=args.limit or 10_000,
                                    seed=args.seed).events())
    from streamrec.producers.logs import read_log
    events = read_log(Path(args.log), args.format)
    return events[: args.limit] if args.limit else events


def variant_overrides(name: str) -> dict:
    """``before``, ``current``, ``EVERYxEPOCHS`` or ``KEY=VALUE+...`` → DEEP_TRAINER overrides."""
    if name == "before":
        return dict(BEFORE)
    if name == "current":
        return {}
    every, _, epochs = name.partition("x")
    if every.isdigit() and epochs.isdigit():
        return {"retrain_every": int(every), "warm_epochs": int(epochs)}
    if "=" in name:
        return deep_variant_overrides(name)
    raise SystemExit(f"a variant is before, current, EVERYxEPOCHS or KEY=VALUE+..., "
                     f"got {name!r}")


def _override_value(text: str) -> int | float | bool | str:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def deep_variant_overrides(name: str) -> dict:
    """``current`` or ``KEY=VALUE+KEY=VALUE`` → DEEP_TRAINER overrides."""
    if name == "current":
        return {}
    overrides = {}
    for part in name.split("+"):
        key, sep, value = part.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"a deep variant is current or KEY=VALUE+..., got {name!r}")
        overrides[key] = _override_value(value)
    return overrides


def score_deep_variants(args: argparse.Namespace, events: list) -> None:
    """One serial replay of the deep system alone per trainer variant; print and save."""
    import streamrec.export.release  # noqa: F401  - imports are paid here, not by a variant

    held_from = args.held_out_from if args.held_out_from is not None else len(events) // 2
    rows = []
    for name in [n for n in args.deep_variants.split(",") if n]:
        overrides = deep_variant_overrides(name)
        # seed=N: the replay seed (initial weights, dropout, batch order), for the noise level
        options = SystemOptions(seed=int(overrides.pop("seed", 0)))
        if int(overrides.get("max_len", 0)) > options.settings.recent_items:
            # the state's recent items cap the model's context: a longer one needs a longer
            # state (the deep system alone reads no other setting)
            options = SystemOptions(replace(options.settings,
                                            recent_items=int(overrides["max_len"])),
                                    options.seed)
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        deep = build_deep_trainer(options, **overrides)
        result = PrequentialEvaluator({name: deep}, (10,), 10_000).run(
            events, held_out_from=held_from)
        cpu_s, wall_s = time.process_time() - start_cpu, time.perf_counter() - start_wall
        assert result.held_out is not None
        held = result.held_out[name].summary()["overall"]
        retrains = deep.retrains  # type: ignore[attr-defined]
        row = {"variant": name, "overrides": overrides, "cpu_s": cpu_s, "wall_s": wall_s,
               "held_out_ndcg@10": held["ndcg@10"], "held_out_hr@10": held["hr@10"],
               "retrains": len(retrains),
               "train_wall_s": sum(r["train_s"] for r in retrains),
               "last_train_wall_s": retrains[-1]["train_s"] if retrains else 0.0,
               "outcome_digest": result.metrics[name].outcome_digest()}
        rows.append(row)
        print(f"{name:>30}  from {held_from:,}: ndcg@10 {row['held_out_ndcg@10']:.4f} "
              f"hr@10 {row['held_out_hr@10']:.4f}  train {row['train_wall_s']:.1f} s "
              f"(last {row['last_train_wall_s']:.1f} s, {row['retrains']} retrains)  "
              f"wall {wall_s:.1f} s  cpu {cpu_s:.1f} s", flush=True)
    save_results("replay_deep_variants", {
        "log": args.log or "synthetic", "limit": args.limit, "events": len(events),
        "held_out_from": held_from, "variants": rows})


def time_full_variants(args: argparse.Namespace, events: list) -> None:
    """One serial streamrec-full replay per variant; print and save their costs."""
    from streamrec.app.pipeline import build_online_system
    import streamrec.export.candidates  # noqa: F401  - imports (torch, onnx) are paid here,
    import streamrec.export.release  # noqa: F401  - not by the first variant's clock

    options = SystemOptions(seed=0)
    held_from = args.held_out_from if args.held_out_from is not None else len(events) // 2
    rows = []
    for name in [n for n in args.full_variants.split(",") if n]:
        overrides = variant_overrides(name)
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        deep = build_deep_trainer(options, **overrides)
        system = build_online_system(options.settings, deep=deep)
        result = PrequentialEvaluator({name: system}, (10,), 10_000).run(
            events, held_out_from=held_from)
        cpu_s, wall_s = time.process_time() - start_cpu, time.perf_counter() - start_wall
        overall = result.summary()[name]["overall"]
        assert result.held_out is not None
        held = result.held_out[name].summary()["overall"]
        retrains = deep.retrains  # type: ignore[attr-defined]
        row = {"variant": name, "overrides": overrides, "cpu_s": cpu_s, "wall_s": wall_s,
               "ndcg@10": overall["ndcg@10"], "hr@10": overall["hr@10"],
               "held_out_ndcg@10": held["ndcg@10"], "held_out_hr@10": held["hr@10"],
               "retrains": len(retrains),
               "train_wall_s": sum(r["train_s"] for r in retrains),
               "export_and_parity_wall_s": sum(r.get("export_and_parity_s", 0.0)
                                               for r in retrains),
               "outcome_digest": result.metrics[name].outcome_digest()}
        rows.append(row)
        print(f"{name:>12}  cpu {cpu_s:7.1f} s  wall {wall_s:7.1f} s  ndcg@10 "
              f"{row['ndcg@10']:.4f}  from {held_from:,}: {row['held_out_ndcg@10']:.4f}  "
              f"retrains {row['retrains']} (train {row['train_wall_s']:.1f} s, export+parity "
              f"{row['export_and_parity_wall_s']:.1f} s wall)", flush=True)
    reference = rows[0]
    for row in rows:
        row["cpu_vs_first"] = row["cpu_s"] / reference["cpu_s"]
    print("CPU against " + reference["variant"] + ": " + ", ".join(
        f"{row['variant']} {row['cpu_vs_first']:.2f}x" for row in rows))
    save_results("replay_streamrec_full", {
        "log": args.log or "synthetic", "limit": args.limit, "events": len(events),
        "held_out_from": held_from, "variants": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", default=None, help="log file (default: a synthetic stream)")
    parser.add_argument("--format", default="movielens")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--systems", default=DEFAULT_SYSTEMS)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--full-variants", default=None,
                        help="time streamrec-full per deep trainer variant instead: "
                             "before,current,EVERYxEPOCHS,...")
    parser.add_argument("--deep-variants", default=None,
                        help="replay the deep system alone per trainer variant instead: "
                             "current,KEY=VALUE+KEY=VALUE,...")
    parser.add_argument("--held-out-from", type=int, default=None,
                        help="with --full-variants or --deep-variants: event index the held-out figures start "
                             "at (default: half the events)")
    args = parser.parse_args()
    names = [n for n in args.systems.split(",") if n]
    events = load_events(args)
    if args.full_variants:
        time_full_variants(args, events)
        return
    if args.deep_variants:
        score_deep_variants(args, events)
        return
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
