"""Every member of a group learns every partition of its global topics (streamrec.transport.global_reader).

Three ``ProcessorService`` members of one group share a 4-partition topic; a fake processor
learns its own partitions through ``process`` and ignores their global records (as the
scorer's item-side table does), and learns every other record through ``learn_global``.

Three, not two: the handover seek happens on the member that *drops* a partition, and only
a member owning part of the topic reads it globally faster than it processes it (a global
poll takes ``batch_size`` per owned partition's share, ``poll_limit``). With the range
assignor over members ``m0 < m1 < m2``, ``m1`` owns partition 2 alone; when ``m0`` stops,
``m1`` takes partitions 0 and 1 and hands 2 to ``m2``.
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
    """Logs what reaches it; ``process_s`` slows the owned path down."""

    def __init__(self, topic: str, process_s: float = 0.0) -> None:
        self.changelog_topic = topic  # as the scorer's: the input is its changelog
        self.global_topics = (topic,)
        self.process_s = process_s
        self.owned: set[int] = set()
        self.processed: list[tuple[int, int]] = []
        self.fed: list[tuple[int, int]] = []
        self.learned_globally: list[tuple[int, int]] = []
        self.restored: Counter[int] = Counter()
        # Per drop: (partitions, records processed of each, records fed of each) at that moment.
        self.drops: list[tuple[list[int], dict[int, int], dict[int, int]]] = []
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
                               {p: sum(q == p for q, _ in self.processed) for p in partitions},
                               {p: sum(q == p for q, _ in self.fed) for p in partitions}))
            self.owned -= set(partitions)

    def process(self, batch: list[Record]) -> ProcessResult:
        time.sleep(self.process_s)
        with self._lock:
            assert all(r.partition in self.owned for r in batch)
            self.processed.extend((r.partition, r.offset) for r in batch)
        return ProcessResult(processed=len(batch))

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        return None

    def learn_global(self, records: list[Record]) -> None:
        with self._lock:
            self.fed.extend((r.partition, r.offset) for r in records)
            self.learned_globally.extend((r.partition, r.offset) for r in records
                                         if r.partition not in self.owned)

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
    learners = {name: GlobalLearner(topic, process_s=0.2 if name == "m1" else 0.0)
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
                # m1 reads partition 2 globally four times as fast as it processes it.
                wait_for(lambda: sum(p == 2 for p, _ in m1.fed) == RECORDS
                         and len(learners["m0"].seen()) == RECORDS, 60,
                         "the global readers of m0 and m1 to read partition 2")
            # m0 left: m1 takes 0 and 1, m2 takes 2 from where m1 committed it.
            wait_for(lambda: services["m1"].partitions_held == [0, 1]
                     and services["m2"].partitions_held == [2, 3], 60, "the handover")
            wait_for(lambda: len(m1.seen()) == RECORDS and len(m2.processed) > 0
                     and max(o for _, o in m2.processed) == RECORDS - 1, 60,
                     "both members to see every record")
            time.sleep(1.0)  # anything extra (a duplicate) would arrive now
    finally:
        kafka_admin.delete_topics([topic])

    every = Counter((2, o) for o in range(RECORDS))
    [(dropped, processed, fed)] = m1.drops[drops_before:]
    committed, ahead = processed[2], fed[2]
    assert dropped == [2] and 0 < committed < ahead == RECORDS  # the seek had work to do
    assert services["m1"].global_reader.rewinds == rewinds_before + 1  # type: ignore[union-attr]

    # m1: processed up to the committed offset, then learned the rest globally, from exactly
    # there: every record once.
    assert m1.processed == [(2, o) for o in range(committed)]
    assert m1.learned_globally == [(2, o) for o in range(committed, RECORDS)]
    assert m1.seen() == every
    fed_twice = {key for key, n in Counter(m1.fed).items() if n == 2}
    assert fed_twice == {(2, o) for o in range(committed, RECORDS)}
    assert max(Counter(m1.fed).values()) == 2

    # m2 learned partition 2 globally, then restored it up to m1's commit and processed the
    # rest: everything reached it, and what it processed it processed once.
    assert m2.restored[2] == committed
    assert m2.processed == [(2, o) for o in range(committed, RECORDS)]
    assert set(m2.seen()) == set(every)
    assert set(learners["m0"].seen()) == set(every)
