"""The scorer with a deep model swapped in: fused ranking, explained, versions, no seen items."""

from __future__ import annotations

from consumers.ingest import IngestProcessor
from consumers.score import ScoreProcessor, recommendation_decoder
from export.candidates import DeepCandidateGenerator
from streamrec.config import Settings
from streamrec.events import ClickEvent, encode_click
from streamrec.records import Record


def _batch(settings, n=60):
    ingest = IngestProcessor(settings)
    clicks = [Record(settings.topics.clicks, 0, i, f"u{i % 4}".encode(), encode_click(ClickEvent(
        event_id=f"e{i}", user_id=f"u{i % 4}", item_id=f"i{(i * 7) % 30}", type="click",
        ts=float(i)))) for i in range(n)]
    outputs = ingest.process(clicks).outputs
    return [Record(settings.topics.user_state, 0, i, o.key, o.value) for i, o in enumerate(outputs)]


def test_swapped_deep_model_is_fused_and_explained(tiny_release):
    settings = Settings(top_k=5, online_learning=0)
    scorer = ScoreProcessor(settings, clock=lambda: 1.0)
    before = [recommendation_decoder.decode(o.value) for o in scorer.process(_batch(settings)).outputs]
    assert {m.model_version for m in before} == {"popularity"}

    model = tiny_release.serving_model(threads=1)
    scorer = ScoreProcessor(settings, clock=lambda: 1.0)  # the same states are triggers again
    scorer.swap_deep(DeepCandidateGenerator(model))
    after = [recommendation_decoder.decode(o.value) for o in scorer.process(_batch(settings)).outputs]
    assert {m.model_version for m in after} == {f"{model.version}+popularity"}
    for message in after:
        seen = set(scorer.state_of(message.user_id).seen_items)
        assert len(message.items) == 5 and not seen & {i.item_id for i in message.items}
        assert any("deep_rank" in i.components for i in message.items)
        scores = [i.score for i in message.items]
        assert scores == sorted(scores, reverse=True)


class _ReleasesAfter:
    """A stand-in for the replay trainer: releases ``model`` once ``after`` events arrived."""

    def __init__(self, model, after: int) -> None:
        self.model, self.after, self.learned, self.serving = model, after, 0, None

    def learn_one(self, event) -> None:
        self.learned += 1
        if self.learned == self.after:
            self.serving = self.model


def test_replay_full_system_ranks_through_the_scorer_fusion(tiny_release):
    from streamrec.pipeline import OnlineSystem

    settings = Settings(top_k=5, partitions=1, learn_every=8)
    model = tiny_release.serving_model(threads=1)
    system = OnlineSystem(settings, deep=_ReleasesAfter(model, after=40))
    events = [ClickEvent(event_id=f"e{n}", user_id=f"u{n % 4}", item_id=f"i{(n * 7) % 30}",
                         type="click", ts=float(n)) for n in range(80)]
    for event in events[:39]:
        system.learn_one(event)
    before = system.score.rank("u1", 5)
    assert before and not any("deep_rank" in parts for _, _, parts in before)

    for event in events[39:]:
        system.learn_one(event)
    after = system.score.rank("u1", 5)
    assert any("deep_rank" in parts for _, _, parts in after)
    seen = set(system.score.state_of("u1").seen_items)
    assert len(after) == 5 and not seen & {item for item, _, _ in after}
    # The same ranking an explicit request publishes on the Kafka path.
    request = Record(settings.topics.requests, 0, 0, b"u1",
                     b'{"request_id": "r1", "user_id": "u1", "k": 5}')
    published = recommendation_decoder.decode(system.score.process([request]).outputs[-1].value)
    assert [i.item_id for i in published.items] == [item for item, _, _ in after]
    assert published.model_version.startswith(model.version + "+")


def test_a_user_the_deep_model_does_not_know_still_gets_exactly_k(tiny_release):
    from streamrec.bus import InProcessBus
    from streamrec.bus_runner import InProcessRunner
    from streamrec.records import Output

    settings = Settings(top_k=3, partitions=1, learn_every=4, snapshot_every=8)
    topics = settings.topics
    bus = InProcessBus(settings.partitions)
    scorer = ScoreProcessor(settings, clock=lambda: 1.0)
    scorer.swap_deep(DeepCandidateGenerator(tiny_release.serving_model(threads=1)))
    # The scorer gets ingest's online models as production does: snapshots on user-state.
    ingest = InProcessRunner(bus, IngestProcessor(settings), [topics.clicks], batch_size=10)
    score = InProcessRunner(bus, scorer, [topics.user_state, topics.requests], batch_size=10,
                            restore_to_committed=True)
    # Items the tiny model never saw: it has no candidates for these users.
    for n in range(40):
        bus.produce(Output(topics.clicks, f"u{n % 2}".encode(), encode_click(ClickEvent(
            event_id=f"e{n}", user_id=f"u{n % 2}", item_id=f"new{n % 12}", type="click",
            ts=float(n)))))
    ingest.drain()
    score.drain()
    messages = [recommendation_decoder.decode(r.value) for r in bus.records(topics.recommendations)]
    # From the first snapshot on, ranked by the online models, the deep model adding nothing
    # (before it, popularity may know too few items the user has not seen).
    online = [m for m in messages if m.model_version == "online-blend"]
    assert len(online) >= len(messages) // 2 and all(len(m.items) == 3 for m in online)
