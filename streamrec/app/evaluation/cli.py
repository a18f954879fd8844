"""``streamrec replay PATH --format ...``: evaluate systems and baselines on a logged stream.

Flags and environment are read here, at the edge, and turned into a frozen ``Settings`` and
a plain configuration dict that goes verbatim into ``report.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from streamrec.app.argtypes import known_names, positive_float, positive_int, speed
from streamrec.config import Settings
from streamrec.app.evaluation.systems import DEFAULT_SYSTEMS, SYSTEMS, SystemOptions, build_systems
from streamrec.app.kafka_args import add_kafka_options, kafka_settings
from streamrec.progress import Progress

FORMATS = ("movielens", "csv", "jsonl")
PROTOCOLS = ("prequential", "last-item")


def _system_list(text: str) -> list[str]:
    return known_names(text, SYSTEMS, "system(s)")


def _tune_until(text: str) -> Any:
    from streamrec.app.evaluation.split import parse_tune_until
    try:
        return parse_tune_until(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay", help="evaluate the system and baselines by replaying a log",
        description="Replay a logged event stream test-then-train (prequential) or "
                    "leave-last-out, and write JSON, Markdown and PNG reports.")
    parser.add_argument("path", type=Path, help="log file (MovieLens u.data, CSV or JSONL)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, required=True)
    parser.add_argument("--k", dest="ks", action="append", type=positive_int, metavar="K",
                        help="cut-off; repeat for several (default 10)")
    parser.add_argument("--window", type=positive_int, default=10_000,
                        help="events per reporting window (default 10000)")
    parser.add_argument("--systems", type=_system_list, default=list(DEFAULT_SYSTEMS),
                        help=f"comma-separated, default all: {','.join(SYSTEMS)}")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="prequential")
    parser.add_argument("--out", type=Path, default=Path("replay-report"),
                        help="report folder (default replay-report/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=positive_int, default=None,
                        help="worker processes for a prequential in-process replay, one "
                             "system each at a time (default: the CPU count); the outcomes "
                             "are those of --jobs 1, only the wall time differs")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="replay only the first N events in event-time order")
    parser.add_argument("--tune-until", type=_tune_until, default=None,
                        metavar="FRACTION|TIMESTAMP",
                        help="split the log: a fraction in (0,1) of its events or an epoch-"
                             "seconds time; metrics are reported for the events after it "
                             "(held-out) and for the whole log")
    kafka = parser.add_argument_group("--via-kafka: replay through a real broker")
    kafka.add_argument("--via-kafka", action="store_true",
                       help="produce the log into clicks and score the recommendations read "
                            "back; the --systems run in-process beside it as references")
    kafka.add_argument("--topic-prefix",
                       help="default: a fresh replay-<id>- prefix, never production topics")
    kafka.add_argument("--speed", type=speed, default=None, metavar="max|N",
                       help="'max' (default) or event time x N, e.g. 3600 = an hour a second")
    kafka.add_argument("--start-services", action="store_true",
                       help="run ingest and score in this process (default: expect them "
                            "running against the same bootstrap servers and prefix)")
    kafka.add_argument("--timeout", type=positive_float, default=120.0, metavar="SECONDS",
                       help="wait this long for the last recommendations (default 120)")
    add_kafka_options(parser, topic_prefix=False)
    parser.add_argument("--no-progress", action="store_true", help="no progress line")
    parser.set_defaults(func=run_replay, preflight=_preflight)


def _preflight(args: argparse.Namespace) -> None:
    """The arguments' own checks, run by the CLI edge before it looks for a broker."""
    from streamrec.config import ConfigError
    if not args.path.is_file():
        raise ConfigError(f"no such file: {args.path}")
    if args.via_kafka and args.protocol != "prequential":
        raise ConfigError("--via-kafka replays prequentially; it cannot run --protocol last-item")
    if args.tune_until is not None and (args.via_kafka or args.protocol != "prequential"):
        raise ConfigError("--tune-until splits a prequential in-process replay; it cannot "
                          "be combined with --via-kafka or --protocol last-item")


