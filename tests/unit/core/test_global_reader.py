"""``GlobalReader`` positions: kept across sessions, moved only for records handed over, set
to the committed offset on drop, new partitions found, owned partitions paused
(streamrec.transport.global_reader), against a fake consumer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition as TP

from streamrec.transport import global_reader
from streamrec.config import Settings
from streamrec.transport.global_reader import GlobalReader
from streamrec.records import Record

TOPIC = "user-state"


class FakeConsumer:
    """A group-less consumer over ``logs[topic][partition]`` (a list of values)."""

    def __init__(self, logs: dict[str, list[list[bytes]]], config: dict[str, Any]) -> None:
        self.logs, self.config = logs, config
        self.assigned: list[TP] = []
        self.positions: dict[TP, int] = {}
        self.paused_set: set[TP] = set()
        self.closed = False

    def pause(self, *tps: TP) -> None:
        self.paused_set |= set(tps)

    def resume(self, *tps: TP) -> None:
        self.paused_set -= set(tps)

    def paused(self) -> set[TP]:
        return set(self.paused_set)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(len(self.logs.get(topic, []))))

    def assign(self, partitions: list[TP]) -> None:
        self.assigned = list(partitions)
        self.positions = {tp: o for tp, o in self.positions.items() if tp in partitions}

    def seek(self, tp: TP, offset: int) -> None:
        self.positions[tp] = offset

    def seek_to_beginning(self, tp: TP) -> None:
        self.positions[tp] = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[TP, list[SimpleNamespace]]:
        assert timeout_ms == 0  # the loop never waits on the global reader
        out: dict[TP, list[SimpleNamespace]] = {}
        for tp in self.assigned:
            if tp in self.paused_set:
                continue
            room = max_records - sum(map(len, out.values()))
            start = self.positions[tp]
            values = self.logs[tp.topic][tp.partition][start:start + room]
            if values:
                out[tp] = [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=start + i,
                                           key=b"k", value=v, timestamp=0, headers=None)
                           for i, v in enumerate(values)]
                self.positions[tp] = start + len(values)
        return out

    def position(self, tp: TP, timeout_ms: int | None = None) -> int:
        return self.positions[tp]

    def highwater(self, tp: TP) -> int:
        return len(self.logs[tp.topic][tp.partition])

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[list[bytes]]]:
    logs: dict[str, list[list[bytes]]] = {TOPIC: [[b"%d-%d" % (p, i) for i in range(5)]
                                                  for p in range(2)]}
    consumers: list[FakeConsumer] = []

    def consumer(settings: Settings, *topics: str, **config: Any) -> FakeConsumer:
        assert not topics and config["group_id"] is None
        assert config["isolation_level"] == "read_committed"
        assert config["enable_auto_commit"] is False
        consumers.append(FakeConsumer(logs, config))
        return consumers[-1]

    monkeypatch.setattr(global_reader.kafka_clients, "consumer", consumer)
    return logs


def keys(records: list[Record]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


def test_every_partition_is_read_from_the_beginning_marked_not_owned(logs) -> None:  # type: ignore[no-untyped-def]
    reader = GlobalReader(Settings(), [TOPIC], client_id="g")
    reader.open()
    records = reader.poll(7)
    assert keys(records) == [(0, o) for o in range(5)] + [(1, 0), (1, 1)]
    assert not any(record.owned for record in records)
    assert reader.positions == {}  # read, not handed over yet
    reader.handed_over(records[:3])
    assert reader.positions == {(TOPIC, 0): 3}
    assert reader.caught_up(global_reader.TopicPartition(TOPIC, 0))
    assert not reader.caught_up(global_reader.TopicPartition(TOPIC, 1))


def test_what_was_not_handed_over_is_read_again_by_the_next_session(logs) -> None:  # type: ignore[no-untyped-def]
    reader = GlobalReader(Settings(), [TOPIC], client_id="g")
    reader.open()
    records = reader.poll(6)  # p0 whole, p1 offset 0
    reader.handed_over(records[:5])  # p1/0 stayed in the merge when the session failed
    reader.close()
    reader.open()
    assert keys(reader.poll(100)) == [(1, o) for o in range(5)]


def test_owned_partitions_are_paused_and_left_out(logs) -> None:  # type: ignore[no-untyped-def]
    reader = GlobalReader(Settings(), [TOPIC], client_id="g")
    reader.open()
    owned = [global_reader.TopicPartition(TOPIC, 0)]
    assert keys(reader.poll(100, held=owned, paused=owned)) == [(1, o) for o in range(5)]
    assert keys(reader.poll(100)) == [(0, o) for o in range(5)]  # no longer owned: resumed


def test_rewind_sets_the_committed_offset(logs) -> None:  # type: ignore[no-untyped-def]
    reader = GlobalReader(Settings(), [TOPIC], client_id="g")
    reader.open()
    reader.handed_over(reader.poll(7))  # p0 at 5, p1 at 2
    reader.rewind({(TOPIC, 0): 3, (TOPIC, 1): 4})
    assert reader.positions == {(TOPIC, 0): 3, (TOPIC, 1): 4} and reader.rewinds == 2
    # The live consumer was sought too.
    assert keys(reader.poll(100)) == [(0, 3), (0, 4), (1, 4)]


def test_partitions_added_later_are_read_from_the_beginning(logs) -> None:  # type: ignore[no-untyped-def]
    clock = [0.0]
    reader = GlobalReader(Settings(), [TOPIC], client_id="g", clock=lambda: clock[0])
    reader.open()
    reader.handed_over(reader.poll(100))
    logs[TOPIC].append([b"new-0", b"new-1"])
    assert reader.poll(100) == []  # not looked for yet
    clock[0] += global_reader.REFRESH_S
    records = reader.poll(100)
    assert keys(records) == [(2, 0), (2, 1)] and reader.partitions == 3
