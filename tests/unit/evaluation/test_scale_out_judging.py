"""The scale-out harness's judges (tests/scale_out.py), without a broker: the trigger
ledger catches repeats, losses and strangers; the prequential metrics score what they say."""

from __future__ import annotations

import math

import pytest

from streamrec.online_models.user_state import UserState, encode_state
from scale_out import (TriggerLedger, differing_top10, event_ranks, prequential_ndcg,
                       prequential_ranks)
from streamrec.events import ClickEvent
from streamrec.records import Record


def state_record(user: str, offset: int, count: int, event_id: str, at: int,
                 partition: int = 0) -> Record:
    state = UserState(user_id=user, event_count=count, source_offset=offset,
                      last_event_id=event_id)
    return Record("user-state", partition, at, user.encode(), encode_state(state))


def click(user: str, item: str, n: int) -> ClickEvent:
    return ClickEvent(event_id=f"{user}-{item}", user_id=user, item_id=item, type="click",
                      ts=float(n), value=None, context={})


def test_ledger_takes_the_scorers_trigger_rule():
    records = [
        state_record("u", 0, 1, "u-a", 0),
        state_record("u", 0, 1, "u-a", 1),  # re-emitted (a micro-batch moved the embedding)
        state_record("v", 3, 2, "v-b", 2, partition=1),
        state_record("u", 2, 2, "u-c", 3),
        Record("user-state", 0, 4, b"u", None),  # forgotten: the next state triggers again
        state_record("u", 2, 2, "u-c2", 5),
    ]
    ledger = TriggerLedger.from_changelog(records)
    assert ledger.by_user == {"u": ["u-a", "u-c", "u-c2"], "v": ["v-b"]}
    assert len(ledger) == 4


def test_ledger_names_repeated_lost_and_unknown_answers():
    ledger = TriggerLedger({"u": ["e1", "e2", "e3"]})
    assert ledger.problems(["e1", "e2", "e3"]) == []
    problems = ledger.problems(["e1", "e2", "e2", "e9"])
    assert problems == ["1 answered more than once: e2 (x2)", "1 never answered: e3",
                        "1 answered but no trigger: e9"]
    with pytest.raises(AssertionError, match="never answered: e3"):
        ledger.assert_answered_once(["e1", "e2"], "run")


def test_prequential_ndcg_judges_each_list_by_the_next_triggers_click():
    ledger = TriggerLedger({"u": ["e1", "e2", "e3"], "v": ["f1"]})
    items = {"e1": "a", "e2": "b", "e3": "c", "f1": "z"}
    lists = {"e1": ["b", "x"], "e2": ["x", "y"], "f1": ["q"]}
    assert list(prequential_ranks(ledger, items, lists)) == [1, 0]  # v's only trigger: unjudged
    assert prequential_ndcg(ledger, items, lists) == pytest.approx(0.5)
    lists["e2"] = ["x", "c"]
    assert prequential_ndcg(ledger, items, lists) == pytest.approx((1 + 1 / math.log2(3)) / 2)
    # Only the top 10 counts; a missing list is a miss.
    assert list(prequential_ranks(ledger, items, {"e1": [*"abcdefghij", "b"]})) == [2, 0]
    assert list(prequential_ranks(ledger, items, {"e1": [*"cdefghijkl", "b"]})) == [0, 0]


def test_event_ranks_judge_every_click_against_the_list_in_effect():
    # u's events a, b, c, d; states after a (trigger ua) and after c (trigger uc): b and c
    # are judged against ua's list, d against uc's; items u already had are taken out first.
    events = [click("u", "a", 0), click("u", "b", 1), click("u", "c", 2), click("u", "d", 3)]
    ledger = TriggerLedger({"u": ["u-a", "u-c"]})
    lists = {"u-a": ["b", "c"], "u-c": ["b", "d"]}
    assert list(event_ranks(ledger, events, lists)) == [1, 1, 1]


def test_differing_top10_compares_items_and_order_of_common_triggers():
    first = {"e1": ["a", "b"], "e2": ["a", "b"], "e3": [*"abcdefghij", "x"], "e4": ["a"]}
    second = {"e1": ["a", "b"], "e2": ["b", "a"], "e3": [*"abcdefghij", "y"]}
    assert differing_top10(first, second) == ["e2"]
