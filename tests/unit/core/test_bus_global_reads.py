"""Global reads on the bus (streamrec.transport.bus_runner, item 7): every member sees every record.

Two runners of one group share a 4-partition topic, each owning two partitions. The fake
processor learns its own partitions through ``process`` and ignores their global records,
as the scorer's item-side table does; every other record it learns through ``learn_global``.
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
    """Logs what reaches it: processed (owned), fed globally, learned globally (not owned)."""

    changelog_topic = TOPIC  # as the scorer's: its input is its changelog
    global_topics = (TOPIC,)

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.processed: list[tuple[int, int]] = []
        self.fed: list[tuple[int, int]] = []
        self.learned_globally: list[tuple[int, int]] = []
        self.restored: Counter[int] = Counter()
        self.raise_next_learn = 0
        self.rejected_by_reason: Counter[str] = Counter()
        self.skipped_by_reason: Counter[tuple[str, str]] = Counter()

    def restore(self, partition: int, changelog: list[Record]) -> int:
        self.owned.add(partition)
        self.restored[partition] += len(changelog)
        return 0

    def drop(self, partitions: list[int]) -> None:
        self.owned -= set(partitions)

    def process(self, batch: list[Record]) -> ProcessResult:
        assert all(r.partition in self.owned for r in batch)
        self.processed.extend((r.partition, r.offset) for r in batch)
        return ProcessResult(processed=len(batch))

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        return None

    def learn_global(self, records: list[Record]) -> None:
        if self.raise_next_learn:
            self.raise_next_learn -= 1
            raise RuntimeError("a bug in learn_global")
        self.fed.extend((r.partition, r.offset) for r in records)
        self.learned_globally.extend((r.partition, r.offset) for r in records
                                     if r.partition not in self.owned)

    def seen(self) -> Counter[tuple[int, int]]:
        return Counter(self.processed + self.learned_globally)


def produce(bus: InProcessBus, per_partition: int) -> None:
    for i in range(per_partition):
        for p in range(PARTITIONS):
            bus.produce(Output(TOPIC, b"u%d" % p, b"%d" % i, partition=p))


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


def test_each_member_sees_every_partitions_records_exactly_once() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 23)
    a, b = group(bus)
    for _ in range(3):
        a.step(), b.step()
    produce(bus, 17)  # more arrives while they run
    drain(a, b)
    for runner, own in ((a, {0, 1}), (b, {2, 3})):
        fake = learner(runner)
        assert fake.seen() == every_record(bus)
        assert Counter(fake.fed) == every_record(bus)  # every partition fed once, owned too
        assert {p for p, _ in fake.processed} == own
        assert {p for p, _ in fake.learned_globally} == {0, 1, 2, 3} - own
    assert a.positions is b.positions
    assert a.positions == {(TOPIC, p): 40 for p in range(PARTITIONS)}


def test_a_global_poll_keeps_the_owned_pace_per_partition() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 50)
    a, _ = group(bus, batch_size=10)
    # Two of four partitions owned: an owned batch is 10 records of 2 partitions, a global
    # poll 20 records of 4 (streamrec.transport.global_reader.poll_limit).
    assert a.learn_global() == 20
    a.revoke([0, 1])
    assert a.learn_global() == 40  # owning nothing: batch_size per partition


def test_a_revoked_partition_is_fed_again_exactly_from_its_committed_position() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 80)
    a, b = group(bus)
    for _ in range(3):
        a.learn_global()  # the global reads run ahead of the owned ones
    for _ in range(3):
        a.step(), b.step()
    committed, ahead = a.positions[(TOPIC, 0)], a.global_positions[(TOPIC, 0)]
    assert 0 < committed < ahead < 80
    fed_before = len(learner(a).fed)

    a.revoke([0])
    assert a.global_positions[(TOPIC, 0)] == committed
    b_ahead = b.global_positions[(TOPIC, 0)]
    b.assign([0, 2, 3])  # b takes p0 over from where a committed it
    drain(a, b)

    fake = learner(a)
    assert fake.seen() == every_record(bus)  # nothing of p0 lost, nothing twice
    refed = [o for p, o in fake.fed[fed_before:] if p == 0]
    assert refed == list(range(committed, 80))  # from the committed position, in order
    fed = Counter(fake.fed)
    assert {key for key, n in fed.items() if n > 1} == {(0, o) for o in range(committed, ahead)}
    assert max(fed.values()) == 2

    # b learned p0 globally up to b_ahead, then processes it from the committed position:
    # exactly those records reach it twice (why the processor's table must be idempotent).
    other = learner(b)
    assert other.restored[0] == committed
    seen = other.seen()
    assert set(seen) == set(every_record(bus))
    assert {key for key, n in seen.items() if n > 1} == {(0, o) for o in range(committed, b_ahead)}


def test_a_crash_feeds_its_partitions_again_from_committed_and_keeps_the_others() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 40)
    a, b = group(bus)
    for _ in range(3):
        a.learn_global()
    for _ in range(2):
        a.step(), b.step()
    committed = {p: a.positions[(TOPIC, p)] for p in (0, 1)}
    before = dict(a.global_positions)
    assert any(before[(TOPIC, p)] > committed[p] for p in (0, 1))

    a.crash()
    assert a.failed_sessions == 1
    for p in (0, 1):
        assert a.global_positions[(TOPIC, p)] == min(before[(TOPIC, p)], committed[p])
    for p in (2, 3):  # not owned: the processor learned them, nothing to read again
        assert a.global_positions[(TOPIC, p)] == before[(TOPIC, p)]
    drain(a, b)

    fake = learner(a)
    assert fake.seen() == every_record(bus)
    fed = Counter(fake.fed)
    assert {key for key, n in fed.items() if n == 2} == {
        (p, o) for p in (0, 1) for o in range(committed[p], before[(TOPIC, p)])}
    assert max(fed.values()) == 2


def test_learn_global_raising_fails_the_session_and_the_records_are_fed_again() -> None:
    bus = InProcessBus(PARTITIONS)
    produce(bus, 12)
    a, b = group(bus)
    learner(a).raise_next_learn = 1
    with pytest.raises(RuntimeError, match="a bug in learn_global"):
        a.step()
    assert a.failed_sessions == 1 and a.global_positions == {} and a.batches_committed == 0
    assert a.held == [0, 1] and learner(a).owned == {0, 1}  # recovered: restored again
    drain(a, b)
    assert learner(a).seen() == every_record(bus)
    assert Counter(learner(a).fed) == every_record(bus)


def test_a_processor_without_global_topics_is_fed_nothing() -> None:
    class OwnedOnly(GlobalLearner):
        global_topics = ()

    bus = InProcessBus(PARTITIONS)
    produce(bus, 5)
    runner = InProcessRunner(bus, OwnedOnly(), [TOPIC], 10, restore_to_committed=True)
    assert runner.drain() == 20
    assert learner(runner).fed == [] and runner.global_positions == {}
