"""Leave-last-out: the split and the ranking of held-out items."""

from __future__ import annotations

from streamrec.online_models.baselines import MostPopular
from streamrec.app.evaluation import evaluate_last_item, split_last_item
from streamrec.events import ClickEvent


def click(n: int, user: str, item: str) -> ClickEvent:
    return ClickEvent(event_id=f"e{n}", user_id=user, item_id=item, type="click", ts=float(n))


def test_split_holds_out_each_users_last_event():
    events = [click(0, "u", "a"), click(1, "v", "b"), click(2, "u", "c"), click(3, "w", "a")]
    train, test = split_last_item(events)
    assert [e.event_id for e in train] == ["e0"]
    assert [e.event_id for e in test] == ["e1", "e2", "e3"]


def test_last_item_ranks_held_out_items_after_training_on_the_rest():
    events = [click(0, "a", "pop"), click(1, "b", "pop"), click(2, "c", "pop"),
              click(3, "a", "x"), click(4, "c", "y"),
              click(5, "d", "pop"),                       # d's only event: cold
              click(6, "a", "y"), click(7, "b", "x"), click(8, "c", "z")]
    result = evaluate_last_item({"pop": MostPopular()}, events, ks=(1, 2))
    overall = result.summary()["pop"]["overall"]
    # Train counts: pop=3 (d's is held out), x=1, y=1. a saw {pop, x} → [y]: y hit @1.
    # b saw {pop} → [x, y]: x hit @1. c saw {pop, y} → [x]: z never trained → miss.
    assert (overall["evaluated"], overall["cold_events"]) == (3, 1)
    assert overall["hr@1"] == 2 / 3
    assert overall["cold_hr@1"] == 1.0  # d: "pop" is the most popular item
    assert result.extra == {"train_events": 5, "test_events": 4}
