"""Prequential replay: known answers, exclusion, cold start, and no peeking at the future."""

from __future__ import annotations

from typing import Collection

import pytest

from streamrec.online_models.baselines import MostPopular
from streamrec.app.evaluation import PrequentialEvaluator
from streamrec.events import ClickEvent


def click(n: int, user: str, item: str) -> ClickEvent:
    return ClickEvent(event_id=f"e{n}", user_id=user, item_id=item, type="click", ts=float(n))


class Scripted:
    """Always proposes the same list, excluded items filtered like a well-behaved system."""

    def __init__(self, items: list[str], honour_exclude: bool = True) -> None:
        self.items, self.honour_exclude, self.learned = items, honour_exclude, []

    def learn_one(self, event: ClickEvent) -> None:
        self.learned.append(event.event_id)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()):
        items = [i for i in self.items if not (self.honour_exclude and i in exclude)]
        return [(item, float(-n)) for n, item in enumerate(items[:k])]


class Spy:
    """Logs every call into a shared journal, with what it had learned at that moment."""

    def __init__(self, name: str, journal: list) -> None:
        self.name, self.journal, self.learned = name, journal, []

    def learn_one(self, event: ClickEvent) -> None:
        self.journal.append(("learn", self.name, event.event_id))
        self.learned.append(event.event_id)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()):
        self.journal.append(("recommend", self.name, user_id, tuple(self.learned)))
        return []


def test_ranks_hits_and_cold_start_on_a_hand_made_sequence():
    events = [click(0, "u", "a"),   # cold: no history yet
              click(1, "u", "b"),   # warm; list minus {a} = [b, c, d] → rank 1
              click(2, "u", "d"),   # warm; list minus {a, b} = [c, d] → rank 2
              click(3, "u", "z")]   # warm; miss
    result = PrequentialEvaluator({"s": Scripted(["a", "b", "c", "d"])}, ks=(1, 10)).run(events)
    overall = result.summary()["s"]["overall"]
    assert (overall["events"], overall["evaluated"], overall["cold_events"]) == (4, 3, 1)
    assert overall["hr@1"] == pytest.approx(1 / 3)
    assert overall["hr@10"] == pytest.approx(2 / 3)
    assert overall["ndcg@10"] == pytest.approx((1 + 1 / 1.584962500721156) / 3)
    assert overall["cold_hr@10"] == 1.0  # "a" was at rank 1 for the cold event
    assert overall["cold_start_share"] == 0.25


def test_excluded_seen_items_never_count_even_if_returned():
    events = [click(0, "u", "a"), click(1, "u", "a"), click(2, "u", "b")]
    stats = PrequentialEvaluator({"bad": Scripted(["a", "b"], honour_exclude=False)},
                                 ks=(1, 2)).run(events).summary()["bad"]
    overall = stats["overall"]
    # Event 1 repeats a seen item: not a hit, not in the headline denominator.
    assert overall["repeat_events"] == 1 and overall["evaluated"] == 1
    # Event 2: the system put seen "a" first; it is dropped, so "b" is rank 1.
    assert overall["hr@1"] == 1.0
    assert stats["exclusion_violations"] == 2


def test_no_system_sees_an_event_before_it_is_evaluated():
    journal: list = []
    systems = {"first": Spy("first", journal), "second": Spy("second", journal)}
    events = [click(n, f"u{n % 3}", f"i{n % 5}") for n in range(12)]
    PrequentialEvaluator(systems, ks=(5,)).run(events)
    calls = iter(journal)
    for n, event in enumerate(events):
        before = tuple(e.event_id for e in events[:n])
        # Every system ranks this event having learned exactly the past, nothing more...
        for name in systems:
            assert next(calls) == ("recommend", name, event.user_id, before)
        # ...and only then does any system learn it.
        for name in systems:
            assert next(calls) == ("learn", name, event.event_id)
    assert next(calls, None) is None


def test_every_system_gets_the_identical_sequence():
    systems = {"a": Scripted(["x"]), "b": Scripted(["y"])}
    events = [click(n, f"u{n % 4}", f"i{n % 7}") for n in range(30)]
    PrequentialEvaluator(systems).run(events)
    assert systems["a"].learned == systems["b"].learned == [e.event_id for e in events]


def test_windows_and_progress_hook():
    events = [click(n, f"u{n % 4}", f"i{n % 7}") for n in range(25)]
    ticks: list[int] = []
    result = PrequentialEvaluator({"pop": MostPopular()}, ks=(3,), window=10).run(
        events, ticks.append)
    windows = result.summary()["pop"]["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0, 10), (10, 20), (20, 25)]
    assert sum(ticks) == 25 and result.events == 25


def test_rejects_bad_configuration():
    with pytest.raises(ValueError):
        PrequentialEvaluator({})
    with pytest.raises(ValueError):
        PrequentialEvaluator({"p": MostPopular()}, ks=(0,))
