"""The scorer's learned fusion: batching-invariant, exact after a restore, hostile-proof."""

from __future__ import annotations

import dataclasses
from collections import Counter

import msgspec
import pytest
from unit.consumers.score_helpers import batchings, published, scorer_input

from streamrec.config import Settings
from streamrec.consumers.fusion_state import FUSION_KEY, FusionSnapshot, PendingPool
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.records import Record

# A short half-life, so that the choice moves within this small stream.
SETTINGS = Settings(partitions=2, learn_every=16, snapshot_every=64, fusion="learned",
                    fusion_half_life=20.0)


def _recommendations(outputs: list[tuple[str, bytes | None, bytes | None]]) -> list:
    return [o for o in outputs if o[0] == SETTINGS.topics.recommendations]


def _scorer(settings: Settings = SETTINGS) -> ScoreProcessor:
    return ScoreProcessor(settings, clock=lambda: 1.0)


def test_the_learned_weights_move_and_change_what_is_published():
    records = scorer_input(SETTINGS)
    learned = _scorer()
    learned_out = published(learned, records, [])
    fixed_out = published(_scorer(dataclasses.replace(SETTINGS, fusion="fixed")), records, [])
    served = [learned.fusion_weights(p) for p in range(SETTINGS.partitions)]
    initial = learned._fixed_weights()
    assert any(weights != initial for weights in served), "no partition moved its weights"
    assert _recommendations(learned_out) != _recommendations(fixed_out)
    # Its state goes to the scorer's own topic, in the input partition, weights included.
    state = [o for o in learned_out if o[0] == SETTINGS.topics.scorer_state]
    assert any(key == FUSION_KEY for _, key, _ in state)
    assert not [o for o in fixed_out if o[0] == SETTINGS.topics.scorer_state]


def test_recommendations_do_not_depend_on_the_batching():
    records = scorer_input(SETTINGS)
    results = {name: _recommendations(published(_scorer(), records, cuts))
               for name, cuts in batchings(len(records)).items()}
    reference = results["one batch"]
    assert reference
    for name, outputs in results.items():
        assert outputs == reference, name


def _state_records(outputs, topic: str, settings: Settings) -> dict[int, list[Record]]:
    """The scorer-state outputs as the topic's records, per partition, in order."""
    by_partition: dict[int, list[Record]] = {}
    for output in outputs:
        if output.topic == topic:
            log = by_partition.setdefault(output.partition, [])
            log.append(Record(topic, output.partition, len(log), output.key, output.value))
    return by_partition


@pytest.mark.parametrize("cut_fraction", [0.3, 0.6])
def test_a_restored_scorer_publishes_exactly_what_an_uninterrupted_one_does(cut_fraction):
    records = scorer_input(SETTINGS)
    cut = int(len(records) * cut_fraction)
    uninterrupted = _scorer()
    before = [o for start in range(0, cut, 50)
              for o in uninterrupted.process(records[start:min(start + 50, cut)]).outputs]
    weights_at_cut = [uninterrupted.fusion_weights(p) for p in range(SETTINGS.partitions)]
    after_reference = _recommendations([(o.topic, o.key, o.value) for o in
                                        uninterrupted.process(records[cut:]).outputs])
    restored = _scorer()
    state = _state_records(before, SETTINGS.topics.scorer_state, SETTINGS)
    for partition in range(SETTINGS.partitions):
        assert restored.restore_state(partition, state.get(partition, [])) > 0
        restored.restore(partition, [r for r in records[:cut]
                                     if r.topic == SETTINGS.topics.user_state
                                     and r.partition == partition])
    assert [restored.fusion_weights(p) for p in range(SETTINGS.partitions)] == weights_at_cut
    after = _recommendations([(o.topic, o.key, o.value) for o in
                              restored.process(records[cut:]).outputs])
    assert after and after == after_reference


def test_without_its_state_a_restored_scorer_would_differ():
    """The exactness above rests on the state topic: a restore without it publishes other
    rankings (else the test above could not fail)."""
    records = scorer_input(SETTINGS)
    cut = int(len(records) * 0.6)
    uninterrupted = _scorer()
    uninterrupted.process(records[:cut])
    reference = _recommendations([(o.topic, o.key, o.value) for o in
                                  uninterrupted.process(records[cut:]).outputs])
    forgetful = _scorer()
    for partition in range(SETTINGS.partitions):
        forgetful.restore_state(partition, [])
        forgetful.restore(partition, [r for r in records[:cut]
                                      if r.topic == SETTINGS.topics.user_state
                                      and r.partition == partition])
    assert _recommendations([(o.topic, o.key, o.value) for o in
                             forgetful.process(records[cut:]).outputs]) != reference


def test_hostile_state_records_are_skipped_and_counted():
    scorer = _scorer()
    topic = SETTINGS.topics.scorer_state
    learner = scorer._fusion_of(0).learner
    initial, factors = learner.initial, learner.factors
    gains = tuple(float(n) for n in range(len(learner.gains)))
    good_pool = msgspec.msgpack.encode(PendingPool((("a", "b"), (), ("c",), ())))
    hostile = [
        Record(topic, 0, 0, FUSION_KEY, b"\xc1not msgpack"),
        Record(topic, 0, 1, FUSION_KEY, msgspec.msgpack.encode(
            FusionSnapshot(99, initial, factors, (1.0,), 0, 0))),
        Record(topic, 0, 2, FUSION_KEY, msgspec.msgpack.encode(
            FusionSnapshot(1, initial, factors, (float("nan"),), 0, 0))),
        # Gains of another grid (the weights were reconfigured since).
        Record(topic, 0, 9, FUSION_KEY, msgspec.msgpack.encode(
            FusionSnapshot(1, (1.0, 1.0, 1.0, 1.0), factors, gains, 1, 5))),
        Record(topic, 0, 3, b"u1", msgspec.msgpack.encode(PendingPool((("a",),)))),
        Record(topic, 0, 4, b"u2", msgspec.msgpack.encode(
            PendingPool((("x" * 10_000,), (), (), ())))),
        Record(topic, 0, 5, b"u3", msgspec.msgpack.encode(
            PendingPool((tuple(f"i{n}" for n in range(10_000)), (), (), ())))),
        Record(topic, 0, 6, None, good_pool),
        Record(topic, 0, 7, b"u4", good_pool),
        Record(topic, 0, 8, b"u4", b"[[[[" * 5000),
    ]
    assert scorer.restore_state(0, hostile) == 1  # u4's good pool only
    reasons = Counter({reason: n for (t, reason), n in scorer.skipped_by_reason.items()
                       if t == topic})
    assert sum(reasons.values()) == len(hostile) - 1
    assert scorer.fusion_weights(0) == scorer._fixed_weights()


def test_a_tombstone_forgets_the_pending_pool_and_writes_its_tombstone():
    scorer = _scorer()
    records = [r for r in scorer_input(SETTINGS) if r.topic == SETTINGS.topics.user_state
               and r.key is not None and not r.key.startswith(b"__")]
    user = records[0].key
    scorer.process(records[:40])
    assert user.decode() in scorer._fusion[records[0].partition].pending
    outputs = scorer.process([Record(SETTINGS.topics.user_state, records[0].partition, 10_000,
                                     user, None)]).outputs
    assert [(o.topic, o.key, o.value) for o in outputs] == [
        (SETTINGS.topics.scorer_state, user, None)]
    assert user.decode() not in scorer._fusion[records[0].partition].pending
