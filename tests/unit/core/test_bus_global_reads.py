"""Global reads on the bus (streamrec.transport.bus_runner, item 7): every member sees every record,
in one event-time order.

Two runners of one group share a 4-partition topic, each owning two partitions. The fake
processor learns its own partitions' records as owned and every other partition's as
global (``Record.owned = False``), as the scorer's item-side table does.
"""

from __future__ import annotations

from collections import Counter

import pytest

from streamrec.transport.bus import InProcessBus
from streamrec.transport.bus_runner import InProcessRunner
from streamrec.processor import Processor, ProcessorDefaults
from streamrec.records import Output, ProcessResult, Record

TOPIC = "user-state"
PARTITIONS = 4


class GlobalLearner(ProcessorDefaults):
    """Logs what reaches it: processed (owned) and learned globally (not owned), in order."""

    changelog_topic = TOPIC  # as the scorer's: its input is its changelog
    global_topics = (TOPIC,)

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.processed: list[tuple[int, int]] = []
        self.learned_globally: list[tuple[int, int]] = []
        self.handed: list[tuple[int, int]] = []  # every record, in the order handed over
        self.restored: Counter[int] = Counter()
        self.raise_on_global = 0
        self.rejected_by_reason: Counter[str] = Counter()
        self.skipped_by_reason: Counter[tuple[str, str]] = Counter()

    def restore(self, partition: int, changelog: list[Record]) -> int:
        self.owned.add(partition)
        self.restored[partition] += len(changelog)
        return 0

    def drop(self, partitions: list[int]) -> None:
        self.owned -= set(partitions)

    def event_time(self, record: Record) -> float | None:
        return float(record.value) if record.value else None

    def process(self, batch: list[Record]) -> ProcessResult:
        for r in batch:
            if not r.owned and self.raise_on_global:
                self.raise_on_global -= 1
                raise RuntimeError("a bug in learning a global record")
        for r in batch:
            assert r.owned == (r.partition in self.owned)
            (self.processed if r.owned else self.learned_globally).append((r.partition, r.offset))
            self.handed.append((r.partition, r.offset))
        return ProcessResult(processed=len(batch))

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        return None

    def seen(self) -> Counter[tuple[int, int]]:
        return Counter(self.processed + self.learned_globally)


def produce(bus: InProcessBus, per_partition: int, first_time: int = 0) -> None:
    """Event times interleave the partitions unevenly: p gets time 3*i + p % 3."""
    for i in range(per_partition):
        for p in range(PARTITIONS):
            bus.produce(Output(TOPIC, b"u%d" % p, b"%d" % (first_time + 3 * i + p % 3),
                               partition=p))


def every_record(bus: InProcessBus) -> Counter[tuple[int, int]]:
    return Counter((r.partition, r.offset) for r in bus.records(TOPIC))


def group(bus: InProcessBus, batch_size: int = 10) -> tuple[InProcessRunner, InProcessRunner]:
    positions: dict[tuple[str, int], int] = {}

    def member(partitions: list[int]) -> InProcessRunner:
        return InProcessRunner(bus, GlobalLearner(), [TOPIC], batch_size,
                               restore_to_committed=True, partitions=partitions,
                               positions=positions)
    return member([0, 1]), member([2, 3])


def learner(runner: InProcessRunner) -> GlobalLearner:
    assert isinstance(runner.processor, GlobalLearner)
    return runner.processor


def drain(*runners: InProcessRunner) -> None:
    while sum(runner.step() for runner in runners) > 0:
        pass


def test_the_fake_is_a_processor() -> None:
    assert isinstance(GlobalLearner(), Processor)


def merged_order(bus: InProcessBus) -> list[tuple[int, int]]:
    """Every record by (event time, partition): the one order every member hands over."""
    return [(r.partition, r.offset) for r in
            sorted(bus.records(TOPIC), key=lambda r: (float(r.value), r.partition))]


def test_each_member_sees_every_partitions_records_exactly_once_in_event_time_order() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 40)
    a, b = group(bus)
    drain(a, b)
    for runner, own in ((a, {0, 1}), (b, {2, 3})):
        fake = learner(runner)
        assert fake.seen() == every_record(bus)
        assert {p for p, _ in fake.processed} == own
        assert {p for p, _ in fake.learned_globally} == {0, 1, 2, 3} - own
        # Whatever each read ahead, both hand over the one merged order.
        assert fake.handed == merged_order(bus)
    assert a.positions is b.positions
    assert a.positions == {(TOPIC, p): 40 for p in range(PARTITIONS)}


