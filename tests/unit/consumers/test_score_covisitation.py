"""The scorer's item co-visitation: learned from state deltas, rebuilt on restore, fused."""

from __future__ import annotations

from consumers.ingest import IngestProcessor
from consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.config import Settings
from streamrec.events import ClickEvent, encode_click
from streamrec.records import Record

SETTINGS = Settings(top_k=3, online_learning=0)
T = SETTINGS.topics
# Five users walk a -> b -> c; "pop" is clicked most, by other users, so popularity alone
# would put it first.
WALKS = [(f"u{n}", item) for n in range(5) for item in ("a", "b", "c")] + \
        [(f"p{n}", "pop") for n in range(8)] + [("p0", "z"), ("new", "a")]


def _states(settings: Settings = SETTINGS) -> list[Record]:
    ingest = IngestProcessor(settings)
    clicks = [Record(T.clicks, 0, n, user.encode(), encode_click(ClickEvent(
        event_id=f"e{n}", user_id=user, item_id=item, type="click", ts=float(n))))
        for n, (user, item) in enumerate(WALKS)]
    outputs = [o for o in ingest.process(clicks).outputs if o.value is not None]
    return [Record(T.user_state, 0, n, o.key, o.value) for n, o in enumerate(outputs)]


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
    settings = Settings(top_k=3, online_learning=0, covisit_weight=0.0)
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
    pairs = restored.covisitation.pairs[restored.covisitation.items.index["a"]]
    assert pairs[restored.covisitation.items.index["b"]] == 5.0  # once per walker, not twice


def test_tombstones_and_dropped_partitions_forget_the_users_sequences():
    scorer = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    scorer.process(_states())
    assert scorer.covisitation.knows_user("u1")
    scorer.process([Record(T.user_state, 0, 99, b"u1", None)])
    assert not scorer.covisitation.knows_user("u1")
    scorer.drop([0])
    assert not any(scorer.covisitation.knows_user(u) for u in ("u0", "new", "p0"))
