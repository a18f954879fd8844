"""Leave-last-out offline protocol, for comparison with published sequential results.

Each user's last event (in event-time order, ties in file order) is held out; every system
learns all other events in time order; then each system ranks the full catalogue it knows
for each held-out event, excluding the items the user interacted with in training. Users
whose only event is the held-out one are cold and reported apart, as in prequential replay.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

from streamrec.online_models.base import Recommender
from streamrec.ranking_metrics import MetricsAccumulator
from streamrec.app.evaluation.prequential import EvaluationResult, rank_of
from streamrec.events import ClickEvent


def split_last_item(events: Sequence[ClickEvent]) -> tuple[list[ClickEvent], list[ClickEvent]]:
    """(train, test): test holds each user's last event, both keep the input order."""
    last: dict[str, int] = {}
    for position, event in enumerate(events):
        last[event.user_id] = position
    held_out = set(last.values())
    train = [e for p, e in enumerate(events) if p not in held_out]
    test = [e for p, e in enumerate(events) if p in held_out]
    return train, test


def evaluate_last_item(systems: Mapping[str, Recommender], events: Sequence[ClickEvent],
                       ks: Sequence[int] = (10,),
                       on_event: Callable[[int], None] | None = None,
                       clock: Callable[[], float] = time.perf_counter) -> EvaluationResult:
    """Train on all but each user's last event, then rank the held-out events.

    ``on_event(1)`` is called once per training event and once per held-out event.
    """
    ks = tuple(sorted(set(ks)))
    k_max = max(ks)
    train, test = split_last_item(events)
    metrics = {name: MetricsAccumulator(ks, max(len(test), 1)) for name in systems}
    pairs = [(systems[name], metrics[name]) for name in systems]
    seen: dict[str, set[str]] = {}
    catalog: set[str] = set()
    start = clock()
    for event in train:
        for system, _ in pairs:
            system.learn_one(event)
        seen.setdefault(event.user_id, set()).add(event.item_id)
        catalog.add(event.item_id)
        if on_event is not None:
            on_event(1)
    for event in test:
        user_seen = seen.get(event.user_id, set())
        for system, acc in pairs:
            t0 = clock()
            ranking = system.recommend(event.user_id, k_max, user_seen)
            latency = clock() - t0
            rank, kept = rank_of(event.item_id, ranking, user_seen, k_max, acc)
            acc.add(rank, not user_seen, event.item_id in user_seen, latency, kept, len(catalog))
        if on_event is not None:
            on_event(1)
    result = EvaluationResult("last-item", ks, max(len(test), 1), metrics, len(events),
                              clock() - start)
    result.extra = {"train_events": len(train), "test_events": len(test)}
    return result
