"""The scorer with a deep model swapped in: fused ranking, explained, versions, no seen items."""

from __future__ import annotations

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.export.candidates import DeepCandidateGenerator
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
    before = [recommendation_decoder.decode(o.value) for o in scorer.process(_batch(settings)).outputs
              if o.topic == settings.topics.recommendations]
    assert {m.model_version for m in before} == {"popularity"}

    model = tiny_release.serving_model(threads=1)
    scorer = ScoreProcessor(settings, clock=lambda: 1.0)  # the same states are triggers again
    scorer.swap_deep(DeepCandidateGenerator(model))
    after = [recommendation_decoder.decode(o.value) for o in scorer.process(_batch(settings)).outputs
             if o.topic == settings.topics.recommendations]
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
    from streamrec.app.pipeline import OnlineSystem

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
    from streamrec.transport.bus import InProcessBus
    from streamrec.transport.bus_runner import InProcessRunner
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


def test_with_a_deep_model_the_batching_still_does_not_matter(tiny_release):
    """One deep-model call per batch, its inputs gathered ahead: the same recommendations
    as batches of one, where every trigger has its own call.

    Items, order, fused scores (rank-based), versions and every component are identical;
    only the deep model's ``deep_log_prob`` explanation may differ in float32 rounding:
    numpy's matrix product (BLAS gemm) rounds a row differently depending on how many
    rows the call has, so a user's raw deep scores depend on the batch's other triggers.
    """
    import msgspec

    from unit.consumers.score_helpers import assert_batch_invariant, scorer_input

    settings = Settings(partitions=2, learn_every=16, snapshot_every=64)
    model = tiny_release.serving_model(threads=1)
    calls: list[list[int]] = []  # per scorer built, the size of each call to the model

    def scorer() -> ScoreProcessor:
        processor = ScoreProcessor(settings, clock=lambda: 1.0)
        generator = DeepCandidateGenerator(model, processor.deep_candidates)
        generate, mine = generator.generate_rows, []
        calls.append(mine)
        generator.generate_rows = lambda *args: mine.append(len(args[0])) or generate(*args)
        processor.swap_deep(generator)
        return processor

    def without_log_probs(value: bytes) -> tuple[dict, list[float]]:
        message = msgspec.json.decode(value)
        log_probs = [item["components"].pop("deep_log_prob", 0.0) for item in message["items"]]
        return message, log_probs

    def same(got, expected) -> bool:
        if got[0] != settings.topics.recommendations:
            return got == expected
        (message, log_probs), (reference, reference_log_probs) = (
            without_log_probs(got[2]), without_log_probs(expected[2]))
        return message == reference and all(
            abs(a - b) <= 1e-5 for a, b in zip(log_probs, reference_log_probs))

    records = scorer_input(settings, n_items=30)  # the items the tiny model knows
    outputs = assert_batch_invariant(scorer, records, same)
    messages = [recommendation_decoder.decode(value) for topic, _, value in outputs
                if topic == settings.topics.recommendations]
    assert {m.model_version for m in messages} == {f"{model.version}+popularity",
                                                   f"{model.version}+online-blend"}
    # The one-batch run called the model once, for all its triggers (none mispredicted);
    # batches of one called it once per trigger.
    assert calls[0] == [len(messages)] and calls[1] == [1] * len(messages)
