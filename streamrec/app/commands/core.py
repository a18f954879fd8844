"""Core subcommands: schema, topics, ingest, score, forget, demo.

Flags and ``STREAMREC_*`` environment variables are read here, at the edge, and turned into
one frozen ``Settings`` that everything below receives.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, Callable

from streamrec.app.argtypes import positive_int, setting
from streamrec.config import Settings
from streamrec.app.kafka_args import SETTING_FLAGS, add_kafka_options, kafka_settings

if TYPE_CHECKING:
    from streamrec.metrics import MetricsRegistry
    from streamrec.transport.runtime import ProcessorService

log = logging.getLogger("streamrec")


__all__ = ["add_kafka_options", "register", "settings_from_args"]


def settings_from_args(args: argparse.Namespace, **extra: object) -> Settings:
    """The command's ``Settings``: every flag of ``SETTING_FLAGS`` it has, then ``extra``."""
    overrides: dict[str, object] = {field: getattr(args, dest, None)
                                    for dest, field in SETTING_FLAGS.items()}
    overrides.update(extra)
    return kafka_settings(args, **overrides)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("schema", help="print the JSON Schema of a topic's messages")
    p.add_argument("--topic", choices=("clicks", "requests", "recommendations", "user-state"),
                   default="clicks", help="whose messages (default: clicks)")
    p.set_defaults(func=_cmd_schema)

    topics = subparsers.add_parser("topics", help="manage the topics of the pipeline")
    topic_commands = topics.add_subparsers(dest="topics_command", metavar="ACTION")
    topic_commands.required = True
    create = topic_commands.add_parser("create", help="create every topic (idempotent)")
    add_kafka_options(create)
    create.add_argument("--partitions", type=setting("partitions"),
                        help="partitions of every topic but models (default 4)")
    create.add_argument("--replication-factor", type=setting("replication_factor"),
                        help="replicas of every topic, at most the brokers in the cluster "
                             "(default: $STREAMREC_REPLICATION_FACTOR or 1; 3 in production)")
    create.set_defaults(func=_cmd_topics_create)

    for name, help_text, runner in (
        ("ingest", "consume clicks, update user state, emit it to user-state", _cmd_ingest),
        ("score", "consume user-state and requests, publish recommendations", _cmd_score),
    ):
        p = subparsers.add_parser(name, help=help_text)
        add_kafka_options(p)
        p.add_argument("--instance-id", help="stable id of this instance (default: hostname); "
                       "a restarted instance with the same id fences its predecessor and, "
                       "as a static group member, takes its partitions back without a "
                       "rebalance (within STREAMREC_SESSION_TIMEOUT_S, default 45)")
        p.add_argument("--batch-size", type=setting("batch_size"),
                       help="max records per batch (default 500)")
        p.add_argument("--metrics-port", type=setting("metrics_port"),
                       help="port of /metrics and /healthz (0 = off)")
        p.add_argument("--metrics-host", type=setting("metrics_host"),
                       help="bind address of the metrics endpoint "
                       "(default: $STREAMREC_METRICS_HOST or 0.0.0.0)")
        p.add_argument("--log-format", choices=("json", "text"), default="json")
        if name == "score":
            p.add_argument("--k", type=setting("top_k"),
                           help="recommendations per message (default 10)")
        p.set_defaults(func=runner)

    forget = subparsers.add_parser("forget", help="erase a user's state everywhere (privacy)")
    add_kafka_options(forget)
    forget.add_argument("user_id")
    forget.set_defaults(func=_cmd_forget)

    demo = subparsers.add_parser("demo", help="run the whole pipeline in-process on a synthetic stream")
    demo.add_argument("--users", type=positive_int, default=2_000)
    demo.add_argument("--items", type=positive_int, default=1_000)
    demo.add_argument("--events", type=positive_int, default=150_000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--partitions", type=setting("partitions"))
    demo.add_argument("--no-deep", dest="deep", action="store_false",
                      help="online path only: no trainer, no deep model (no torch needed)")
    demo.add_argument("--wait-for-trainer", dest="background", action="store_false",
                      help="pause the stream while the trainer runs (reproducible figures; "
                           "default: it trains alongside, as the trainer service does)")
    demo.set_defaults(func=_cmd_demo)


def _cmd_schema(args: argparse.Namespace) -> int:
    from streamrec.app.topic_schemas import schema_text
    print(schema_text(args.topic))
    return 0


def _cmd_topics_create(args: argparse.Namespace) -> int:
    from streamrec.transport.topics import create_topics
    settings = settings_from_args(args)
    created = create_topics(settings)
    print(f"topics ready on {settings.bootstrap_servers}: {', '.join(created) or 'all existed'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from streamrec.app.demo import run_demo
    settings = settings_from_args(args)
    run_demo(settings, users=args.users, items=args.items, events=args.events, seed=args.seed,
             deep=args.deep, background=args.background)
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    from streamrec.transport import kafka_clients
    from streamrec.control import forget_request, send_control
    settings = settings_from_args(args)
    producer = kafka_clients.producer(settings)
    # Sent on clicks, keyed by the user: see streamrec.control.
    send_control(producer, settings.topics.clicks,
                 [forget_request(args.user_id, settings.control_secret)], timeout_s=30)
    producer.close()
    print(f"forget request for {args.user_id!r} published on {settings.topics.clicks}")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from streamrec.app.services import ingest_service
    settings = settings_from_args(args)
    return _serve("ingest", args, settings, ingest_service)


def _cmd_score(args: argparse.Namespace) -> int:
    from streamrec.consumers.model_follower import ModelFollower
    from streamrec.consumers.score import ScoreProcessor
    from streamrec.export.candidates import DeepCandidateGenerator
    from streamrec.metrics import MetricsRegistry, ModelInfo
    from streamrec.app.services import score_service
    settings = settings_from_args(args)
    processor = ScoreProcessor(settings)
    registry = MetricsRegistry(process_metrics=True)
    processor.bind_metrics(registry)  # freshness, online hit-rate and drift detections
    model_info = ModelInfo(registry, "score")

    def on_model(model, message) -> None:  # type: ignore[no-untyped-def]
        # Loaded, verified and warmed on the follower's thread: this is one assignment.
        processor.swap_deep(DeepCandidateGenerator(model, processor.deep_candidates))
        model_info.set(model.version, "deep_onnx")
        log.info("deep model serving", extra={"version": model.version})

    def on_reject(version: str, reason: str) -> None:
        log.error("deep model rejected; the previous one keeps serving",
                  extra={"version": version, "reason": reason})

    follower = ModelFollower(settings, on_model, on_reject).bind_metrics(registry).start()
    try:
        return _serve("score", args, settings, functools.partial(score_service, processor=processor),
                      registry=registry, also_ready=follower.health)
    finally:
        follower.close()


def _serve(service: str, args: argparse.Namespace, settings: Settings,
           build: Callable[..., ProcessorService], registry: MetricsRegistry | None = None,
           also_ready: Callable[[], dict[str, object]] | None = None) -> int:
    """Run the service ``build`` makes (a ``streamrec.app.services`` factory) until a signal."""
    from streamrec.app.logging_setup import configure_logging
    from streamrec.metrics import MetricsRegistry, MetricsServer, service_metrics

    configure_logging(settings.log_level, fmt=args.log_format)
    # A service may bring its own registry, holding metrics its processor keeps itself.
    registry = registry if registry is not None else MetricsRegistry(process_metrics=True)
    metrics = service_metrics(registry, service)
    instance_id = args.instance_id or os.environ.get("HOSTNAME") or socket.gethostname()
    runner = build(settings, instance_id, metrics=metrics,
                   # An explicit id is a stable identity (a StatefulSet pod, a systemd unit):
                   # join as a static member. A hostname default may be a throwaway
                   # container, which would hold partitions idle.
                   static_membership=args.instance_id is not None)
    server = None
    if settings.metrics_port:
        # Alive while the loop runs (restoring included); ready once it has joined the
        # group and restored its partitions.
        server = MetricsServer(registry, settings.metrics_port, host=settings.metrics_host,
                               health=lambda: not runner.stopping,
                               ready=lambda: _readiness(runner, also_ready))
    _install_stop_handlers(runner.stop)
    log.info(f"{service} starting", extra={"bootstrap": settings.bootstrap_servers,
                                           "security": settings.kafka_security.describe(),
                                           "topics": runner.input_topics,
                                           "group": runner.group_id,
                                           "instance": instance_id})
    try:
        runner.run()
    finally:
        if server is not None:
            server.close()
    log.info(f"{service} stopped", extra={"batches": runner.batches_committed})
    return 0


def _readiness(runner: object, also_ready: Callable[[], dict[str, object]] | None
               ) -> dict[str, object]:
    """Ready once the loop joined its group and restored, while it makes progress and hears
    from the broker (``streamrec.transport.service_health``), and ``also_ready`` (the scorer's model
    follower) says ``ok``; the body names what is not."""
    if not (runner.ready.is_set() and not runner.stopping):  # type: ignore[attr-defined]
        return {"status": "unhealthy", "reason": "not restored or stopping"}
    progress = runner.progress.verdict()  # type: ignore[attr-defined]
    if progress["status"] != "ok" or also_ready is None:
        return progress
    return {**progress, **also_ready()}


def _install_stop_handlers(stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT finish the current batch, commit, and close (graceful shutdown)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `streamrec` command")
