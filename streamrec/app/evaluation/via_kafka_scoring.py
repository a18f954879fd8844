"""Score a replay that went through Kafka: pure, so it is tested without a broker.

The Kafka runner (``via_kafka``) records, per produced event, the wall time it was produced
and which recommendation for its user was the latest one received at that moment, and, per
recommendation read back, its wall receive time. This module turns that record into the
same ``EvaluationResult`` the in-process replay gives, plus the end-to-end figures.

Hit rule on the Kafka path: an event is a hit if its item is in the latest recommendation
for its user *received before the event was produced*; a warm user with none received yet
counts as a miss. This is what an app sees: it can only show what has arrived. Items the
user interacted with before the event are excluded, as in-process; an item the scorer
recommended although the user had it at the trigger is an exclusion violation, whereas one
the user clicked only after the trigger is staleness, dropped without blame.

>>> recs = [ReceivedRecommendation("u", "e1", ("b", "c"), 10.02, 15.0, 0.1)]
>>> events = [_E("e1", "u", "a"), _E("e2", "u", "c")]
>>> result, kafka = score_via_kafka(events, [10.0, 10.05], [-1, 0], recs, (10,), 100)
>>> result.summary()["streamrec-kafka"]["overall"]["hr@10"], round(kafka["e2e_latency_ms"]["p50"], 6)
(1.0, 20.0)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Sequence

import numpy as np

from streamrec.ranking_metrics import MetricsAccumulator
from streamrec.app.evaluation.prequential import EvaluationResult

SYSTEM_NAME = "streamrec-kafka"
HIT_RULE = ("hit if the event's item is in the latest recommendation for its user received "
            "before the event was produced; no recommendation received yet = miss; items "
            "the user had before the event are excluded")


class EventLike(Protocol):
    """What scoring reads of an event (``ClickEvent`` has it)."""

    @property
    def event_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def item_id(self) -> str: ...


class _E(NamedTuple):
    """A minimal event for the doctest (``ClickEvent`` has more fields)."""

    event_id: str
    user_id: str
    item_id: str


@dataclass(frozen=True)
class ReceivedRecommendation:
    """What the evaluator keeps of one message read back from ``recommendations``."""

    user_id: str
    trigger_id: str
    items: tuple[str, ...]
    received_s: float  # wall clock (epoch seconds) when the evaluator read it
    end_to_end_ms: float | None  # the scorer's own figure: click produced -> ranked
    score_ms: float
    scored_at_ms: int = 0  # the scorer's wall clock when it ranked (0 = unknown)


def latency_summary(values_ms: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """count, p50, p95, p99, mean and max of finite latencies in ms (None when empty)."""
    data = np.asarray(values_ms, dtype=np.float64)
    data = data[np.isfinite(data)]
    if not data.size:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {"count": int(data.size), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "mean": float(data.mean()), "max": float(data.max())}


def _rate(produced_s: Sequence[float], start: int, end: int) -> float | None:
    """Events per wall second over produced events ``start:end`` (None if no span)."""
    if end - start < 2:
        return None
    span = produced_s[end - 1] - produced_s[start]
    return (end - start) / span if span > 0 else None


class KafkaPathMetrics(MetricsAccumulator):
    """Metrics of the Kafka path: ``events_per_s`` is the produce rate, not a busy rate.

    Per event, the "latency" is click produced -> first recommendation reflecting it
    received (the user's next trigger at or after it), so windows and the latency plot
    show end-to-end time rather than the cost of one in-process ``recommend`` call.
    """

    def __init__(self, ks: Sequence[int], window: int, produced_s: Sequence[float]) -> None:
        super().__init__(ks, window)
        self.produced_s = list(produced_s)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["overall"]["events_per_s"] = _rate(self.produced_s, 0, len(self.ranks))
        for window in out["windows"]:
            window["events_per_s"] = _rate(self.produced_s, window["start"], window["end"])
        return out


def score_via_kafka(events: Sequence[EventLike], produced_s: Sequence[float],
                    in_effect: Sequence[int], received: Sequence[ReceivedRecommendation],
                    ks: Sequence[int], window: int) -> tuple[EvaluationResult, dict[str, Any]]:
    """Score a Kafka replay; return the result and the ``via_kafka`` report section.

    ``events[i]`` was produced at wall time ``produced_s[i]``; ``in_effect[i]`` is the
    index in ``received`` of the latest recommendation for its user received before that,
    or -1. ``received`` is in receive order.
    """
    n = len(events)
    if not (len(produced_s) == len(in_effect) == n):
        raise ValueError("events, produced_s and in_effect must have the same length")
    ks = tuple(sorted(set(ks)))
    k_max = max(ks)
    index_of = {e.event_id: i for i, e in enumerate(events)}
    trigger_of = [index_of.get(rec.trigger_id, -1) for rec in received]

    # End to end per recommendation (trigger produced -> received), and per event (produced
    # -> the first recommendation reflecting it: its user's next trigger at or after it).
    pending: dict[str, deque[int]] = {}
    for i, e in enumerate(events):
        pending.setdefault(e.user_id, deque()).append(i)
    reflected_s = np.full(n, np.nan)
    e2e_ms: list[float] = []
    for rec, t in zip(received, trigger_of):
        if t < 0:
            continue
        e2e_ms.append((rec.received_s - produced_s[t]) * 1e3)
        queue = pending.get(rec.user_id, deque())
        while queue and queue[0] <= t:
            j = queue.popleft()
            reflected_s[j] = rec.received_s - produced_s[j]

    acc = KafkaPathMetrics(ks, window, produced_s)
    first_seen: dict[str, dict[str, int]] = {}  # user -> item -> index of first interaction
    last_index: dict[str, int] = {}
    catalog: set[str] = set()
    no_recommendation = fresh = warm = 0
    for i, e in enumerate(events):
        history = first_seen.setdefault(e.user_id, {})
        cold, repeat = not history, e.item_id in history
        r = in_effect[i]
        kept: list[str] = []
        if r >= 0:
            t = trigger_of[r]
            for item in received[r].items:
                first = history.get(item)
                if first is None:
                    kept.append(item)
                elif 0 <= t and first <= t:  # seen at the trigger yet recommended
                    acc.exclusion_violations += 1
            kept = kept[:k_max]
        if not cold:
            warm += 1
            no_recommendation += r < 0
            fresh += r >= 0 and trigger_of[r] == last_index.get(e.user_id)
        rank = kept.index(e.item_id) + 1 if e.item_id in kept else 0
        latency = float(reflected_s[i]) if math.isfinite(reflected_s[i]) else 0.0
        acc.add(rank, cold, repeat, latency, kept, len(catalog))
        history.setdefault(e.item_id, i)
        last_index[e.user_id] = i
        catalog.add(e.item_id)

    wall = (max(r.received_s for r in received) - produced_s[0]) if received and n else 0.0
    section: dict[str, Any] = {
        "hit_rule": HIT_RULE,
        "events_produced": n,
        "produce_wall_s": (produced_s[-1] - produced_s[0]) if n else 0.0,
        "events_per_s_produced": _rate(produced_s, 0, n),
        "recommendations_received": len(received),
        "recommendations_unmatched": sum(t < 0 for t in trigger_of),
        "events_unreflected": int(np.isnan(reflected_s).sum()),
        "warm_events_without_recommendation": no_recommendation,
        "warm_events_with_fresh_recommendation_share": fresh / warm if warm else None,
        "e2e_latency_ms": latency_summary(e2e_ms),
        "event_to_reflecting_recommendation_ms": latency_summary(reflected_s * 1e3),
        "scorer_end_to_end_ms": latency_summary(
            [r.end_to_end_ms for r in received if r.end_to_end_ms is not None]),
        "scorer_score_ms": latency_summary([r.score_ms for r in received]),
        # Scorer ranked -> evaluator received: the transaction commit plus the read.
        "delivery_ms": latency_summary(
            [r.received_s * 1e3 - r.scored_at_ms for r in received if r.scored_at_ms > 0]),
    }
    result = EvaluationResult("prequential", ks, window, {SYSTEM_NAME: acc}, n, wall,
                              extra={"via_kafka": section})
    return result, section
