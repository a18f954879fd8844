"""The learned fusion on a real broker: the bus and Kafka publish the same recommendations,
also when the Kafka scorer is frozen mid-stream and a fresh one takes over.

The setting is that of ``test_transport_equivalence.py`` (read its docstring: one ``clicks``
partition and the whole log written before ingest starts make Kafka's ingest batches the
bus's), with ``fusion="learned"`` and a short half-life, so that the partition's fusion
weights really move on this 5,000-event log. The learned fusion keeps state the changelog
cannot rebuild (the learner's gains, each user's last candidate pool): it goes to
``scorer-state`` in each batch's transaction and is restored before the changelog.

The takeover is a hard stop: once about 40 % of the recommendations are committed, the first
scorer's ``before_commit`` hook blocks inside a batch's transaction (outputs and offsets sent,
not committed) and the service never moves again: no commit, no abort, no leaving the group.
A new ``ProcessorService`` with a fresh ``ScoreProcessor`` joins under the same instance id
(static membership: it replaces the frozen member at once; the same transactional id: its
``init_transactions`` fences the zombie and aborts its open transaction), restores
``scorer-state`` and the changelog up to the committed offsets, and carries on. Only then,
with the answers read, is the zombie released; it finds itself fenced and commits nothing.
A third run, whose second scorer skips the state topic, shows that the restore is what
makes the second run exact.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import pytest

from streamrec.config import Settings
from streamrec.consumers.fusion_state import FUSION_KEY
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.events import ClickEvent
from streamrec.messages import Recommendation
from streamrec.records import ProcessResult, Record
from streamrec.transport import kafka_clients
from streamrec.transport.changelog import read_changelog
from streamrec.transport.runtime import ProcessorService
from streamrec.transport.topics import topic_specs
from support import (RecordingIngest, assert_same, assert_same_recommendations,
                     equivalence_log, ingest_service, on_the_bus, read_topic, running_service,
                     score_service, settings_with_topics, uncommitted_state,
                     write_clicks)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

EVENTS = 5_000
BATCH = 200
OPTIONS = dict(partitions=1, batch_size=BATCH, snapshot_every=500, fusion="learned",
               fusion_half_life=50.0)
TAKEOVER_AT = 0.4  # share of the bus's recommendations published before the freeze
INSTANCE = "fusion-0"


@dataclass(frozen=True)
class BusRun:
    events: list[ClickEvent]
    messages: list[Recommendation]
    batches: list[tuple[int, int, int]]


@dataclass
class KafkaRun:
    settings: Settings
    messages: list[Recommendation]  # read_committed, over both scorers
    batches: list[tuple[int, int, int]]  # ingest's
    serving: ScoreProcessor  # the scorer that ran last
    committed_at_freeze: int | None = None  # recommendations visible when the first froze
    state_records: int = 0  # on scorer-state, committed, at the end
    aborted_state_records: int = 0  # on scorer-state too, but in aborted transactions


class ForgetfulScorer(ScoreProcessor):
    """A scorer that ignores its state topic: what a takeover without ``scorer-state`` is."""

    def restore_state(self, partition: int, records: list[Record]) -> int:
        return 0


@pytest.fixture(scope="module")
def bus_run() -> BusRun:
    events = equivalence_log(EVENTS)
    messages, batches = on_the_bus(Settings(**OPTIONS), events)  # type: ignore[arg-type]
    # Every poll of the whole log is full but the last: the batching Kafka must match.
    assert batches == [(0, start, min(start + BATCH, EVENTS) - 1)
                       for start in range(0, EVENTS, BATCH)]
    assert len(messages) > EVENTS // 2
    return BusRun(events, messages, batches)


@contextlib.contextmanager
def fresh_topics(bootstrap: str) -> Iterator[Settings]:
    settings = settings_with_topics(bootstrap, **OPTIONS)
    try:
        yield settings
    finally:
        admin = kafka_clients.admin(settings)
        with contextlib.suppress(Exception):
            admin.delete_topics([spec.name for spec in topic_specs(settings)])
        admin.close()


class Freeze:
    """Blocks the first scorer inside the transaction of the batch that takes its published
    recommendations to ``at`` (processed, so the batches before it are the committed ones)."""

    def __init__(self, processor: ScoreProcessor, at: int) -> None:
        self.at, self.published = at, 0
        self.frozen, self.release = threading.Event(), threading.Event()
        process, topic = processor.process, processor.topics.recommendations

        def counting(batch: list[Record], publish: bool = True) -> ProcessResult:
            result = process(batch, publish)
            self.published += sum(output.topic == topic for output in result.outputs)
            return result

        processor.process = counting  # type: ignore[method-assign]

    def before_commit(self, batch: list[Record]) -> None:
        if self.published >= self.at and not self.frozen.is_set():
            self.frozen.set()
            self.release.wait(240)  # frozen: the transaction stays open until released


def on_kafka(settings: Settings, bus: BusRun, takeover: ScoreProcessor | None = None
             ) -> KafkaRun:
    """The whole log on ``clicks``, then ingest and a scorer; with ``takeover``, the scorer
    is frozen at ``TAKEOVER_AT`` and ``takeover`` goes on in a new service."""
    expected = len(bus.messages)
    write_clicks(settings, bus.events)
    ingest = RecordingIngest(settings)
    first = ScoreProcessor(settings)
    run = KafkaRun(settings, [], ingest.batches, first)

    def answers() -> list[Recommendation]:
        # read_committed, until as many answers as the bus gave (then 2 s more for extras).
        records = read_topic(settings, settings.topics.recommendations, timeout_s=120,
                             until=lambda rs: len(rs) >= expected, idle_s=2.0)
        return [recommendation_decoder.decode(r.value) for r in records]

    with running_service(ingest_service(settings, INSTANCE, processor=ingest)):
        if takeover is None:
            with running_service(score_service(settings, INSTANCE, processor=first)):
                run.messages = answers()
        else:
            freeze = Freeze(first, int(expected * TAKEOVER_AT))
            run.messages, run.committed_at_freeze = take_over(settings, first, freeze,
                                                              takeover, answers)
            run.serving = takeover
    states = read_changelog(settings, settings.topics.scorer_state, [0])[0]
    run.state_records = len(states)
    run.aborted_state_records = len(uncommitted_state(settings, [0])) - len(states)
    assert any(record.key == FUSION_KEY for record in states), "no fusion weights committed"
    return run


def take_over(settings: Settings, first: ScoreProcessor, freeze: Freeze,
              second: ScoreProcessor, answers: Callable[[], list[Recommendation]]
              ) -> tuple[list[Recommendation], int]:
    """Run the first scorer until it freezes, then ``second`` in a new service under the
    same instance id: the committed answers over both, and how many the first committed."""
    zombie = score_service(settings, INSTANCE, processor=first, static_membership=True,
                           before_commit=freeze.before_commit)
    thread = threading.Thread(target=_run_quietly, args=(zombie,), daemon=True,
                              name="svc-zombie")
    thread.start()
    try:
        assert freeze.frozen.wait(90), "the first scorer never reached the freeze"
        committed_batches = zombie.batches_committed
        # What the first scorer committed (its frozen transaction is not visible).
        committed = read_topic(settings, settings.topics.recommendations,
                               until=lambda rs: True, idle_s=1.0, timeout_s=30)
        with running_service(score_service(settings, INSTANCE, processor=second,
                                           static_membership=True)):
            messages = answers()
    finally:
        zombie.stop()
        freeze.release.set()  # released only now: fenced, it can commit nothing
        thread.join(60)
    assert not thread.is_alive(), "the released zombie did not stop"
    assert zombie.batches_committed == committed_batches, "the fenced zombie committed"
    return messages, len(committed)


def _run_quietly(service: ProcessorService) -> None:
    # The zombie ends fenced (its session fails); what it did is judged by its output.
    with contextlib.suppress(Exception):
        service.run()


def test_the_bus_and_kafka_publish_identical_learned_fusion_recommendations(
        kafka_bootstrap, bus_run):
    started = time.monotonic()
    with fresh_topics(kafka_bootstrap) as settings:
        run = on_kafka(settings, bus_run)
    assert run.batches == bus_run.batches, "ingest polled other batches on Kafka"
    assert run.aborted_state_records == 0
    assert run.serving.fusion_weights(0) != run.serving._fixed_weights(), "weights never moved"
    assert_same_recommendations(run.messages, bus_run.messages)
    print(f"\nlearned fusion, bus = Kafka: {len(run.messages)} recommendations, "
          f"{run.state_records} scorer-state records, weights {run.serving.fusion_weights(0)}, "
          f"{time.monotonic() - started:.1f} s")


def taken_over(bootstrap: str, bus: BusRun, scorer: type[ScoreProcessor]) -> KafkaRun:
    """A run whose first scorer froze mid-stream and a fresh ``scorer`` took over; checks
    what both takeover tests rely on."""
    with fresh_topics(bootstrap) as settings:
        run = on_kafka(settings, bus, takeover=scorer(settings))
    expected = len(bus.messages)
    # Mid-stream: the first scorer had committed answers, and most came after it froze.
    assert run.committed_at_freeze is not None
    assert 0.2 * expected < run.committed_at_freeze < 0.5 * expected, run.committed_at_freeze
    assert run.batches == bus.batches, "ingest polled other batches on Kafka"
    assert run.state_records > 0
    # The frozen transaction's state records reached the log, and were aborted by the fencing.
    assert run.aborted_state_records > 0
    return run


def test_a_fresh_scorer_taking_over_a_frozen_one_publishes_exactly_the_bus_recommendations(
        kafka_bootstrap, bus_run):
    started = time.monotonic()
    run = taken_over(kafka_bootstrap, bus_run, ScoreProcessor)
    assert run.serving.fusion_weights(0) != run.serving._fixed_weights(), "weights never moved"
    assert_same_recommendations(run.messages, bus_run.messages)
    print(f"\nlearned fusion, takeover after {run.committed_at_freeze} of "
          f"{len(bus_run.messages)} committed: bus = Kafka, {run.state_records} scorer-state "
          f"records ({run.aborted_state_records} aborted), {time.monotonic() - started:.1f} s")


def test_without_the_state_topic_the_takeover_would_publish_something_else(
        kafka_bootstrap, bus_run):
    started = time.monotonic()
    run = taken_over(kafka_bootstrap, bus_run, ForgetfulScorer)
    cut = run.committed_at_freeze
    assert [m.trigger_id for m in run.messages] == [m.trigger_id for m in bus_run.messages]
    for n, (kafka, bus) in enumerate(zip(run.messages[:cut], bus_run.messages[:cut])):
        assert_same(kafka, bus, f"#{n} (before the takeover)")
    differing = [bus.trigger_id for kafka, bus in zip(run.messages[cut:], bus_run.messages[cut:])
                 if _differs(kafka, bus)]
    assert differing, "the takeover without scorer-state published what the bus did"
    print(f"\nwithout scorer-state: {len(differing)} of {len(run.messages) - cut} "
          f"recommendations after the takeover differ from the bus's, "
          f"{time.monotonic() - started:.1f} s")


def _differs(kafka: Recommendation, bus: Recommendation) -> bool:
    """Whether ``assert_same`` (the comparison of the other tests) tells them apart."""
    try:
        assert_same(kafka, bus, "")
    except AssertionError:
        return True
    return False
