"""A processor's own state topic on the bus (streamrec.transport.bus_runner): restored whole,
before the changelog, by whoever holds the partition; exactly the committed batches, no broker."""

from __future__ import annotations

import pytest

from streamrec.config import Settings
from streamrec.processor import Processor, ProcessorDefaults, check_state_topic
from streamrec.records import Output, ProcessResult, Record
from streamrec.transport.bus import InProcessBus, partition_for
from streamrec.transport.bus_runner import InProcessRunner
from streamrec.transport.runtime import ProcessorService
from state_counting import (POISON, TOTAL, StateCounter, decode_count, expected_counts,
                            latest_counts)

IN, STATE, CHANGELOG = "clicks", "scorer-state", "changelog"
PARTITIONS = 4
KEYS = [f"u{i}".encode() for i in range(20)]  # every partition gets some
ALL = list(range(PARTITIONS))


def loaded_bus(n: int = 240, poison_at: int | None = None) -> InProcessBus:
    bus = InProcessBus(PARTITIONS)
    for i in range(n):
        bus.produce(Output(IN, KEYS[i % len(KEYS)], POISON if i == poison_at else b"click"))
    return bus


def runner(bus: InProcessBus, positions: dict[tuple[str, int], int], **options: object
           ) -> InProcessRunner:
    return InProcessRunner(bus, StateCounter(STATE, CHANGELOG), [IN], 7,  # type: ignore[arg-type]
                           positions=positions, **options)


def counter(r: InProcessRunner) -> StateCounter:
    assert isinstance(r.processor, StateCounter)
    return r.processor


def committed(bus: InProcessBus, positions: dict[tuple[str, int], int],
              partitions: list[int] = ALL) -> dict[int, dict[bytes, int]]:
    """The counts of the inputs below the committed positions, per partition."""
    stops = {p: positions.get((IN, p), 0) for p in partitions}
    return {p: c for p, c in expected_counts(bus.records(IN), stops, ALL).items()
            if p in partitions}


def test_the_total_key_lands_in_every_partition_not_where_it_hashes() -> None:
    # Else the pinned partition would prove nothing: the key alone goes to one partition.
    assert len({partition_for(TOTAL, PARTITIONS)}) == 1
    bus = loaded_bus()
    runner(bus, {}).drain()
    assert {r.partition for r in bus.records(STATE) if r.key == TOTAL} == set(ALL)


def test_a_fresh_runner_restores_exactly_the_committed_counts() -> None:
    bus, positions = loaded_bus(), {}
    first = runner(bus, positions)
    for _ in range(9):  # part of the input: some partitions further than others
        first.step()
    assert 0 < sum(positions.values()) < bus.size(IN)
    assert counter(first).snapshot() == committed(bus, positions)

    second = runner(bus, positions)  # a new process: same group, nothing shared in memory
    fresh = counter(second)
    assert sorted(p for p, _, _ in fresh.restored) == ALL
    assert fresh.snapshot() == committed(bus, positions)
    for p in ALL:  # its own state first, then the changelog, partition by partition
        assert fresh.calls.index(("state", p)) < fresh.calls.index(("changelog", p))
    second.drain()
    assert fresh.snapshot() == expected_counts(bus.records(IN), partitions=ALL)
    assert latest_counts(bus.records(STATE)) == fresh.snapshot()


def test_an_empty_state_partition_is_restored_with_an_empty_list() -> None:
    bus = InProcessBus(PARTITIONS)
    fresh = counter(runner(bus, {}))
    assert fresh.restored == [(p, {}, []) for p in ALL]


def test_a_batch_whose_commit_failed_is_not_restored() -> None:
    bus, positions = loaded_bus(), {}
    failed: list[list[Record]] = []

    def fail_once(batch: list[Record]) -> None:
        if r.batches_committed == 3 and not failed:
            failed.append(batch)
            raise RuntimeError("injected commit failure")

    r = runner(bus, positions, before_commit=fail_once)
    for _ in range(3):
        r.step()
    before = dict(positions)
    restores = len(counter(r).restored)
    r.step()  # fails: a failed session, every partition restored from what is committed
    assert failed and r.failed_sessions == 1 and positions == before
    restored = counter(r).restored[restores:]
    assert sorted(p for p, _, _ in restored) == ALL
    assert {p: counts for p, counts, _ in restored} == committed(bus, positions)
    # Not one state record of the failed batch was there to restore.
    failed_inputs = {(rec.partition, rec.offset) for rec in failed[0]}
    assert not {(p, o) for p, _, sources in restored for o in sources} & failed_inputs
    r.drain()
    assert counter(r).snapshot() == expected_counts(bus.records(IN), partitions=ALL)
    assert latest_counts(bus.records(STATE)) == counter(r).snapshot()


