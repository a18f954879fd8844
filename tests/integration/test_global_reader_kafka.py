"""Every member of a group learns every partition of its global topics (streamrec.transport.global_reader,
streamrec.transport.aligned_input).

Three ``ProcessorService`` members of one group share a 4-partition topic; a fake processor
gets its own partitions' records as owned and every other partition's as global
(``Record.owned = False``), as the scorer's item-side table does.

Three, not two: with the range assignor over members ``m0 < m1 < m2``, ``m1`` owns
partition 2 alone; when ``m0`` stops, ``m1`` takes partitions 0 and 1 and hands 2 to ``m2``,
and from then on must read partition 2 globally from exactly where it committed it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Callable

import pytest

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.processor import ProcessorDefaults
from streamrec.records import Output, ProcessResult, Record
from streamrec.transport.runtime import ProcessorService
from support import new_topic, running_service

pytestmark = pytest.mark.kafka

RECORDS = 400  # all on partition 2


class GlobalLearner(ProcessorDefaults):
    """Logs what reaches it; ``process_s`` slows each batch down."""

    def __init__(self, topic: str, process_s: float = 0.0) -> None:
        self.changelog_topic = topic  # as the scorer's: the input is its changelog
        self.global_topics = (topic,)
        self.process_s = process_s
        self.owned: set[int] = set()
        self.processed: list[tuple[int, int]] = []
        self.learned_globally: list[tuple[int, int]] = []
        self.restored: Counter[int] = Counter()
        # Per drop: (partitions, records processed of each at that moment).
        self.drops: list[tuple[list[int], dict[int, int]]] = []
        self.rejected_by_reason: Counter[str] = Counter()
        self.skipped_by_reason: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def restore(self, partition: int, changelog: list[Record]) -> int:
        with self._lock:
            self.owned.add(partition)
            self.restored[partition] += len(changelog)
        return 0

    def drop(self, partitions: list[int]) -> None:
        with self._lock:
            self.drops.append((sorted(partitions),
                               {p: sum(q == p for q, _ in self.processed) for p in partitions}))
            self.owned -= set(partitions)

    def event_time(self, record: Record) -> float | None:
        return float(record.value) if record.value else None

    def process(self, batch: list[Record]) -> ProcessResult:
        time.sleep(self.process_s)
        with self._lock:
            for r in batch:
                assert r.owned == (r.partition in self.owned)
                (self.processed if r.owned else self.learned_globally).append(
                    (r.partition, r.offset))
        return ProcessResult(processed=len(batch))

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        return None

    def seen(self) -> Counter[tuple[int, int]]:
        with self._lock:
            return Counter(self.processed + self.learned_globally)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_dropped_partition_is_read_again_from_its_committed_offset(kafka_settings, kafka_bootstrap,
                                                                    kafka_admin):
    settings: Settings = kafka_settings.replace(batch_size=10, session_timeout_s=6.0)
    topic = new_topic(kafka_bootstrap, partitions=4, prefix=f"{settings.topic_prefix}global")
    group = f"{settings.topic_prefix}global"
    learners = {name: GlobalLearner(topic, process_s=0.25 if name == "m1" else 0.0)
                for name in ("m0", "m1", "m2")}
    services = {name: ProcessorService(fake, settings, input_topics=[topic], group_id=group,
                                       instance_id=name, restore_to_committed=True)
                for name, fake in learners.items()}
    m1, m2 = learners["m1"], learners["m2"]
    try:
        with running_service(services["m1"]), running_service(services["m2"]):
            with running_service(services["m0"]):
                wait_for(lambda: [s.partitions_held for s in services.values()]
                         == [[0, 1], [2], [3]], 60, "the three-member assignment")
                drops_before = len(m1.drops)  # the joins above moved partitions, no records
                rewinds_before = services["m1"].global_reader.rewinds  # type: ignore[union-attr]
                producer = kafka_clients.producer(settings)
                for i in range(RECORDS):
                    producer.send(topic, key=b"u", value=b"%d" % i, partition=2)
                producer.flush(30)
                producer.close()
                # m1 processes partition 2 slowly: stop m0 while it is half-way.
                wait_for(lambda: len(m1.processed) >= 50, 60, "m1 to process part of partition 2")
            # m0 left: m1 takes 0 and 1, m2 takes 2 from where m1 committed it.
            wait_for(lambda: services["m1"].partitions_held == [0, 1]
                     and services["m2"].partitions_held == [2, 3], 60, "the handover")
            wait_for(lambda: len(m1.seen()) == RECORDS and len(m2.processed) > 0
                     and max(o for _, o in m2.processed) == RECORDS - 1, 90,
                     "both members to see every record")
            time.sleep(1.0)  # anything extra (a duplicate) would arrive now
    finally:
        kafka_admin.delete_topics([topic])

    every = Counter((2, o) for o in range(RECORDS))
    [(dropped, processed)] = m1.drops[drops_before:]
    committed = processed[2]
    assert dropped == [2] and 0 < committed < RECORDS  # the handover had work to do
    assert services["m1"].global_reader.rewinds == rewinds_before + 1  # type: ignore[union-attr]

    # m1: processed up to the committed offset, then learned the rest globally, from exactly
    # there: every record once.
    assert m1.processed == [(2, o) for o in range(committed)]
    assert m1.learned_globally == [(2, o) for o in range(committed, RECORDS)]
    assert m1.seen() == every

    # m2 learned partition 2 globally, then restored it up to m1's commit and processed the
    # rest: everything reached it, and what it processed it processed once.
    assert m2.restored[2] == committed
    assert m2.processed == [(2, o) for o in range(committed, RECORDS)]
    assert set(m2.seen()) == set(every)
    m0_saw = len(learners["m0"].seen())  # until it stopped: a prefix of partition 2, once
    assert learners["m0"].seen() == Counter((2, o) for o in range(m0_saw))
