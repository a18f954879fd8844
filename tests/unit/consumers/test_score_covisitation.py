"""The scorer's item co-visitation: learned from latest states, exact on restore, fused."""

from __future__ import annotations

from unit.consumers.score_helpers import walk_states

from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.config import Settings
from streamrec.records import Record

# Co-visitation beside the online list alone: transitions (directed, tested in
# test_score_transitions.py) off, so what moves is co-visitation's doing.
SETTINGS = Settings(top_k=3, online_learning=0, transition_weight=0.0)
T = SETTINGS.topics
# Five users walk a -> b -> c; "pop" is clicked most, by other users, so popularity alone
# would put it first.
WALKS = [(f"u{n}", item) for n in range(5) for item in ("a", "b", "c")] + \
        [(f"p{n}", "pop") for n in range(8)] + [("p0", "z"), ("new", "a")]


def _states(settings: Settings = SETTINGS) -> list[Record]:
    return walk_states(settings, WALKS)


def _recommendation_for(scorer: ScoreProcessor, records: list[Record], user: str):
    outputs = scorer.process(records).outputs
    return [recommendation_decoder.decode(o.value) for o in outputs
            if o.topic == T.recommendations and o.key == user.encode()][-1]


def test_co_visited_items_lead_and_are_explained():
    scorer = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    message = _recommendation_for(scorer, _states(), "new")
    assert [i.item_id for i in message.items][:2] == ["b", "c"]
    assert "covisit_rank" in message.items[0].components


def test_without_co_visitation_popularity_leads():
    settings = Settings(top_k=3, online_learning=0, covisit_weight=0.0, transition_weight=0.0)
    scorer = ScoreProcessor(settings, clock=lambda: 1.0)
    message = _recommendation_for(scorer, _states(settings), "new")
    assert message.items[0].item_id == "pop"
    assert not any("covisit_rank" in i.components for i in message.items)


def test_restore_from_latest_states_rebuilds_the_counts():
    # A compacted changelog: only each user's latest state, whose delta is its last event.
    latest = {r.key: r for r in _states()}
    restored = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    restored.restore(0, list(latest.values()))
    ranked = restored.rank("new", 2)
    assert [item for item, _, _ in ranked] == ["b", "c"]
    assert restored.item_side.pair_counts()[("a", "b")] == 5  # once per walker, not twice
    # The same counts as learning every state message in order.
    learned = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    learned.process(_states())
    assert restored.item_side.pair_counts() == learned.item_side.pair_counts()
    assert restored.item_side.item_counts() == learned.item_side.item_counts()


def test_tombstones_forget_users_and_dropped_partitions_keep_global_knowledge():
    scorer = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    scorer.process(_states())
    assert scorer.item_side.pair_counts()[("a", "b")] == 5
    scorer.process([Record(T.user_state, 0, 99, b"u1", None)])
    # A forgotten user's influence leaves the item statistics too.
    assert scorer.item_side.pair_counts()[("a", "b")] == 4
    assert "u1" not in scorer.item_side.users_of(0)
    before = scorer.item_side.pair_counts(), scorer.item_side.item_counts()
    scorer.drop([0])
    assert scorer.state_of("u0") is None
    assert (scorer.item_side.pair_counts(), scorer.item_side.item_counts()) == before
    # Re-assigned: restored to the same records, nothing is counted twice.
    scorer.restore(0, _states() + [Record(T.user_state, 0, 99, b"u1", None)])
    assert (scorer.item_side.pair_counts(), scorer.item_side.item_counts()) == before
