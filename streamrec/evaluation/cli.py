"""``streamrec replay PATH --format ...``: evaluate systems and baselines on a logged stream.

Flags and environment are read here, at the edge, and turned into a frozen ``Settings`` and
a plain configuration dict that goes verbatim into ``report.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from streamrec.config import Settings
from streamrec.evaluation.systems import DEFAULT_SYSTEMS, SYSTEMS, SystemOptions, build_systems
from streamrec.progress import Progress

FORMATS = ("movielens", "csv", "jsonl")
PROTOCOLS = ("prequential", "last-item")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _system_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown system(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SYSTEMS)}")
    return names


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay", help="evaluate the system and baselines by replaying a log",
        description="Replay a logged event stream test-then-train (prequential) or "
                    "leave-last-out, and write JSON, Markdown and PNG reports.")
    parser.add_argument("path", type=Path, help="log file (MovieLens u.data, CSV or JSONL)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, required=True)
    parser.add_argument("--k", dest="ks", action="append", type=_positive_int, metavar="K",
                        help="cut-off; repeat for several (default 10)")
    parser.add_argument("--window", type=_positive_int, default=10_000,
                        help="events per reporting window (default 10000)")
    parser.add_argument("--systems", type=_system_list, default=list(DEFAULT_SYSTEMS),
                        help=f"comma-separated, default all: {','.join(SYSTEMS)}")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="prequential")
    parser.add_argument("--out", type=Path, default=Path("replay-report"),
                        help="report folder (default replay-report/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="replay only the first N events in event-time order")
    parser.add_argument("--via-kafka", action="store_true",
                        help="replay through a Kafka broker (not yet implemented)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")
    parser.set_defaults(func=run_replay)


def _error(message: str) -> int:
    sys.stderr.write(f"streamrec: error: {message}\n")
    return 2


def run_replay(args: argparse.Namespace) -> int:
    from producers.logs import LogFormatError, read_log
    from streamrec.evaluation.report import file_sha256, write_report

    if not args.path.is_file():
        return _error(f"no such file: {args.path}")
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
    config: dict[str, Any] = {
        "path": str(args.path), "sha256": file_sha256(args.path), "format": args.fmt,
        "protocol": args.protocol, "ks": ks, "window": args.window,
        "systems": list(systems), "seed": args.seed, "limit": args.limit,
        "via_kafka": args.via_kafka, "settings": {
            "recent_items": settings.recent_items, "top_k": settings.top_k,
            "popularity_half_life_s": settings.popularity_half_life_s},
    }
    if args.via_kafka:
        from streamrec.evaluation.via_kafka import ViaKafkaNotImplemented, run_replay_via_kafka
        try:
            run_replay_via_kafka(events, config)
        except ViaKafkaNotImplemented as exc:
            return _error(str(exc))
    start = time.perf_counter()
    progress = Progress(len(events), label=f"replay {args.protocol}",
                        enabled=not args.no_progress)
    with progress:
        if args.protocol == "prequential":
            from streamrec.evaluation.prequential import PrequentialEvaluator
            result = PrequentialEvaluator(systems, ks, args.window).run(events, progress.update)
        else:
            from streamrec.evaluation.last_item import evaluate_last_item
            result = evaluate_last_item(systems, events, ks, progress.update)
    paths = write_report(args.out, result, config, unavailable)
    elapsed = time.perf_counter() - start
    k = ks[0]
    for name, stats in result.summary().items():
        overall = stats["overall"]
        hr, nd = overall.get(f"hr@{k}"), overall.get(f"ndcg@{k}")
        print(f"{name:>15}  hr@{k} {_num(hr)}  ndcg@{k} {_num(nd)}  "
              f"p99 {overall.get('latency_p99_ms', 0.0):.3f} ms")
    print(f"{len(events):,} events in {elapsed:.1f} s; report: "
          + ", ".join(str(p) for p in paths))
    return 0


def _num(value: object) -> str:
    return "–" if value is None else f"{value:.4f}"