def test_a_batch_whose_processing_raised_is_not_restored() -> None:
    bus, positions = loaded_bus(poison_at=50), {}
    poisoned = next(rec for rec in bus.records(IN) if rec.value == POISON)
    r = runner(bus, positions)
    while positions.get((IN, poisoned.partition), 0) <= poisoned.offset:
        before = dict(positions)
        restores = len(counter(r).restored)
        r.step()
    # The batch that raised was processed half-way up to the poisoned input: its partitions
    # were restored to the committed counts, then its records committed one by one, and the
    # poisoned one's partition restored after each of its 3 failures, each time to the
    # inputs committed before it.
    isolation = counter(r).restored[restores:]
    batch, retries = isolation[:-3], isolation[-3:]
    assert poisoned.partition in [p for p, _, _ in batch]
    for p, counts, _ in batch:
        assert counts == committed(bus, before, [p])[p]
    up_to_poison = {**before, (IN, poisoned.partition): poisoned.offset}
    assert [(p, counts) for p, counts, _ in retries] == [
        (poisoned.partition, committed(bus, up_to_poison, [poisoned.partition])[poisoned.partition])
    ] * 3
    assert r.records_dead_lettered == 1
    r.drain()
    assert counter(r).snapshot() == expected_counts(bus.records(IN), partitions=ALL)
    assert latest_counts(bus.records(STATE)) == counter(r).snapshot()
    assert poisoned.offset not in {decode_count(rec.value)[1] for rec in bus.records(STATE)
                                   if rec.partition == poisoned.partition and rec.value}


def test_a_partition_moved_to_another_runner_restores_its_own_state_only() -> None:
    bus, positions = loaded_bus(), {}
    first = runner(bus, positions)
    for _ in range(10):
        first.step()
    first.revoke([2, 3])
    second = runner(bus, positions, partitions=[2, 3])
    moved = counter(second)
    assert sorted(p for p, _, _ in moved.restored) == [2, 3]  # only what it was given
    assert moved.snapshot() == committed(bus, positions, [2, 3])
    assert sorted(counter(first).snapshot()) == [0, 1]  # the old owner dropped them
    first.drain()
    second.drain()
    everything = expected_counts(bus.records(IN), partitions=ALL)
    assert {**counter(first).snapshot(), **moved.snapshot()} == everything
    assert latest_counts(bus.records(STATE)) == everything


class _OutOfRange(ProcessorDefaults):
    changelog_topic = CHANGELOG
    state_topic = STATE
    rejected_by_reason: dict = {}
    skipped_by_reason: dict = {}

    def restore(self, partition: int, changelog: list[Record]) -> int:
        return 0

    def drop(self, partitions: list[int]) -> None:
        pass

    def process(self, batch: list[Record]) -> ProcessResult:
        return ProcessResult(outputs=[Output(STATE, b"k", b"1", partition=0),
                                      Output(STATE, b"k", b"1", partition=PARTITIONS)])

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        return None


@pytest.mark.parametrize("partition", [PARTITIONS, -1])
def test_a_partition_the_topic_lacks_is_refused(partition: int) -> None:
    bus = InProcessBus(PARTITIONS)
    with pytest.raises(ValueError, match="partition"):
        bus.produce(Output(STATE, b"k", b"1", partition=partition))
    assert bus.size(STATE) == 0


def test_a_batch_with_a_refused_output_commits_nothing_of_it() -> None:
    bus, positions = loaded_bus(n=5), {}
    processor = _OutOfRange()
    assert isinstance(processor, Processor)
    r = InProcessRunner(bus, processor, [IN], positions=positions)
    with pytest.raises(ValueError, match="partition"):
        r.step()
    assert bus.size(STATE) == 0 and positions == {}  # not even the good first output


@pytest.mark.parametrize("clash", ["input", "global", "changelog"])
def test_a_state_topic_read_another_way_is_refused_by_both_transports(clash: str) -> None:
    processor = StateCounter(STATE, CHANGELOG)
    inputs = [IN]
    if clash == "input":
        inputs = [IN, STATE]
    elif clash == "global":
        processor.global_topics = (STATE,)
    else:
        processor.changelog_topic = STATE
    with pytest.raises(ValueError, match="applied twice"):
        check_state_topic(processor, inputs)
    with pytest.raises(ValueError, match="applied twice"):
        InProcessRunner(InProcessBus(PARTITIONS), processor, inputs)
    with pytest.raises(ValueError, match="applied twice"):
        ProcessorService(processor, Settings(), input_topics=inputs, group_id="g",
                         instance_id="i")
