"""A click whose processing always raises, on a real broker: dead-lettered, the rest exactly once."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from consumers.ingest import IngestProcessor
from online_models.user_state import decode_state
from producers.synthetic import SyntheticStream
from streamrec.events import (DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, BadEvent,
                              decode_click, encode_click, headers_dict)
from streamrec.records import ProcessResult, Record
from streamrec.runtime import ProcessorService
from support import (applied_events, assert_offsets_applied_once, latest_by_key, produce_raw,
                     read_topic, running_service)

pytestmark = pytest.mark.kafka

POISON_ID = "poison"


def _is_poison(record: Record) -> bool:
    try:
        return decode_click(record.value).event_id == POISON_ID
    except BadEvent:
        return False


class PoisonedIngest(IngestProcessor):
    """Ingest with a bug that one click triggers every time, after half the batch is applied.

    The whole batch is applied first (states and models mutated), then it raises: without
    a restore, re-processing would find the batch's clicks already applied.
    """

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.totals: Counter[str] = Counter()

    def process(self, batch: list[Record]) -> ProcessResult:
        result = super().process(batch)
        if any(_is_poison(record) for record in batch):
            self.totals["raised"] += 1
            raise RuntimeError(f"injected bug: cannot process event {POISON_ID!r}\nsecond line")
        # Only calls that return count: their outputs are what gets committed.
        self.totals["processed"] += result.processed
        self.totals["duplicates"] += result.skipped_duplicates
        return result


def test_a_poisoned_click_is_dead_lettered_and_every_other_click_applied_exactly_once(kafka_settings):
    settings = kafka_settings.replace(batch_size=200)
    assert settings.partitions == 4
    events = list(SyntheticStream(n_users=120, n_items=300, n_events=1_000, seed=21).events())
    victim = events[450]
    poison = msgspec.structs.replace(victim, event_id=POISON_ID, item_id="poison-item")
    first_wave = [(e.user_id.encode(), encode_click(e)) for e in events[:600]]
    first_wave.insert(300, (poison.user_id.encode(), encode_click(poison)))
    second_wave = [(e.user_id.encode(), encode_click(e)) for e in events[600:]]

    processor = PoisonedIngest(settings)
    service = ProcessorService(processor, settings, input_topics=[settings.topics.clicks],
                               group_id=settings.ingest_group, instance_id="poison-0")
    produce_raw(settings, settings.topics.clicks, first_wave)
    with running_service(service):
        dead = read_topic(settings, settings.topics.dlq, expect=1, timeout_s=120)
        read_topic(settings, settings.topics.user_state,
                   until=lambda rs: applied_events(rs) >= 600, idle_s=0.0, timeout_s=120)
        # The partition of the poisoned click keeps moving: later clicks flow as before.
        produce_raw(settings, settings.topics.clicks, second_wave)
        records = read_topic(settings, settings.topics.user_state,
                             until=lambda rs: applied_events(rs) >= len(events), timeout_s=120)
        assert not service.stopping

    # Never a failed session: the poisoned batch was handled inside the session.
    assert service.recovery.total == 0 and service.records_dead_lettered == 1
    assert processor.totals["raised"] == 1 + service.poison_pill.max_attempts
    (letter,) = dead
    headers = headers_dict(letter.headers)
    assert (letter.key, letter.value) == (poison.user_id.encode(), encode_click(poison))
    assert headers[DLQ_REASON] == "processing_error"
    assert headers[DLQ_DETAIL] == f"RuntimeError: injected bug: cannot process event {POISON_ID!r}"
    offsets = [int(headers[DLQ_PARTITION]), int(headers[DLQ_OFFSET])]
    assert offsets[1] >= 0

    # Every valid click applied exactly once; the poisoned one never.
    final = {r.key.decode(): decode_state(r.value) for r in latest_by_key(records).values()}
    expected = Counter(e.user_id for e in events)
    assert {u: s.event_count for u, s in final.items()} == dict(expected)
    assert all("poison-item" not in s.recent_items for s in final.values())
    assert_offsets_applied_once(records)
    # The half-applied batch was restored away: no click was found already applied, and
    # the committed calls processed each valid click once.
    assert processor.totals["duplicates"] == 0
    assert processor.totals["processed"] == len(events)
