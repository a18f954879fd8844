"""``GlobalReader`` positions: kept across sessions, moved only once learned, moved back on
drop, new partitions found (streamrec.transport.global_reader), against a fake consumer."""

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
        self.closed = False

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


def test_every_partition_is_read_from_the_beginning_and_kept_once_learned(logs) -> None:  # type: ignore[no-untyped-def]
    reader = GlobalReader(Settings(), [TOPIC], client_id="c")
    reader.open()
    assert reader.partitions == 2 and reader.lag() == 10
    learned: list[Record] = []
    assert reader.feed(learned.extend, 7) == 7
    assert keys(learned) == [(0, o) for o in range(5)] + [(1, 0), (1, 1)]
    assert reader.positions == {(TOPIC, 0): 5, (TOPIC, 1): 2} and reader.lag() == 3


def test_records_whose_learning_raised_are_fed_again_by_the_next_session(logs) -> None:  # type: ignore[no-untyped-def]
    reader = GlobalReader(Settings(), [TOPIC], client_id="c")
    reader.open()
    reader.feed(lambda records: None, 6)  # p0 whole, p1 offset 0

    def broken(records: list[Record]) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        reader.feed(broken, 3)
    assert reader.positions == {(TOPIC, 0): 5, (TOPIC, 1): 1}  # not moved
    reader.close()
    reader.open()  # a new session: seeks to the kept positions, not the beginning
    learned: list[Record] = []
    reader.feed(learned.extend, 100)
    assert keys(learned) == [(1, o) for o in range(1, 5)]


def test_rewind_moves_back_only_what_was_read_past_the_offset(logs) -> None:  # type: ignore[no-untyped-def]
    reader = GlobalReader(Settings(), [TOPIC], client_id="c")
    reader.open()
    reader.feed(lambda records: None, 7)  # p0 at 5, p1 at 2
    reader.rewind({(TOPIC, 0): 3, (TOPIC, 1): 4})
    assert reader.positions == {(TOPIC, 0): 3, (TOPIC, 1): 2} and reader.rewinds == 1
    learned: list[Record] = []
    reader.feed(learned.extend, 100)  # the live consumer was sought back too
    assert keys(learned) == [(0, 3), (0, 4), (1, 2), (1, 3), (1, 4)]
    # Never read (a new process): nothing to move back, it starts from the beginning.
    fresh = GlobalReader(Settings(), [TOPIC], client_id="d")
    fresh.rewind({(TOPIC, 0): 0})
    assert fresh.positions == {} and fresh.rewinds == 0


def test_partitions_added_later_are_read_from_the_beginning(logs) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]
    reader = GlobalReader(Settings(), [TOPIC], client_id="c", refresh_s=5.0, clock=lambda: now[0])
    reader.open()
    reader.feed(lambda records: None, 100)
    logs[TOPIC].append([b"new-0", b"new-1"])
    assert reader.feed(lambda records: None, 100) == 0  # not looked for yet
    now[0] = 5.0
    learned: list[Record] = []
    assert reader.feed(learned.extend, 100) == 2
    assert keys(learned) == [(2, 0), (2, 1)] and reader.partitions == 3
    assert reader.positions[(TOPIC, 0)] == 5  # the others kept their positions
