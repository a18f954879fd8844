"""Trainer: retrain the deep model on a window of ``clicks``; promote it only if not worse.

``Trainer`` is the run, testable without Kafka: train on the window (warm start from the
current model where vocabularies allow), export through the parity gate, evaluate
candidate and current model on the newest events through ONNX Runtime, and store the new
version. The data rules (window, holdout, metrics, decision) are pure functions in
``streamrec.consumers.train_window``; ``streamrec.consumers.train_service.TrainerService`` is the Kafka
binding: read the window by offsets (read_committed), learn the
current model from ``models``, publish promotions, and decide when to run again.

A rejected candidate is logged (one line with both metrics) and **not** published: every
consumer follows ``models`` by key, and a ``rejected`` key would read as a model name.

Drift: ``TrainerService(drift_signal=...)`` is polled between runs and a True retrains now.
``streamrec train`` passes ``streamrec.consumers.drift_trigger.DriftTrigger``, which fires on the
``drift`` messages scorers publish on ``models`` when their online hit-rate drops.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from streamrec.consumers.train_outcome import TrainingOutcome  # noqa: F401 - part of this module's API
from streamrec.consumers.train_window import (TrainingWindow, evaluate, holdout_cases,
                                    promotion_decision, split_holdout)
from streamrec.export.release import build_release, publish_release
from streamrec.export.serving import OnnxSequenceModel
from streamrec.export.store import ModelRejected, ModelStore, publish_message
from streamrec.export.train import EpochStats, TrainedModel, train_model

log = logging.getLogger(__name__)

CHECKPOINTS = ".trainer"  # torch weights for warm starts; a dot-name is never a version


@dataclass(frozen=True)
class TrainerConfig:
    """Hyper-parameters of a training run (defaults measured on ML-100K, 2 cores)."""

    window_events: int = 100_000
    since_ts: float | None = None
    epochs: int = 10
    warm_epochs: int = 3
    tolerance: float = 0.0
    holdout_fraction: float = 0.05
    min_events: int = 1_000
    min_cases: int = 50
    k: int = 10
    dim: int = 64
    # The deep model's context: the user's newest 20 items (chosen on ML-100K events before
    # 50,000 for the replay's trainer, DEEP_TRAINER; production trains the same model).
    max_len: int = 20
    n_blocks: int = 2
    n_heads: int = 1
    lr: float = 3e-3
    batch_size: int = 128
    max_train_s: float | None = 50.0
    exporter: str = "auto"
    threads: int = 2
    seed: int = 0


@dataclass
class CurrentModel:
    """The serving model (ONNX) and, if the trainer stored them, its torch weights."""

    message: dict[str, Any]
    serving: OnnxSequenceModel
    trained: TrainedModel | None = None

    @property
    def version(self) -> str:
        return self.serving.version


def _log_epoch(stats: EpochStats) -> None:
    log.info("train epoch %d/%d loss %.4f in %.2f s", stats.epoch, stats.epochs, stats.loss,
             stats.seconds, extra={"targets": stats.targets})


class Trainer:
    """Train → release (export + parity) → evaluate vs current → store if not worse."""

    def __init__(self, config: TrainerConfig, store: ModelStore,
                 on_epoch: Callable[[EpochStats], None] | None = _log_epoch) -> None:
        self.config = config
        self.store = store
        self.on_epoch = on_epoch

    def load_current(self, message: dict[str, Any]) -> CurrentModel | None:
        """The model a ``models`` message points to, verified; None if it cannot serve.

        Only a version of this trainer's own store loads (``streamrec.export.store_root``), and its
        warm-start checkpoint is looked up there too, never next to the message's path.
        """
        try:
            serving = OnnxSequenceModel(message, threads=self.config.threads,
                                        root=self.store.root)
        except ModelRejected as exc:
            log.warning("current model %s cannot be loaded, training as if none: %s",
                        str(message.get("version"))[:40], exc)
            return None
        checkpoint = self.store.root / CHECKPOINTS / f"{serving.version}.pt"
        return CurrentModel(message, serving, _load_checkpoint(checkpoint))

    def train(self, window: TrainingWindow, current: CurrentModel | None) -> TrainingOutcome:
        """One full run on ``window``; never publishes to Kafka (the service does)."""
        cfg, t0 = self.config, time.perf_counter()
        data_window = window.describe()
        if len(window.events) < cfg.min_events:
            return TrainingOutcome(False, "too_few_events", data_window=data_window)
        train_events, holdout = split_holdout(window.events, cfg.holdout_fraction)
        data_window["train_event_time"] = {"min": train_events[0].ts, "max": train_events[-1].ts}
        data_window["holdout_event_time"] = {"min": holdout[0].ts if holdout else None,
                                             "max": holdout[-1].ts if holdout else None}
        warm = current.trained if current is not None else None
        if warm is not None and current is not None and (
                window.latest_forget_ms >= 1000 * float(current.message.get("created_at") or 0)):
            log.info("forget request since %s was trained: cold start", current.version)
            warm = None  # its weights may remember the forgotten user
        if warm is not None and (warm.model.config.dim, warm.model.config.max_len,
                                 warm.model.config.n_blocks, warm.model.config.n_heads) != (
                cfg.dim, cfg.max_len, cfg.n_blocks, cfg.n_heads):
            warm = None  # another architecture: nothing transfers
        trained = train_model(train_events, warm_start=warm,
                              epochs=cfg.warm_epochs if warm is not None else cfg.epochs,
                              batch_size=cfg.batch_size, lr=cfg.lr, dim=cfg.dim,
                              max_len=cfg.max_len, n_blocks=cfg.n_blocks, n_heads=cfg.n_heads,
                              seed=cfg.seed, threads=cfg.threads, max_seconds=cfg.max_train_s,
                              on_epoch=self.on_epoch)
        t1 = time.perf_counter()
        release = build_release(trained, cfg.exporter, cfg.threads)
        t2 = time.perf_counter()
        seen_until = None
        if current is not None:
            seen_until = (current.serving.manifest.get("data_window", {})
                          .get("train_event_time", {}).get("max"))
        cases = holdout_cases(train_events, holdout, seen_until)
        fresh = len(cases) >= cfg.min_cases
        if not fresh:  # too few targets newer than the current model: judge on all
            cases = holdout_cases(train_events, holdout)
        metrics: dict[str, Any] = evaluate(release.serving_model(cfg.threads), cases, cfg.k)
        metrics.update(tolerance=cfg.tolerance,
                       holdout_newer_than_current=fresh if current is not None else None)
        ndcg_key = f"ndcg@{cfg.k}"
        if current is not None:
            metrics["current"] = {"version": current.version,
                                  **evaluate(current.serving, cases, cfg.k)}
        promote, reason = promotion_decision(
            metrics[ndcg_key], metrics["current"][ndcg_key] if current else None, cfg.tolerance)
        timings = {"train_s": round(t1 - t0, 3), "export_and_parity_s": round(t2 - t1, 3),
                   "evaluate_s": round(time.perf_counter() - t2, 3)}
        outcome = TrainingOutcome(promote, reason, None, metrics, data_window, None, timings)
        if not promote:
            log.warning("candidate rejected (%s): %s %.4f < current %s %.4f - tolerance %.4f",
                        reason, ndcg_key, metrics[ndcg_key], current.version if current else
                        "-", metrics.get("current", {}).get(ndcg_key, math.nan), cfg.tolerance)
            return outcome
        manifest = publish_release(release, self.store, data_window=data_window, metrics=metrics,
                                   parent_version=current.version if current else None)
        outcome.version = manifest["version"]
        _save_checkpoint(self.store.root / CHECKPOINTS / f"{outcome.version}.pt", trained)
        outcome.message = publish_message(manifest, self.store.root)
        outcome.timings["total_s"] = round(time.perf_counter() - t0, 3)
        return outcome


def _save_checkpoint(path: Path, trained: TrainedModel) -> None:
    """Torch weights + vocabulary beside the store, so a restarted trainer warm-starts."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": trained.model.config.to_dict(), "item_ids": trained.vocab.ids,
                "state_dict": trained.model.state_dict()}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a checkpoint under the real name


def _load_checkpoint(path: Path) -> TrainedModel | None:
    if not path.is_file():
        return None
    import torch

    from streamrec.export.model import SASRec, SASRecConfig
    from streamrec.export.vocab import ItemVocabulary
    try:
        data = torch.load(path, weights_only=True)  # never unpickle code from a volume
        model = SASRec.from_config(SASRecConfig(**data["config"]))
        model.load_state_dict(data["state_dict"])
    except Exception as exc:  # noqa: BLE001 - a bad checkpoint only costs the warm start
        log.warning("checkpoint %s unusable, cold start: %r", path, exc)
        return None
    return TrainedModel(model.eval(), ItemVocabulary(data["item_ids"]))
