"""``streamrec produce replay|synthetic``: put a log file or a synthetic stream on Kafka.

This is the edge where flags and ``STREAMREC_*`` variables become a ``Settings``; the
readers, generator, publisher and pacer below only receive values. ``--stdout`` writes
JSONL instead of publishing, to inspect a stream or pipe it elsewhere without a broker.

A run that cannot deliver every event exits 1 with one line on stderr saying how many of
the run's events were not delivered and how many were; it never waits longer than
``--delivery-timeout`` (plus a few seconds) after the last event it published.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from streamrec.app.argtypes import non_negative_int, positive_float, positive_int, speed
from streamrec.producers.delivery import (DEFAULT_DELIVERY_TIMEOUT_S, MAX_DELIVERY_TIMEOUT_S,
                                DeliveryCounts, describe_error)
from streamrec.producers.logs import FORMATS, LogFormatError, ReadStats, read_log, sniff_format
from streamrec.producers.publisher import ClickPublisher, PublishError
from streamrec.producers.replay import replay
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from streamrec.app.kafka_args import add_kafka_options, kafka_settings
from streamrec.app.logging_setup import redact
from streamrec.progress import Progress

MIN_DELIVERY_TIMEOUT_S = 1.0  # below a second a healthy broker's own hiccups would fail events


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"rate must be in [0, 1), got {text!r}")
    return value


def _delivery_timeout(text: str) -> float:
    value = positive_float(text)
    if not MIN_DELIVERY_TIMEOUT_S <= value <= MAX_DELIVERY_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_DELIVERY_TIMEOUT_S:g} and "
            f"{MAX_DELIVERY_TIMEOUT_S:g} seconds, got {text!r}")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speed", type=speed, default=None, metavar="max|N",
                        help="'max' (default) or event time x N, e.g. 60 = one hour per minute")
    parser.add_argument("--topic", help="destination topic (default: the clicks topic)")
    parser.add_argument("--delivery-timeout", type=_delivery_timeout,
                        default=DEFAULT_DELIVERY_TIMEOUT_S, metavar="SECONDS",
                        dest="delivery_timeout_s",
                        help="how long Kafka retries an event through an outage before it "
                             f"counts as not delivered (default {DEFAULT_DELIVERY_TIMEOUT_S:g})")
    add_kafka_options(parser)
    parser.add_argument("--stdout", action="store_true",
                        help="write JSONL to stdout instead of publishing to Kafka")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def register(subparsers: argparse._SubParsersAction) -> None:
    produce = subparsers.add_parser("produce", help="publish a log or a synthetic stream")
    actions = produce.add_subparsers(dest="produce_command", metavar="SOURCE")
    actions.required = True

    p = actions.add_parser("replay", help="publish a log file in event-time order")
    p.add_argument("path", type=_existing_file, metavar="PATH")
    p.add_argument("--format", dest="fmt", choices=(*FORMATS, "auto"), default="auto",
                   help="log format (default: guessed from the content)")
    p.add_argument("--limit", type=positive_int, help="publish only the N earliest events")
    p.add_argument("--skip-bad-lines", action="store_true",
                   help="skip and count malformed lines instead of stopping at the first")
    _add_output_options(p)
    p.set_defaults(func=_cmd_replay)

    s = actions.add_parser("synthetic", help="publish a synthetic stream with known ground truth")
    s.add_argument("--users", type=positive_int, required=True)
    s.add_argument("--items", type=positive_int, required=True)
    s.add_argument("--events", type=non_negative_int, required=True)
    s.add_argument("--dim", type=positive_int, default=8, help="latent dimension (default 8)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--drift-at", type=non_negative_int, help="rotate tastes from event N on")
    s.add_argument("--malformed-rate", type=_rate, default=0.0,
                   help="share of bad payloads mixed in, for dead-letter tests (default 0)")
    s.add_argument("--mean-gap", type=float, default=1.0, dest="mean_gap_s",
                   help="mean event-time gap between events in seconds (default 1)")
    _add_output_options(s)
    s.set_defaults(func=_cmd_synthetic)


def _cmd_replay(args: argparse.Namespace) -> int:
    fmt = sniff_format(args.path) if args.fmt == "auto" else args.fmt
    stats = ReadStats()
    try:
        events = read_log(args.path, fmt, on_error="skip" if args.skip_bad_lines else "raise",
                          stats=stats)
    except LogFormatError as exc:
        sys.stderr.write(f"streamrec: error: {exc} (use --skip-bad-lines to skip such lines)\n")
        return 1
    if args.limit is not None:
        events = events[:args.limit]  # the earliest N by event time, not the first N lines
    if stats.skipped:
        sys.stderr.write(f"skipped {stats.skipped:,} malformed line(s); first: {stats.errors[0]}\n")
    return _run(args, events, len(events), label=f"replay {args.path.name}")


def _cmd_synthetic(args: argparse.Namespace) -> int:
    if args.mean_gap_s < 0:
        sys.stderr.write("streamrec: error: --mean-gap must not be negative\n")
        return 2
    stream = SyntheticStream(args.users, args.items, args.events, dim=args.dim,
                             drift_at=args.drift_at, seed=args.seed, mean_gap_s=args.mean_gap_s,
                             malformed_rate=args.malformed_rate)
    if args.malformed_rate:
        # Raw (key, value, ts) payloads: valid ones carry their event's time for pacing,
        # bad ones None (sent at once). Valid payloads come in the same order as events().
        times = (event.ts for event in stream.events())
        payloads = [(key, value, next(times) if valid else None)
                    for key, value, valid in stream.raw_payloads()]
        return _run(args, payloads, len(payloads), label="synthetic", raw=True,
                    event_time=lambda payload: payload[2])
    return _run(args, stream.events(), len(stream), label="synthetic")


def _run(args: argparse.Namespace, items: Iterable[Any], total: int, *, label: str,
         raw: bool = False, event_time: Callable[[Any], float | None] | None = None) -> int:
    progress = Progress(total, label, enabled=not args.quiet)
    extra: dict[str, Any] = {"event_time": event_time} if event_time else {}
    if args.stdout:
        out = sys.stdout.buffer
        write: Callable[[Any], object]
        if raw:
            write = lambda payload: out.write(payload[1] + b"\n")  # noqa: E731
        else:
            write = lambda event: out.write(encode_click(event) + b"\n")  # noqa: E731
        started = time.monotonic()
        result = replay(items, write, args.speed, progress=progress, **extra)
        out.flush()
        _summary(result.count, time.monotonic() - started, "stdout")
        return 0

    settings = kafka_settings(args, topic_prefix=args.topic_prefix)
    topic = args.topic or settings.topics.clicks
    # kafka-python logs every failed batch and reconnect; with no handler configured Python
    # would print them all on stderr and bury the one line below. Handlers set up by whoever
    # embeds this still get them.
    kafka_log = logging.getLogger("kafka")
    if not any(isinstance(h, logging.NullHandler) for h in kafka_log.handlers):
        kafka_log.addHandler(logging.NullHandler())
    started = time.monotonic()
    publisher: ClickPublisher | None = None
    try:
        with ClickPublisher.from_settings(settings, topic,
                                          delivery_timeout_s=args.delivery_timeout_s) as publisher:
            sink: Callable[[Any], object]
            if raw:
                sink = lambda payload: publisher.publish_raw(payload[0], payload[1])  # noqa: E731
            else:
                sink = publisher.publish
            result = replay(items, sink, args.speed, progress=progress, **extra)
            publisher.flush()  # count as sent only what the broker acknowledged
    except PublishError as exc:
        # After the with-block the publisher has closed: its counts are final, while the
        # error may have been raised mid-run with events still in flight.
        counts = publisher.counts() if publisher is not None else exc.counts
        sys.stderr.write(_not_delivered_line(counts, total, topic, settings.bootstrap_servers,
                                             exc) + "\n")
        return 1
    _summary(result.count, time.monotonic() - started,
             f"topic {topic!r} at {settings.bootstrap_servers}")
    return 0


def _not_delivered_line(counts: DeliveryCounts, total: int, topic: str, bootstrap: str,
                        error: PublishError) -> str:
    """``streamrec produce: N of TOTAL events not delivered ...``: exact, in one line."""
    parts = [f"{counts.delivered} delivered", f"{counts.failed} failed"]
    if counts.unacknowledged:
        parts.append(f"{counts.unacknowledged} unacknowledged")
    if total > counts.published:
        parts.append(f"{total - counts.published} never sent")
    first = counts.first_error or (error.errors[0] if error.errors else error)
    return redact(f"streamrec produce: {total - counts.delivered} of {total} events not "
                  f"delivered to topic {topic!r} at {bootstrap} ({', '.join(parts)}); "
                  f"first error: {describe_error(first)}")


def _summary(count: int, elapsed_s: float, destination: str) -> None:
    rate = count / elapsed_s if elapsed_s > 0 else float("inf")
    sys.stderr.write(f"sent {count:,} events to {destination} in {elapsed_s:.2f} s "
                     f"({rate:,.0f} events/s)\n")
