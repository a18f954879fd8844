"""``streamrec train``: retrain the deep model from ``clicks`` and publish it on ``models``.

Flags are read here, at the edge, into a frozen ``TrainerConfig`` and ``Settings``; torch
is imported only when the command runs, so ``streamrec --help`` and the serving image
never need it.

    streamrec train --once --store ./model-store          # one run, then exit 0
    streamrec train --interval-s 3600 --every-events 50000  # a long-running service

A long-running trainer also retrains when a scorer publishes a drop of its online hit-rate
(a ``drift`` message on ``models``); ``--no-drift`` turns that trigger off.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from streamrec.app.argtypes import finite_float, positive_float, positive_int
from streamrec.app.commands.core import (_install_stop_handlers, add_kafka_options,
                                     settings_from_args)
from streamrec.config import ConfigError, Settings

if TYPE_CHECKING:
    from streamrec.consumers.train_service import TrainerService
    from streamrec.metrics import MetricsServer

log = logging.getLogger("streamrec")


def _fraction(text: str) -> float:
    value = finite_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="retrain the deep model on a window of clicks "
                              "and publish it on models if it is not worse")
    add_kafka_options(p)
    p.add_argument("--once", action="store_true", help="one run, then exit")
    p.add_argument("--store", help="model store folder, shared with the scorers "
                   "(default $STREAMREC_MODEL_STORE or ./model-store)")
    p.add_argument("--window-events", type=positive_int, default=100_000,
                   help="train on the newest N clicks across partitions (default 100000)")
    p.add_argument("--since", type=positive_float, metavar="EPOCH_S",
                   help="train on clicks produced since this time instead of the newest N")
    p.add_argument("--interval-s", type=positive_float, default=3600.0,
                   help="retrain at least this often when new clicks arrived (default 3600)")
    p.add_argument("--every-events", type=positive_int, default=50_000,
                   help="retrain after this many new clicks (default 50000)")
    p.add_argument("--no-drift", action="store_true",
                   help="do not retrain when a scorer reports a drop of its online hit-rate "
                        "(drift messages on models)")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="epochs of a cold start (default 10)")
    p.add_argument("--warm-epochs", type=positive_int, default=3,
                   help="epochs when warm-starting from the current model (default 3)")
    p.add_argument("--max-train-s", type=positive_float, default=50.0,
                   help="stop after the epoch that crosses this training time (default 50)")
    p.add_argument("--tolerance", type=finite_float, default=0.0,
                   help="promote if candidate NDCG@10 >= current - tolerance (default 0)")
    p.add_argument("--holdout", type=_fraction, default=0.05,
                   help="share of the newest events held out for evaluation (default 0.05)")
    p.add_argument("--min-events", type=positive_int, default=1_000,
                   help="skip a run with fewer usable events (default 1000)")
    p.add_argument("--dim", type=positive_int, default=64)
    p.add_argument("--blocks", type=positive_int, default=2)
    p.add_argument("--max-len", type=positive_int, default=20,
                   help="items of context the model reads, newest first (default 20)")
    p.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-format", choices=("json", "text"), default="text")
    p.set_defaults(func=_cmd_train, preflight=_store_root)


def _store_root(args: argparse.Namespace) -> Path:
    """The model store folder; a ``ConfigError`` if it is a file (checked before Kafka)."""
    store = settings_from_args(args).model_store
    if Path(store).exists() and not Path(store).is_dir():
        raise ConfigError(f"--store {store} exists and is not a folder")
    return Path(store)


def _cmd_train(args: argparse.Namespace) -> int:
    from streamrec.app.logging_setup import configure_logging

    settings = settings_from_args(args)  # --store is the model_store setting
    store_root = _store_root(args)
    # An unreachable broker was refused at the CLI edge (streamrec.app.cli), in seconds.
    configure_logging(settings.log_level, fmt=args.log_format)
    for chatty in ("onnxscript", "onnx_ir"):  # the dynamo exporter narrates every pass
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # Heavy imports (torch, onnx) only now: the parser must stay importable without them.
    from streamrec.consumers.train import Trainer, TrainerConfig
    from streamrec.consumers.train_service import TrainerService
    from streamrec.export.store import ModelStore

    config = TrainerConfig(
        window_events=args.window_events, since_ts=args.since, epochs=args.epochs,
        warm_epochs=args.warm_epochs, tolerance=args.tolerance, holdout_fraction=args.holdout,
        min_events=args.min_events, dim=args.dim, max_len=args.max_len, n_blocks=args.blocks,
        max_train_s=args.max_train_s, exporter=args.exporter, threads=args.threads,
        seed=args.seed)
    drift = None
    if not (args.once or args.no_drift):
        from streamrec.consumers.drift_trigger import DriftTrigger
        # The lambda reads the service built just below, when the trigger is polled.
        drift = DriftTrigger(settings, last_run_started=lambda: service.last_run_started_at)
    service = TrainerService(settings, Trainer(config, ModelStore(store_root)),
                             interval_s=args.interval_s, every_events=args.every_events,
                             drift_signal=drift)
    _install_stop_handlers(service.stop)  # SIGTERM: finish the current step, then exit
    server = None if args.once else _health_endpoint(settings, service)
    try:
        if args.once:
            outcome = service.run_once()
            print(outcome.summary(), flush=True)
            return 0
        log.info("trainer starting", extra={"bootstrap": settings.bootstrap_servers,
                                            "store": str(store_root.resolve()),
                                            "drift_trigger": drift is not None})
        service.run()
        log.info("trainer stopped", extra={"runs": len(service.runs)})
        return 0
    finally:
        service.close()
        if drift is not None:
            drift.close()
        if server is not None:
            server.close()


def _health_endpoint(settings: Settings, service: "TrainerService") -> "MetricsServer | None":
    """/metrics, /healthz and /readyz on ``metrics_port``, like ingest and score."""
    if not settings.metrics_port:
        return None
    from streamrec.app.trainer_health import TrainerHealth
    from streamrec.metrics import MetricsRegistry, MetricsServer

    registry = MetricsRegistry(process_metrics=True)
    health = TrainerHealth(registry, service)
    service.on_run, service.on_started = health.observe, health.serving
    return MetricsServer(registry, settings.metrics_port, host=settings.metrics_host,
                         health=health.health, ready=health.ready)
