"""EventTimeMerge (streamrec.transport.event_time): one release order, whatever the arrival order."""

from __future__ import annotations

import random

import pytest

from streamrec.transport.event_time import EventTimeMerge
from streamrec.records import Record, TopicPartition

PARTITIONS = [TopicPartition("s", p) for p in range(4)]


def log_of(seed: int, per_partition: int = 30) -> dict[TopicPartition, list[Record]]:
    """Event times rising unevenly per partition, some equal across partitions, some
    records (snapshots, bad data) without a time."""
    rng = random.Random(seed)
    logs: dict[TopicPartition, list[Record]] = {}
    for tp in PARTITIONS:
        t, records = 0, []
        for offset in range(per_partition):
            t += rng.choice([0, 1, 1, 2, 5])
            value = b"" if rng.random() < 0.1 else b"%d" % t
            records.append(Record(tp.topic, tp.partition, offset, b"k", value))
        logs[tp] = records
    return logs


def event_time(record: Record) -> float | None:
    return float(record.value) if record.value else None


def release_all(logs: dict[TopicPartition, list[Record]], rng: random.Random,
                max_records: int | None) -> list[tuple[int, int]]:
    """Feed the logs in random chunks, in random partition order, taking as it goes."""
    merge = EventTimeMerge(event_time, idle_s=float("inf"))
    merge.track(PARTITIONS)
    read = {tp: 0 for tp in PARTITIONS}
    released: list[tuple[int, int]] = []

    def caught_up(tp: TopicPartition) -> bool:
        return read[tp] >= len(logs[tp])

    while any(not caught_up(tp) for tp in PARTITIONS) or len(merge):
        tp = rng.choice(PARTITIONS)
        chunk = rng.randint(0, 7)
        merge.add(logs[tp][read[tp]:read[tp] + chunk])
        read[tp] = min(len(logs[tp]), read[tp] + chunk)
        released.extend((r.partition, r.offset) for r in merge.take(caught_up, max_records))
    return released


@pytest.mark.parametrize("seed", range(20))
def test_the_release_order_is_a_function_of_the_logs_alone(seed: int) -> None:
    logs = log_of(seed)
    orders = {tuple(release_all(logs, random.Random(seed * 100 + trial), max_records))
              for trial, max_records in enumerate([None, 1, 3, 10, None, 2])}
    assert len(orders) == 1
    [order] = orders
    assert sorted(order) == sorted((tp.partition, o) for tp in PARTITIONS
                                   for o in range(len(logs[tp])))
    for tp in PARTITIONS:  # each partition in its own order
        offsets = [o for p, o in order if p == tp.partition]
        assert offsets == sorted(offsets)


def test_the_smallest_event_time_goes_first_ties_by_partition() -> None:
    merge = EventTimeMerge(event_time, idle_s=float("inf"))
    merge.add([Record("s", 1, 0, b"k", b"5"), Record("s", 1, 1, b"k", b"6")])
    merge.add([Record("s", 0, 0, b"k", b"5"), Record("s", 0, 1, b"k", b"")])  # no time: 5
    released = merge.take(lambda tp: True)
    assert [(r.partition, r.offset) for r in released] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_an_empty_partition_not_caught_up_holds_everything_back() -> None:
    merge = EventTimeMerge(event_time, idle_s=float("inf"))
    merge.track(PARTITIONS[:2])
    merge.add([Record("s", 0, 0, b"k", b"9")])
    assert merge.take(lambda tp: tp.partition == 0) == []
    assert len(merge) == 1 and merge.first_offsets() == {PARTITIONS[0]: 0}
    assert len(merge.take(lambda tp: True)) == 1


def test_release_stops_where_a_partition_runs_empty_before_its_end() -> None:
    merge = EventTimeMerge(event_time, idle_s=float("inf"))
    merge.add([Record("s", 0, 0, b"k", b"1"), Record("s", 0, 1, b"k", b"3")])
    merge.add([Record("s", 1, 0, b"k", b"2")])
    # p1 has more to come: after its record at 2, the record at 3 of p0 must wait.
    released = merge.take(lambda tp: tp.partition == 0)
    assert [(r.partition, r.offset) for r in released] == [(0, 0), (1, 0)]


def test_a_partition_idle_past_the_bound_is_passed_over_then_waited_for_again() -> None:
    now = [0.0]
    merge = EventTimeMerge(event_time, idle_s=2.0, clock=lambda: now[0])
    merge.track(PARTITIONS[:2])
    merge.add([Record("s", 0, 0, b"k", b"1")])
    never = lambda tp: False  # noqa: E731 - p1 never catches up (an open transaction)
    assert merge.take(never) == []
    now[0] = 1.9
    assert merge.take(never) == []
    now[0] = 2.0
    assert len(merge.take(never)) == 1 and merge.idle_passes == 1
    merge.add([Record("s", 0, 1, b"k", b"2")])
    assert len(merge.take(never)) == 1 and merge.idle_passes == 1  # still passed over
    merge.add([Record("s", 1, 0, b"k", b"0")])  # p1 brought a record: the wait ends
    merge.add([Record("s", 0, 2, b"k", b"3")])
    assert [r.partition for r in merge.take(never)] == [1]  # then p1 holds back again


def test_counted_records_bound_a_take_and_discard_returns_where_to_read_again() -> None:
    merge = EventTimeMerge(event_time, idle_s=float("inf"))
    merge.add([Record("s", 0, o, b"k", b"%d" % o) for o in range(5)])
    merge.add([Record("s", 1, o, b"k", b"%d" % o, owned=False) for o in range(5)])
    taken = merge.take(lambda tp: True, max_records=2, counts=lambda r: r.owned)
    assert [(r.partition, r.offset) for r in taken] == [(0, 0), (1, 0), (0, 1)]
    assert merge.discard([PARTITIONS[0], PARTITIONS[2]]) == {PARTITIONS[0]: 2}
    assert merge.buffered(PARTITIONS[0]) == 0 and merge.buffered(PARTITIONS[1]) == 4