@pytest.mark.parametrize("batch_size", [1, 7, 500])
def test_one_member_hands_over_the_order_a_group_does(batch_size: int) -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 30)
    alone = InProcessRunner(bus, GlobalLearner(), [TOPIC], batch_size, restore_to_committed=True)
    alone.drain()
    assert learner(alone).handed == merged_order(bus)


def test_records_arriving_meanwhile_wait_for_the_partitions_they_are_merged_with() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 5)
    a, b = group(bus)
    drain(a, b)
    produce(bus, 5, first_time=100)  # more arrives while they run
    drain(a, b)
    for runner in (a, b):
        assert learner(runner).handed == merged_order(bus)
        assert learner(runner).seen() == every_record(bus)


def test_a_partition_behind_holds_the_merge_back() -> None:
    """Owned records are not handed over (nor committed) while another partition may still
    bring earlier ones; the records read ahead wait, bounded, and are not lost."""
    bus = InProcessBus(PARTITIONS)
    produce(bus, 20)
    a, _ = group(bus, batch_size=10)
    a.poll_global = lambda: []  # type: ignore[method-assign]  # the global reads stall
    for _ in range(5):
        a.step()
    assert learner(a).handed == [] and a.batches_committed == 0
    assert a.positions == {}  # nothing committed: a crash now loses nothing
    del a.poll_global
    a.drain()
    assert learner(a).handed == merged_order(bus)


def test_a_global_poll_keeps_the_owned_pace_per_partition() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 50)
    a, _ = group(bus, batch_size=10)
    # Two of four partitions owned: an owned batch is 10 records of 2 partitions, a global
    # poll 20 records of the 2 others (streamrec.transport.global_reader.poll_limit).
    assert len(a.poll_global()) == 20
    a.revoke([0, 1])
    assert len(a.poll_global()) == 40  # owning nothing: batch_size per partition


def test_a_revoked_partition_is_read_globally_again_from_its_committed_position() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 80)
    a, b = group(bus)
    while a.positions.get((TOPIC, 0), 0) < 10:
        a.step(), b.step()
    committed = a.positions[(TOPIC, 0)]
    assert 0 < committed < 80
    handed_before = len(learner(a).handed)

    a.revoke([0])
    assert a.global_positions.get((TOPIC, 0), 0) <= committed
    b.assign([0, 2, 3])  # b takes p0 over from where a committed it
    drain(a, b)

    fake = learner(a)
    assert fake.seen() == every_record(bus)  # nothing of p0 lost, nothing twice
    again = [o for p, o in fake.handed[handed_before:] if p == 0]
    assert again == list(range(committed, 80))  # from the committed position, in order
    other = learner(b)
    assert other.restored[0] == committed
    # b learned p0 globally before it owned it; from the committed position it processes
    # it: records between the two reach it twice (why the item-side table is idempotent).
    seen = other.seen()
    assert set(seen) == set(every_record(bus)) and max(seen.values()) <= 2
    assert all(o >= committed for (p, o), n in seen.items() if n > 1 and p == 0)
    assert {p for (p, _), n in seen.items() if n > 1} <= {0}


def test_a_crash_reads_again_what_was_not_handed_over_and_loses_nothing() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 40)
    a, b = group(bus)
    while not a.global_positions or min(a.positions.get((TOPIC, p), 0) for p in (0, 1)) < 5:
        a.step(), b.step()
    committed = {p: a.positions[(TOPIC, p)] for p in (0, 1)}
    handed = dict(a.global_positions)
    a.crash()
    assert a.failed_sessions == 1
    for p in (2, 3):  # what was handed over stays learned
        assert a.global_positions[(TOPIC, p)] == handed[(TOPIC, p)]
    for p in (0, 1):
        assert a.positions[(TOPIC, p)] == committed[p]
    drain(a, b)
    fake = learner(a)
    assert fake.seen() == every_record(bus)
    assert max(fake.seen().values()) == 1


def test_a_batch_raising_on_a_global_record_fails_the_session_and_loses_nothing() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 12)
    a, b = group(bus)
    learner(a).raise_on_global = 2  # the batch, then its global records on their own
    with pytest.raises(RuntimeError, match="a bug in learning a global record"):
        for _ in range(20):
            a.step()
    assert a.failed_sessions == 1 and a.batches_committed == 0
    drain(a, b)
    assert learner(a).seen() == every_record(bus)


def test_a_processor_without_global_topics_gets_its_batches_as_polled() -> None:
    class OwnedOnly(GlobalLearner):
        global_topics = ()

    bus = InProcessBus(PARTITIONS)
    produce(bus, 5)
    runner = InProcessRunner(bus, OwnedOnly(), [TOPIC], 10, restore_to_committed=True)
    assert runner.merge is None
    assert runner.drain() == 20
    assert learner(runner).learned_globally == [] and runner.global_positions == {}
