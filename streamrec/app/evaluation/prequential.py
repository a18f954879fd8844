"""Prequential (test-then-train) replay of a time-ordered log through several recommenders.

For every event, in order: each system ranks the user's top-``max(ks)`` with the items the
user already interacted with excluded, the rank of the event's item is recorded, and only
then does every system learn the event. So no system ever sees an event before it has been
evaluated on it, and every system sees the identical sequence.

The evaluator, not the systems, tracks who has seen what: exclusion and the cold-start
split must not depend on how a system keeps its own state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from streamrec.online_models.base import Recommender
from streamrec.ranking_metrics import MetricsAccumulator
from streamrec.events import ClickEvent


@dataclass
class EvaluationResult:
    """Per-system accumulators plus how long the whole replay took."""

    protocol: str
    ks: tuple[int, ...]
    window: int
    metrics: dict[str, MetricsAccumulator]
    events: int = 0
    wall_time_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    # The same metrics restricted to events at or after the split (``--tune-until``).
    held_out: dict[str, MetricsAccumulator] | None = None
    held_out_from: int | None = None

    def summary(self) -> dict[str, dict[str, Any]]:
        return {name: acc.summary() for name, acc in self.metrics.items()}

    def held_out_summary(self) -> dict[str, dict[str, Any]] | None:
        if self.held_out is None:
            return None
        return {name: acc.summary() for name, acc in self.held_out.items()}


def rank_of(item_id: str, ranking: Sequence[tuple[str, float]], exclude: Iterable[str] | set,
            k: int, acc: MetricsAccumulator) -> tuple[int, list[str]]:
    """1-based rank of ``item_id`` among the non-excluded top ``k`` (0 = miss).

    A system that returns an excluded item is misbehaving; the item is dropped (it can
    never count as a hit) and the violation is counted so the report shows it.
    """
    items = [item for item, _ in ranking]
    kept = [item for item in items if item not in exclude]
    if len(kept) != len(items):
        acc.exclusion_violations += len(items) - len(kept)
    kept = kept[:k]
    try:
        return kept.index(item_id) + 1, kept
    except ValueError:
        return 0, kept


class PrequentialEvaluator:
    """Test-then-train replay of one event stream through named systems.

    Parameters
    ----------
    systems
        Name → recommender. Each is driven with the identical event sequence.
    ks
        Cut-offs to report; each system is asked for ``max(ks)`` items once per event.
    window
        Events per reporting window.
    clock
        Monotonic clock for latencies (injectable for tests).
    """

    def __init__(self, systems: Mapping[str, Recommender], ks: Sequence[int] = (10,),
                 window: int = 10_000, clock: Callable[[], float] = time.perf_counter) -> None:
        if not systems:
            raise ValueError("at least one system is needed")
        if not ks or min(ks) <= 0:
            raise ValueError("ks must be positive cut-offs")
        self.systems = dict(systems)
        self.ks = tuple(sorted(set(ks)))
        self.window = window
        self.clock = clock

    def run(self, events: Iterable[ClickEvent],
            on_event: Callable[[int], None] | None = None,
            held_out_from: int | None = None) -> EvaluationResult:
        """Replay ``events`` (already in event-time order); ``on_event(1)`` after each.

        With ``held_out_from``, events from that index on are also recorded apart, so the
        held-out figures are exactly the whole replay's outcomes restricted to them (the
        systems keep learning through the split: prequential, as in production).
        """
        k_max = max(self.ks)
        clock = self.clock
        metrics = {name: MetricsAccumulator(self.ks, self.window) for name in self.systems}
        held_out = (None if held_out_from is None else
                    {name: MetricsAccumulator(self.ks, self.window) for name in self.systems})
        pairs = [(self.systems[name], metrics[name]) for name in self.systems]
        held_pairs = None if held_out is None else [held_out[name] for name in self.systems]
        seen: dict[str, set[str]] = {}
        catalog: set[str] = set()
        start = clock()
        count = 0
        for event in events:
            user_seen = seen.get(event.user_id)
            if user_seen is None:
                user_seen = seen[event.user_id] = set()
            cold = not user_seen
            repeat = event.item_id in user_seen
            # Test: every system ranks before any system learns this event.
            held = (held_pairs if held_pairs is not None and held_out_from is not None
                    and count >= held_out_from else None)
            for index, (system, acc) in enumerate(pairs):
                t0 = clock()
                ranking = system.recommend(event.user_id, k_max, user_seen)
                latency = clock() - t0
                violations = acc.exclusion_violations
                rank, kept = rank_of(event.item_id, ranking, user_seen, k_max, acc)
                acc.add(rank, cold, repeat, latency, kept, len(catalog))
                if held is not None:
                    held[index].exclusion_violations += acc.exclusion_violations - violations
                    held[index].add(rank, cold, repeat, latency, kept, len(catalog))
            # Then train.
            for index, (system, acc) in enumerate(pairs):
                t0 = clock()
                system.learn_one(event)
                learn_s = clock() - t0
                acc.add_learn_time(learn_s)
                if held is not None:
                    held[index].add_learn_time(learn_s)
            user_seen.add(event.item_id)
            catalog.add(event.item_id)
            count += 1
            if on_event is not None:
                on_event(1)
        return EvaluationResult("prequential", self.ks, self.window, metrics, count,
                                clock() - start, held_out=held_out,
                                held_out_from=held_out_from)
