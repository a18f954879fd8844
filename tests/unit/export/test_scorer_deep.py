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