def _error(message: str) -> int:
    sys.stderr.write(f"streamrec: error: {message}\n")
    return 2


# What the eval extra brings that a replay needs to write its report (numpy via serve).
EVAL_MODULES = ("matplotlib", "numpy")


def missing_eval_modules(modules: tuple[str, ...] = EVAL_MODULES) -> list[str]:
    """The modules of the eval extra that are not installed (found, not imported: cheap)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def run_replay(args: argparse.Namespace) -> int:
    # Before reading or replaying anything: a replay takes minutes to hours, and its report
    # (PNG plots) needs matplotlib; finding out at the end would throw the run away.
    missing = missing_eval_modules()
    if missing:
        return _error(f"replay writes its report with the eval extra, missing here: "
                      f"{', '.join(missing)}; install it with pip install 'streamrec[eval]'")
    from streamrec.producers.logs import LogFormatError, read_log
    from streamrec.app.evaluation.report import file_sha256, write_report

    ks = sorted(set(args.ks or [10]))
    settings = Settings.from_env()
    systems, unavailable = build_systems(args.systems, SystemOptions(settings, args.seed))
    for name, reason in unavailable.items():
        sys.stderr.write(f"streamrec: note: system {name!r} unavailable, skipped: {reason}\n")
    if not systems:
        return _error("none of the requested systems is available")
    try:
        events = read_log(args.path, args.fmt)
    except (LogFormatError, UnicodeDecodeError, ValueError) as exc:
        return _error(f"cannot read {args.path}: {exc}")
    if args.limit is not None:
        events = events[: args.limit]
    if not events:
        return _error(f"{args.path} holds no events")
    held_out_from = None
    if args.tune_until is not None:
        from streamrec.app.evaluation.split import split_index
        try:
            held_out_from = split_index(events, args.tune_until)
        except ValueError as exc:
            return _error(str(exc))
    config: dict[str, Any] = {
        "path": str(args.path), "sha256": file_sha256(args.path), "format": args.fmt,
        "protocol": args.protocol, "ks": ks, "window": args.window,
        "systems": list(systems), "seed": args.seed, "limit": args.limit,
        "via_kafka": args.via_kafka,
        "tune_until": None if args.tune_until is None else args.tune_until.describe(),
        "held_out_from": held_out_from, "settings": {
            "recent_items": settings.recent_items, "top_k": settings.top_k,
            "popularity_half_life_s": settings.popularity_half_life_s},
    }
    start = time.perf_counter()
    if args.via_kafka:
        result = _replay_via_kafka(args, events, ks, config)
        if result is None:
            return 2
        if systems:  # the references, on the identical sequence, in the same report
            from streamrec.app.evaluation.prequential import PrequentialEvaluator
            reference = PrequentialEvaluator(systems, ks, args.window).run(events)
            result.metrics.update(reference.metrics)
        paths = write_report(args.out, result, config, unavailable)
        _append_kafka_markdown(paths[1], result.extra["via_kafka"])  # type: ignore[arg-type]
        _print_summary(result, ks, len(events), time.perf_counter() - start, paths)
        return 0
    jobs = min(args.jobs or os.cpu_count() or 1, len(systems))
    config["jobs"] = jobs if args.protocol == "prequential" else 1
    if config["jobs"] > 1:
        from streamrec.app.evaluation.parallel import run_parallel
        # Counted in system-events: each worker replays the whole log through its system.
        progress = Progress(len(events) * len(systems), label="replay prequential (system-events)",
                            enabled=not args.no_progress)
        with progress:
            result, lost = run_parallel(list(systems), SystemOptions(settings, args.seed),
                                        events, ks, args.window, jobs, progress.update,
                                        held_out_from=held_out_from)
        for name, reason in lost.items():
            sys.stderr.write(f"streamrec: note: system {name!r} unavailable in a worker, "
                             f"skipped: {reason}\n")
        unavailable.update(lost)
        if not result.metrics:
            return _error("none of the requested systems is available")
    else:
        progress = Progress(len(events), label=f"replay {args.protocol}",
                            enabled=not args.no_progress)
        with progress:
            if args.protocol == "prequential":
                from streamrec.app.evaluation.prequential import PrequentialEvaluator
                result = PrequentialEvaluator(systems, ks, args.window).run(
                    events, progress.update, held_out_from=held_out_from)
            else:
                from streamrec.app.evaluation.last_item import evaluate_last_item
                result = evaluate_last_item(systems, events, ks, progress.update)
    paths = write_report(args.out, result, config, unavailable)
    _print_summary(result, ks, len(events), time.perf_counter() - start, paths)
    costs: dict[str, dict[str, float]] = result.extra.get(  # type: ignore[assignment]
        "system_seconds", {})
    if costs:  # what each system cost its worker
        print(f"{jobs} workers; per system wall/CPU s: " + ", ".join(
            f"{name} {cost['wall_s']:.0f}/{cost['cpu_s']:.0f}" for name, cost in costs.items()))
    return 0


def _print_summary(result: Any, ks: list[int], n_events: int, elapsed: float,
                   paths: list[Path]) -> None:
    held_out = result.held_out_summary()
    if held_out is not None:
        print(f"held-out (events {result.held_out_from:,} onwards):")
        _print_rows(held_out, ks[0])
        print("whole log:")
    _print_rows(result.summary(), ks[0])
    print(f"{n_events:,} events in {elapsed:.1f} s; report: " + ", ".join(str(p) for p in paths))


def _print_rows(summary: dict[str, Any], k: int) -> None:
    for name, stats in summary.items():
        overall = stats["overall"]
        hr, nd = overall.get(f"hr@{k}"), overall.get(f"ndcg@{k}")
        print(f"{name:>15}  hr@{k} {_num(hr)}  ndcg@{k} {_num(nd)}  "
              f"p99 {overall.get('latency_p99_ms', 0.0):.3f} ms")


def _replay_via_kafka(args: argparse.Namespace, events: list[Any], ks: list[int],
                      config: dict[str, Any]) -> Any:
    """Run the Kafka replay; record its set-up in ``config``; None (after a message) on failure."""
    from streamrec.app.evaluation.via_kafka import (ViaKafkaError, ViaKafkaOptions,
                                                run_replay_via_kafka, replay_prefix)
    from streamrec.app.evaluation.via_kafka_scoring import HIT_RULE

    prefix = args.topic_prefix if args.topic_prefix is not None else replay_prefix()
    settings = kafka_settings(args, topic_prefix=prefix)
    options = ViaKafkaOptions(speed=args.speed, start_services=args.start_services,
                              timeout_s=args.timeout, progress=not args.no_progress)
    config["via_kafka"] = {
        "bootstrap_servers": settings.bootstrap_servers, "topic_prefix": prefix,
        "speed": "max" if args.speed is None else args.speed,
        "services": "in-process" if args.start_services else "external",
        "timeout_s": args.timeout, "hit_rule": HIT_RULE,
    }
    print(f"via-kafka: topic prefix {prefix!r} on {settings.bootstrap_servers}, services "
          f"{config['via_kafka']['services']}", flush=True)
    try:
        return run_replay_via_kafka(events, settings, ks, args.window, options)
    except ViaKafkaError as exc:
        _error(str(exc))
        return None


def _append_kafka_markdown(path: Path, section: dict[str, Any]) -> None:
    """Add the end-to-end figures of the Kafka path below the metrics table."""
    lines = ["", "## Kafka path", "", f"Hit rule: {section['hit_rule']}.", "",
             "| latency (ms) | count | p50 | p95 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for key in ("e2e_latency_ms", "event_to_reflecting_recommendation_ms",
                "scorer_end_to_end_ms", "scorer_score_ms", "delivery_ms"):
        s = section[key]
        lines.append(f"| {key} | {s['count']} | " + " | ".join(
            _num(s[q], 2) for q in ("p50", "p95", "p99", "max")) + " |")
    lines += ["", f"{section['events_produced']:,} events produced at "
              f"{_num(section['events_per_s_produced'], 0)}/s; "
              f"{section['recommendations_received']:,} recommendations received."]
    with open(path, "a") as handle:
        handle.write("\n".join(lines) + "\n")


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"
