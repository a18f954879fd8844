"""The trainer's data rules: which events train, which judge, and when a model is promoted."""

from __future__ import annotations

import math

import pytest

from streamrec.consumers.ingest import CONTROL_HEADER, FORGET
from streamrec.consumers.train_window import (build_window, holdout_cases, promotion_decision,
                                    split_holdout)
from streamrec.events import ClickEvent, encode_click
from streamrec.records import Record


def click(offset: int, user: str, item: str, ts: float, partition: int = 0,
          record_ms: int | None = None) -> Record:
    event = ClickEvent(event_id=f"e{partition}-{offset}", user_id=user, item_id=item,
                       type="click", ts=ts)
    return Record("clicks", partition, offset, user.encode(), encode_click(event),
                  record_ms if record_ms is not None else offset)


def forget(offset: int, user: str, partition: int = 0, record_ms: int | None = None) -> Record:
    return Record("clicks", partition, offset, user.encode(), None,
                  record_ms if record_ms is not None else offset, ((CONTROL_HEADER, FORGET),))


def window(records: list[Record]):
    return build_window(records, "clicks", {0: (0, 100)}, 64 * 1024)


def test_forget_drops_the_users_earlier_events_only() -> None:
    w = window([click(0, "u1", "a", 1.0), click(1, "u2", "b", 2.0), click(2, "u1", "c", 3.0),
                forget(3, "u1"), click(4, "u1", "d", 4.0)])
    assert [(e.user_id, e.item_id) for e in w.events] == [("u2", "b"), ("u1", "d")]
    assert (w.forgotten_events, w.forget_requests, w.latest_forget_ms) == (2, 1, 3)


def test_forget_in_another_partition_is_ordered_by_broker_time() -> None:
    w = window([click(0, "u1", "a", 1.0, partition=1, record_ms=10),
                click(1, "u1", "b", 2.0, partition=1, record_ms=30),
                forget(0, "u1", partition=0, record_ms=20)])
    assert [e.item_id for e in w.events] == ["b"]


def test_an_empty_value_without_the_control_header_is_a_bad_event() -> None:
    no_header = Record("clicks", 0, 1, b"u1", None, 1)  # empty value: a bad event
    w = window([click(0, "u1", "a", 1.0), no_header])
    assert [e.item_id for e in w.events] == ["a"] and w.bad_events == 1


def test_bad_events_are_skipped_and_counted() -> None:
    records = [click(0, "u1", "a", 1.0), Record("clicks", 0, 1, b"u1", b"{not json", 1),
               Record("clicks", 0, 2, b"u1", b'{"user_id": "u1"}', 2),
               Record("clicks", 0, 3, b"u1", b"x" * 100_000, 3), click(4, "u1", "b", 2.0)]
    w = window(records)
    assert [e.item_id for e in w.events] == ["a", "b"] and w.bad_events == 3
    assert w.describe()["bad_events"] == 3


def test_events_are_sorted_by_event_time_across_partitions() -> None:
    w = window([click(0, "u1", "c", 3.0), click(1, "u1", "a", 1.0),
                click(0, "u2", "b", 2.0, partition=1), click(1, "u2", "d", 3.0, partition=1)])
    assert [e.item_id for e in w.events] == ["a", "b", "c", "d"]  # ties keep read order
    described = w.describe()
    assert described["event_time"] == {"min": 1.0, "max": 3.0}
    assert described["offsets"] == {"0": [0, 100]} and described["events"] == 4


def test_holdout_is_the_newest_share() -> None:
    events = window([click(i, "u1", f"i{i}", float(i)) for i in range(40)]).events
    train, holdout = split_holdout(events, 0.1)
    assert len(train) == 36 and [e.ts for e in holdout] == [36.0, 37.0, 38.0, 39.0]
    assert split_holdout(events[:1], 0.5) == (events[:1], [])


def test_holdout_cases_are_warm_new_items_with_their_history() -> None:
    events = window([click(0, "u1", "a", 1.0), click(1, "u1", "b", 2.0),
                     click(2, "u1", "a", 3.0),  # a repeat: never a target
                     click(3, "u2", "z", 4.0),  # cold user: never a target
                     click(4, "u1", "c", 5.0), click(5, "u2", "y", 6.0)]).events
    cases = holdout_cases(events[:2], events[2:])
    assert [(c.prefix, c.target) for c in cases] == [(("a", "b", "a"), "c"), (("z",), "y")]
    assert cases[0].seen == {"a", "b"}
    assert [c.target for c in holdout_cases(events[:2], events[2:], newer_than=5.0)] == ["y"]


@pytest.mark.parametrize("candidate,current,tolerance,expected", [
    (0.05, None, 0.0, (True, "no_current_model")),
    (math.nan, None, 0.0, (True, "no_current_model")),
    (0.05, 0.05, 0.0, (True, "not_worse")),
    (0.049, 0.05, 0.0, (False, "worse_than_current")),
    (0.049, 0.05, 0.002, (True, "not_worse")),
    (0.06, 0.05, -0.02, (False, "worse_than_current")),  # negative: must beat by a margin
    (math.nan, math.nan, 0.0, (False, "no_holdout_cases")),
])
def test_promotion_decision(candidate, current, tolerance, expected) -> None:
    assert promotion_decision(candidate, current, tolerance) == expected
