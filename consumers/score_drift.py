"""The scorer's side of drift detection: judge deltas, publish drops on ``models``.

``ScoreProcessor`` calls this at four points: a state applied (judge its new events), a
recommendation published (remember it), a user forgotten or a partition dropped (forget
them). A detected drop of the online hit-rate becomes one ``drift`` message on ``models``,
produced in the same transaction as the batch that revealed it, so an aborted batch
(replayed after a restart) never leaves a drift message behind.

With a control secret set, the drift message is signed (``streamrec.signing``, kind
``models``, key ``drift``): the trainer retrains only on drops a scorer proved it wrote.

Only drops are published: a rise is no reason to retrain, and on the compacted ``models``
topic it would overwrite a drop the trainer has not read yet. Rises are still counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from streamrec.consumers.drift_signal import DRIFT_KEY, DROP, RISE, HitRateDrift, OnlineHitRateTracker, encode_drift
from streamrec.online_models.user_state import UserState
from streamrec.config import Settings
from streamrec.records import Output
from streamrec.signing import MODELS_KIND, sign_headers

if TYPE_CHECKING:
    from streamrec.metrics.registry import MetricsRegistry


class ScoreDriftReporter:
    """Feeds an ``OnlineHitRateTracker`` from the scorer and turns drops into messages."""

    def __init__(self, settings: Settings, clock: Callable[[], float]) -> None:
        self.tracker = OnlineHitRateTracker(delta=settings.drift_delta)
        self.models_topic = settings.topics.models
        self.scorer_group = settings.score_group_id
        self._secret = settings.control_secret
        self._clock = clock
        self._drop: HitRateDrift | None = None  # the newest drop not yet published
        self._hit_rate_gauge: object | None = None
        self._detected: dict[str, object] = {}

    def bind_metrics(self, registry: "MetricsRegistry", service: str = "score") -> None:
        """Expose ``streamrec_online_hit_rate`` and ``streamrec_drift_detected_total``."""
        self._hit_rate_gauge = registry.gauge(
            "streamrec_online_hit_rate",
            "Share of first clicks that were in the user's last recommendation, over ADWIN's "
            "window (the events since the last detected change).", ("service",)
        ).labels(service=service)
        detected = registry.counter(
            "streamrec_drift_detected_total",
            "Changes of the online hit-rate ADWIN detected, by direction (drop or rise).",
            ("service", "direction"))
        # Both series exist from the start: a dashboard shows 0, not "no data".
        self._detected = {d: detected.labels(service=service, direction=d) for d in (DROP, RISE)}

    # -- hooks called by ScoreProcessor ---------------------------------------------------
    def state_applied(self, partition: int, user_id: str, state: UserState,
                      previous: UserState | None) -> None:
        if not state.new_events:
            return  # re-emitted state (new embedding only): nothing to judge
        seen_before = previous.seen_items if previous is not None else ()
        drift = self.tracker.observe(partition, user_id, state.new_events, seen_before)
        if self._hit_rate_gauge is not None:
            self._hit_rate_gauge.set(self.tracker.hit_rate)  # type: ignore[attr-defined]
        if drift is None:
            return
        counter = self._detected.get(drift.direction)
        if counter is not None:
            counter.inc()  # type: ignore[attr-defined]
        if drift.direction == DROP:
            self._drop = drift

    def recommended(self, partition: int, user_id: str,
                    ranked: Sequence[Sequence[object]]) -> None:
        """``ranked``: the published (item_id, score, ...) entries, best first."""
        self.tracker.recommended(partition, user_id, (str(entry[0]) for entry in ranked))

    def forget(self, partition: int, user_id: str) -> None:
        self.tracker.forget(partition, user_id)

    def drop(self, partition: int) -> None:
        self.tracker.drop(partition)

    def take_outputs(self, partitions: Iterable[int]) -> list[Output]:
        """The ``drift`` message for the newest drop since the last call, if any."""
        drift, self._drop = self._drop, None
        if drift is None:
            return []
        value = encode_drift(drift, detected_at_ms=int(self._clock() * 1000),
                             scorer_group=self.scorer_group, partitions=partitions)
        # Pinned to partition 0: models has exactly one, and the in-process bus would
        # otherwise spread keys over several.
        headers = sign_headers((), self._secret, MODELS_KIND, DRIFT_KEY, value)
        return [Output(self.models_topic, DRIFT_KEY, value, headers, partition=0)]
