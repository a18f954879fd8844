"""The trainer's data and judgement, pure: the window, the holdout, metrics, the decision.

Everything here is a function of records and models, with no Kafka, clock or file, so the
rules that matter most are unit-tested directly: which events a run may learn from (bad
events skipped; every event a later forget request covers dropped; event-time order), which
newest events judge the candidate, and when a candidate is promoted.

>>> promotion_decision(0.050, 0.052, tolerance=0.005)
(True, 'not_worse')
>>> promotion_decision(0.040, 0.052, tolerance=0.0)
(False, 'worse_than_current')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Iterable

import numpy as np

from streamrec.export.serving import OnnxSequenceModel
from streamrec.control import ADOPT_MODEL, FORGET, kind_of
from streamrec.ranking_metrics import hit_rate, ndcg
from streamrec.events import ClickBounds, ClickEvent, decode_click_record
from streamrec.input_bounds import BadInput, check_user_id, decode_user_key
from streamrec.records import Record


@dataclass
class TrainingWindow:
    """The events one run trains on: forgotten users' earlier events removed, time-sorted."""

    topic: str
    events: list[ClickEvent]
    offsets: dict[int, tuple[int, int]]  # partition -> [start, end) read
    bad_events: int = 0
    forgotten_events: int = 0
    forget_requests: int = 0
    latest_forget_ms: int = -1

    def describe(self) -> dict[str, Any]:
        """The manifest's ``data_window`` (training and holdout ranges are added later)."""
        ts = [self.events[0].ts, self.events[-1].ts] if self.events else [None, None]
        return {"topic": self.topic, "offsets": {str(p): list(r) for p, r in
                                                 sorted(self.offsets.items())},
                "event_time": {"min": ts[0], "max": ts[1]}, "events": len(self.events),
                "bad_events": self.bad_events, "forgotten_events": self.forgotten_events,
                "forget_requests": self.forget_requests}


def _forgotten_user(record: Record, max_id_bytes: int) -> str | None:
    """The user a valid forget request names; None for anything else (as ingest decides)."""
    if kind_of(record.headers) != FORGET:
        return None
    try:
        user_id = decode_user_key(record.key, max_id_bytes)
        check_user_id(user_id, "key", max_id_bytes)
    except BadInput:
        return None  # ingest dead-letters it and forgets no one
    return user_id


def build_window(records: Iterable[Record], topic: str,
                 offsets: dict[int, tuple[int, int]], max_event_bytes: int,
                 bounds: ClickBounds | None = None) -> TrainingWindow:
    """Decode ``records``, drop bad ones and every event a later forget request covers.

    Clicks go through ingest's own decoder (``decode_click_record``, same ``bounds``), so
    the trainer skips exactly what ingest dead-letters, and counts it in ``bad_events``
    (control records of an unknown kind and malformed forget requests included).
    A forget travels the user's partition after the user's events, so "later" is a larger
    offset there; across partitions (a user re-keyed) the broker timestamp decides.
    """
    bounds = bounds if bounds is not None else ClickBounds(max_event_bytes=max_event_bytes)
    records = list(records)
    forgets: dict[str, list[Record]] = {}
    for record in records:
        user_id = _forgotten_user(record, bounds.max_id_bytes)
        if user_id is not None:
            forgets.setdefault(user_id, []).append(record)
    window = TrainingWindow(topic, [], dict(offsets),
                            forget_requests=sum(len(f) for f in forgets.values()))
    window.latest_forget_ms = max((f.timestamp_ms for fs in forgets.values() for f in fs),
                                  default=-1)
    for record in records:
        kind = kind_of(record.headers)
        if kind == ADOPT_MODEL or (kind == FORGET and _forgotten_user(record, bounds.max_id_bytes)):
            continue  # a control message is not a training event
        try:
            if kind is not None:
                raise BadInput("unknown_control", "not a click")  # or a malformed forget
            event = decode_click_record(record, bounds)
        except BadInput:
            window.bad_events += 1  # ingest dead-letters it; the trainer just skips it
            continue
        if any(f.offset > record.offset if f.partition == record.partition
               else f.timestamp_ms >= record.timestamp_ms
               for f in forgets.get(event.user_id, ())):
            window.forgotten_events += 1
            continue
        window.events.append(event)
    window.events.sort(key=attrgetter("ts"))  # stable: ties keep partition/offset order
    return window


def split_holdout(events: list[ClickEvent], fraction: float
                  ) -> tuple[list[ClickEvent], list[ClickEvent]]:
    """(train, holdout): the newest ``fraction`` of the time-sorted events is held out."""
    n_hold = min(len(events) - 1, max(1, int(len(events) * fraction))) if fraction > 0 else 0
    cut = len(events) - max(n_hold, 0)
    return events[:cut], events[cut:]


@dataclass(frozen=True)
class HoldoutCase:
    """One next-item target: the user's items before it, everything seen, the item."""

    prefix: tuple[str, ...]
    seen: frozenset[str]
    target: str


def holdout_cases(train: list[ClickEvent], holdout: list[ClickEvent],
                  newer_than: float | None = None, max_prefix: int = 200) -> list[HoldoutCase]:
    """Warm, new-to-the-user targets of ``holdout`` (as replay's headline counts them).

    ``newer_than`` keeps only targets after that event time: the current model must not be
    judged on events it was trained on, or it would win by memory.
    """
    history: dict[str, list[str]] = {}
    for event in train:
        history.setdefault(event.user_id, []).append(event.item_id)
    cases = []
    for event in holdout:
        items = history.setdefault(event.user_id, [])
        if items and event.item_id not in items and (newer_than is None or event.ts > newer_than):
            cases.append(HoldoutCase(tuple(items[-max_prefix:]), frozenset(items),
                                     event.item_id))
        items.append(event.item_id)
    return cases


def evaluate(model: OnnxSequenceModel, cases: list[HoldoutCase], k: int = 10,
             batch: int = 512) -> dict[str, float]:
    """HR@k and NDCG@k of ``model`` on ``cases``, seen items excluded as the scorer does."""
    ranks = np.zeros(len(cases), dtype=np.int64)
    for lo in range(0, len(cases), batch):
        chunk = cases[lo:lo + batch]
        lists = model.recommend([c.prefix for c in chunk], k, [c.seen for c in chunk])
        for i, (case, ranking) in enumerate(zip(chunk, lists)):
            ranks[lo + i] = next((r + 1 for r, (item, _) in enumerate(ranking)
                                  if item == case.target), 0)
    return {f"hr@{k}": hit_rate(ranks, k), f"ndcg@{k}": ndcg(ranks, k), "cases": len(cases)}


def promotion_decision(candidate: float, current: float | None,
                       tolerance: float) -> tuple[bool, str]:
    """Promote unless the candidate's NDCG is below the current one's minus ``tolerance``."""
    if current is None:
        return True, "no_current_model"
    if math.isnan(candidate) or math.isnan(current):
        return False, "no_holdout_cases"  # no evidence either way: keep what serves
    if candidate >= current - tolerance:
        return True, "not_worse"
    return False, "worse_than_current"
