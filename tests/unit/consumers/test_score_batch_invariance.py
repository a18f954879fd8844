"""The scorer publishes the same recommendations however its input is cut into batches.

On Kafka, ``read_committed`` polls return varying numbers of records, and the in-process bus
cuts its own: for both to publish identical recommendations, every trigger is ranked with
the item-side statistics and online models as of its own position in the stream.
"""

from __future__ import annotations

from unit.consumers.score_helpers import assert_batch_invariant, published, scorer_input

from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.config import Settings

SETTINGS = Settings(partitions=2, learn_every=16, snapshot_every=64)


def test_recommendations_do_not_depend_on_the_batching():
    records = scorer_input(SETTINGS)
    outputs = assert_batch_invariant(lambda: ScoreProcessor(SETTINGS, clock=lambda: 1.0),
                                     records)
    messages = [recommendation_decoder.decode(value) for topic, _, value in outputs
                if topic == SETTINGS.topics.recommendations]
    # What was compared covers every source and both trigger kinds.
    assert {m.trigger_kind for m in messages} == {"event", "request"}
    assert {m.model_version for m in messages} == {"popularity", "online-blend"}
    components = {name for m in messages for item in m.items for name in item.components}
    assert {"embedding", "fm", "recency", "covisit_rank", "popularity"} <= components


def test_a_trigger_is_ranked_before_the_records_after_it():
    """The property the invariance rests on: later records of a batch change nothing
    published for earlier triggers (apply-all-then-rank would let them)."""
    records = scorer_input(SETTINGS)
    half = len(records) // 2
    alone = published(ScoreProcessor(SETTINGS, clock=lambda: 1.0), records[:half], [])
    together = published(ScoreProcessor(SETTINGS, clock=lambda: 1.0), records, [])
    recommendations = SETTINGS.topics.recommendations
    first = [o for o in alone if o[0] == recommendations]
    assert first and [o for o in together if o[0] == recommendations][:len(first)] == first
