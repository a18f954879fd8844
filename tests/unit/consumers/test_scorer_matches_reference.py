"""The batch-first scorer publishes what the per-trigger scorer of before issue 13 published.

``benchmarks/scorer_reference.py`` keeps the per-trigger ranking path frozen (online blend
ranked item by item, dictionary fusion, one DeepCandidate per candidate). On a fixed
5,000-event log, with and without a deep model, the two publish byte-identical
recommendation messages: items, order, scores, explanations and versions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import scorer as bench  # noqa: E402
from scorer_reference import ReferenceScoreProcessor  # noqa: E402

from streamrec.config import Settings  # noqa: E402
from streamrec.consumers.score import ScoreProcessor  # noqa: E402
from streamrec.producers.synthetic import SyntheticStream  # noqa: E402


@pytest.fixture(scope="module")
def log_and_model():
    # The frozen reference knows the three sources of before issue 14 (no transitions; their
    # batch path is held to ``fuse`` in test_batch_ranking.py) and their fixed weights (the
    # learned fusion's weights per trigger: test_score_learned_fusion.py), so they are
    # compared on those.
    settings = Settings(snapshot_every=500, transition_weight=0.0, fusion="fixed")
    events = list(SyntheticStream(n_users=300, n_items=400, n_events=5_000, seed=11).events())
    stream = bench.ingest_states(settings, events, 1)
    model, _ = bench.random_model(sorted({event.item_id for event in events})[:350])
    return settings, stream, model


@pytest.mark.parametrize("deep", [False, True], ids=["online", "deep"])
def test_published_recommendations_are_byte_identical(log_and_model, deep: bool) -> None:
    # Batches of 500, as the Kafka runtime hands them over (how batches are cut changes
    # nothing either: tests/unit/consumers/test_score_batch_invariance.py).
    batch = 500
    settings, stream, model = log_and_model

    def make(cls):
        def build():
            processor = cls(settings, clock=lambda: 1.0)
            if deep:
                processor.swap_deep(bench.deep_generator(model, processor.deep_candidates))
            return processor
        return build

    _, answered, now = bench.run_once(make(ScoreProcessor), stream, batch)
    _, answered_before, before = bench.run_once(make(ReferenceScoreProcessor), stream, batch)
    assert answered == answered_before > 0.3 * len(stream)
    assert [o.value for o in now] == [o.value for o in before]
    versions = {bytes(o.value).split(b'"model_version":"')[1].split(b'"')[0] for o in now
                if b'"model_version"' in o.value}
    # Both ranking paths are exercised: popularity before a snapshot, the blend after it.
    assert any(b"online-blend" in v for v in versions)
    assert any(b"popularity" in v for v in versions)
