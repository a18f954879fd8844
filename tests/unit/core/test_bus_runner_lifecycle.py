"""The in-process runner has the Kafka runtime's lifecycle (streamrec.transport.bus_runner), no broker."""

from __future__ import annotations

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport.bus import InProcessBus, partition_for
from streamrec.transport.bus_runner import InProcessRunner
from streamrec.config import Settings
from streamrec.events import encode_click
from streamrec.records import Output
from support import assert_offsets_applied_once, reference_states

SETTINGS = Settings(partitions=4, batch_size=100, snapshot_every=300)
EVENTS = list(SyntheticStream(n_users=60, n_items=40, n_events=1_500, seed=3).events())


def loaded_bus() -> InProcessBus:
    bus = InProcessBus(SETTINGS.partitions)
    for event in EVENTS:
        bus.produce(Output(SETTINGS.topics.clicks, event.user_id.encode(), encode_click(event)))
    return bus


def final_states(ingest: IngestProcessor) -> dict[str, dict]:
    return {u: s.learned_view() for u, s in ingest.all_states().items()}


def test_a_poll_returns_at_most_batch_size_records_in_all() -> None:
    runner = InProcessRunner(loaded_bus(), IngestProcessor(SETTINGS), [SETTINGS.topics.clicks],
                             batch_size=100)
    sizes = []
    while (n := runner.step()) > 0:
        sizes.append(n)
    assert max(sizes) == 100 and sum(sizes) == len(EVENTS)


def test_failed_commits_leave_nothing_behind_and_the_run_converges() -> None:
    bus = loaded_bus()
    failures = {"left": 3}

    def fail_some(batch) -> None:  # type: ignore[no-untyped-def]
        if runner.batches_committed % 4 == 2 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("injected")

    ingest = IngestProcessor(SETTINGS)
    runner = InProcessRunner(bus, ingest, [SETTINGS.topics.clicks], SETTINGS.batch_size,
                             before_commit=fail_some)
    assert runner.drain() > len(EVENTS)  # the failed batches were read again
    assert runner.failed_sessions == 3
    assert final_states(ingest) == reference_states(SETTINGS, EVENTS)
    assert_offsets_applied_once(bus.records(SETTINGS.topics.user_state))


def test_revoke_and_reassign_restores_exactly_what_was_committed() -> None:
    bus = loaded_bus()
    ingest = IngestProcessor(SETTINGS)
    runner = InProcessRunner(bus, ingest, [SETTINGS.topics.clicks], SETTINGS.batch_size)
    for _ in range(6):
        runner.step()
    runner.revoke([1, 2])
    assert runner.held == [0, 3]
    assert {partition_for(u.encode(), 4) for u in ingest.all_states()} == {0, 3}
    for _ in range(3):
        runner.step()
    assert runner.assign([0, 1, 2, 3]) == [1, 2]  # only the new ones are restored
    runner.drain()
    assert final_states(ingest) == reference_states(SETTINGS, EVENTS)
    assert_offsets_applied_once(bus.records(SETTINGS.topics.user_state))


def test_a_crashed_scorer_answers_every_trigger_once() -> None:
    bus = loaded_bus()
    ingest = InProcessRunner(bus, IngestProcessor(SETTINGS), [SETTINGS.topics.clicks],
                             SETTINGS.batch_size)
    ingest.drain()
    scorer = InProcessRunner(bus, ScoreProcessor(SETTINGS, clock=lambda: 0.0),
                             [SETTINGS.topics.user_state, SETTINGS.topics.requests],
                             SETTINGS.batch_size, restore_to_committed=True)
    for _ in range(5):
        scorer.step()
    scorer.crash()
    scorer.drain()
    triggers = [recommendation_decoder.decode(r.value).trigger_id
                for r in bus.records(SETTINGS.topics.recommendations)]
    assert len(triggers) == len(set(triggers)) and len(triggers) > 0
    assert set(triggers) == {e.event_id for e in EVENTS if _triggered(bus, e.event_id)}


def _triggered(bus: InProcessBus, event_id: str) -> bool:
    from support import trigger_ids
    return event_id in trigger_ids(bus.records(SETTINGS.topics.user_state))


def test_a_poisoned_record_is_dead_lettered_and_the_rest_applied() -> None:
    bus = loaded_bus()

    class Poisoned(IngestProcessor):
        def process(self, batch):  # type: ignore[no-untyped-def]
            if any(r.offset == 7 and r.partition == 0 for r in batch):
                raise ValueError("poison")
            return super().process(batch)

    runner = InProcessRunner(bus, Poisoned(SETTINGS), [SETTINGS.topics.clicks],
                             SETTINGS.batch_size)
    runner.drain()
    assert runner.records_dead_lettered == 1
    dead = bus.records(SETTINGS.topics.dlq)
    assert len(dead) == 1 and dead[0].key == bus.topic(SETTINGS.topics.clicks)[0][7].key
