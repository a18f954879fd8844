"""The trainer's /metrics, /healthz and /readyz, like every other service's.

The trainer is no consume-process-produce loop, so it has none of ``service_metrics``'
series; what an operator needs from it is: is it alive, did it reach the broker, when did
it last run, how did runs end, and which model did it last publish. Kept out of
``streamrec.consumers.train_service`` so that module stays about training, and free of
torch so it is testable in the serving environment.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from streamrec.metrics import MetricsRegistry, ModelInfo

# What a scraper needs of a run's outcome (``streamrec.consumers.train.TrainingOutcome``).
MODEL_KIND = "deep_onnx"


class _Outcome(Protocol):
    promoted: bool
    reason: str
    version: str | None
    timings: dict[str, float]


class _Service(Protocol):
    started: threading.Event

    @property
    def stopping(self) -> bool: ...


class TrainerHealth:
    """Metrics of the trainer's runs and its health/readiness checks.

    ``observe`` is the ``TrainerService.on_run`` callback: ``None`` is a run that raised.
    Alive while the service is not stopping; ready once it has read the current model
    from the broker (``service.started``).
    """

    def __init__(self, registry: MetricsRegistry, service: _Service) -> None:
        self.service = service
        svc = ("service",)
        self.runs = registry.counter(
            "streamrec_trainer_runs_total",
            "Training runs by outcome: promoted, failed (raised), or why no model was "
            "published (too_few_events, not better than the current one, ...).",
            ("service", "outcome"))
        for outcome in ("promoted", "failed"):
            self.runs.labels("train", outcome)
        self.last_run = registry.gauge(
            "streamrec_trainer_last_run_timestamp_seconds",
            "Wall clock (epoch s) at the end of the last training run, 0 before the first.",
            svc).labels("train")
        self.last_duration = registry.gauge(
            "streamrec_trainer_last_run_duration_seconds",
            "Seconds the last training run took, reading the window to publishing.",
            svc).labels("train")
        self.model_info = ModelInfo(registry, "train")
        self._count = 0

    def observe(self, outcome: _Outcome | None) -> None:
        self._count += 1
        self.last_run.set(time.time())
        if outcome is None:
            self.runs.labels("train", "failed").inc()
            return
        self.runs.labels("train", "promoted" if outcome.promoted else outcome.reason).inc()
        self.last_duration.set(outcome.timings.get("run_s", 0.0))
        if outcome.promoted and outcome.version:
            self.model_info.set(outcome.version, MODEL_KIND)

    def serving(self, version: str | None) -> None:
        """The model the trainer found current at start (it improves on that one)."""
        if version:
            self.model_info.set(version, MODEL_KIND)

    def health(self) -> dict[str, object]:
        return {"status": "ok" if not self.service.stopping else "stopping",
                "runs": self._count}

    def ready(self) -> dict[str, object]:
        current = self.model_info.current
        return {"status": "ok" if self.service.started.is_set() and not self.service.stopping
                else "starting",
                "model_version": current[0] if current else None}
