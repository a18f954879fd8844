"""The scorer's next-item transitions: directed, learned from latest states, fused, explained."""

from __future__ import annotations

import pytest
from unit.consumers.score_helpers import assert_batch_invariant, scorer_input, walk_states

from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.config import Settings
from streamrec.records import Record

# Transitions alone beside the online list: co-visitation off, so what moves is theirs.
SETTINGS = Settings(top_k=3, online_learning=0, covisit_weight=0.0, transition_weight=2.0)
T = SETTINGS.topics
# Five users go a -> b; "pop" is clicked most, by other users, so popularity alone would
# put it first. "fresh-a" has clicked a, "fresh-b" has clicked b.
WALKS = ([(f"u{n}", item) for n in range(5) for item in ("a", "b")]
         + [(f"p{n}", "pop") for n in range(8)] + [("fresh-a", "a"), ("fresh-b", "b")])


def _states(settings: Settings = SETTINGS) -> list[Record]:
    return walk_states(settings, WALKS)


def _latest_for(settings: Settings, user: str):
    scorer = ScoreProcessor(settings, clock=lambda: 1.0)
    outputs = scorer.process(_states(settings)).outputs
    return [recommendation_decoder.decode(o.value) for o in outputs
            if o.topic == T.recommendations and o.key == user.encode()][-1]


def test_the_next_item_leads_and_is_explained():
    message = _latest_for(SETTINGS, "fresh-a")
    assert message.items[0].item_id == "b"
    components = message.items[0].components
    # 5 of the 6 users holding a went on to b (fresh-a holds a and has not gone on yet).
    assert components["transition_rank"] == 1.0
    assert components["transition_score"] == pytest.approx(5 / 6)


def test_transitions_are_directed():
    # Users went a -> b, never b -> a: after b there is no transition to recommend.
    message = _latest_for(SETTINGS, "fresh-b")
    assert not any("transition_rank" in item.components for item in message.items)
    assert message.items[0].item_id == "pop"


def test_weight_zero_turns_them_off():
    off = Settings(top_k=3, online_learning=0, covisit_weight=0.0, transition_weight=0.0)
    message = _latest_for(off, "fresh-a")
    assert message.items[0].item_id == "pop"
    assert not any("transition_rank" in item.components for item in message.items)


def test_restore_from_latest_states_rebuilds_the_transitions():
    latest = {r.key: r for r in _states()}
    restored = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    restored.restore(0, list(latest.values()))
    learned = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    learned.process(_states())
    assert restored.item_side.transition_counts(1)[("a", "b")] == 5
    assert restored.item_side.transition_counts(1) == learned.item_side.transition_counts(1)
    assert restored.rank("fresh-a", 3) == learned.rank("fresh-a", 3)


def test_recommendations_with_transitions_do_not_depend_on_the_batching():
    settings = Settings(partitions=2, learn_every=16, snapshot_every=64, transition_weight=1.0)
    outputs = assert_batch_invariant(lambda: ScoreProcessor(settings, clock=lambda: 1.0),
                                     scorer_input(settings))
    messages = [recommendation_decoder.decode(value) for topic, _, value in outputs
                if topic == settings.topics.recommendations]
    components = {name for m in messages for item in m.items for name in item.components}
    assert {"transition_rank", "transition_score", "covisit_rank"} <= components
