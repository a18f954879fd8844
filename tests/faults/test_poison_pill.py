"""A click whose processing always raises, on a real broker: dead-lettered, the rest exactly once."""

from __future__ import annotations

import json
from collections import Counter

import msgspec
import pytest

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.partition_models import SNAPSHOT_KEY
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.online_models.user_state import decode_state
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import (DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, BadEvent,
                              decode_click, encode_click, headers_dict)
from streamrec.records import ProcessResult, Record
from streamrec.transport.runtime import ProcessorService
from support import (applied_events, assert_offsets_applied_once, ingest_service, latest_by_key,
                     produce_raw, read_topic, running_service, score_service, trigger_ids)

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
    a restore, re-processing would find the batch's clicks already applied. Re-learning
    the click on a restore (rewarm) raises too, as the same bug would.
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

    def rewarm(self, partition: int, records) -> None:  # type: ignore[no-untyped-def]
        records = list(records)
        if any(_is_poison(record) for record in records):
            self.totals["rewarm_raised"] += 1
            raise RuntimeError("injected bug: cannot re-learn the poisoned event")
        super().rewarm(partition, records)


def test_a_poisoned_click_is_dead_lettered_and_every_other_click_applied_exactly_once(kafka_settings):
    settings = kafka_settings.replace(batch_size=200)
    assert settings.partitions == 4
    events = list(SyntheticStream(n_users=120, n_items=300, n_events=1_000, seed=21).events())
    victim = events[450]
    poison = msgspec.structs.replace(victim, event_id=POISON_ID, item_id="poison-item")
    first_wave = [(e.user_id.encode(), encode_click(e)) for e in events[:600]]
    first_wave.insert(300, (poison.user_id.encode(), encode_click(poison)))
    second_wave = [(e.user_id.encode(), encode_click(e)) for e in events[600:]]

    def new_service(processor: PoisonedIngest) -> ProcessorService:
        return ingest_service(settings, "poison-0", processor=processor)

    processor = PoisonedIngest(settings)
    service = new_service(processor)
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

    # A restart restores every partition and re-learns the committed clicks since the
    # models' last snapshot (none yet: all of them), the dead-lettered one included: it
    # raises there too, is skipped, and the partition restores and moves on.
    restarted = PoisonedIngest(settings)
    late = [msgspec.structs.replace(e, event_id=f"late-{i}", ts=e.ts + 1e6)
            for i, e in enumerate(events[:50])]
    produce_raw(settings, settings.topics.clicks,
                ((e.user_id.encode(), encode_click(e)) for e in late))
    service = new_service(restarted)
    with running_service(service):
        records = read_topic(settings, settings.topics.user_state,
                             until=lambda rs: applied_events(rs) >= len(events) + len(late),
                             timeout_s=120)
    assert restarted.totals["rewarm_raised"] == 1 and service.recovery.total == 0
    final = {r.key.decode(): decode_state(r.value) for r in latest_by_key(records).values()}
    assert {u: s.event_count for u, s in final.items()} == dict(expected + Counter(
        e.user_id for e in late))
    assert_offsets_applied_once(records)


class PoisonedScore(ScoreProcessor):
    """A scorer with a bug that one request and one user state trigger every time."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.raised = 0

    def _poisoned(self, record: Record) -> bool:
        if record.topic == self.topics.requests:
            return b'"r-poison"' in (record.value or b"")
        if record.key == SNAPSHOT_KEY or not record.value:
            return False
        return decode_state(record.value).last_event_id == "poison-state"

    def process(self, batch: list[Record], publish: bool = True) -> ProcessResult:
        result = super().process(batch, publish)
        if any(self._poisoned(record) for record in batch):
            self.raised += 1
            raise KeyError("injected bug in ranking")
        return result


def test_the_scorer_dead_letters_a_poisoned_request_and_skips_a_poisoned_state(kafka_settings):
    # No online models: every click's state is emitted once (no re-emission by micro-batches).
    settings = kafka_settings.replace(online_learning=0)
    events = list(SyntheticStream(n_users=40, n_items=100, n_events=300, seed=5).events())
    victim = events[-1]
    poison = msgspec.structs.replace(victim, event_id="poison-state", ts=victim.ts + 1)
    events.append(poison)  # the victim's last click: its state names it as the last event
    produce_raw(settings, settings.topics.clicks,
                ((e.user_id.encode(), encode_click(e)) for e in events))
    requests = {name: json.dumps({"request_id": name, "user_id": events[i].user_id}).encode()
                for name, i in (("r-ok", 3), ("r-poison", 4))}

    scorer = PoisonedScore(settings)
    service = score_service(settings, "poison-score", processor=scorer)
    with running_service(ingest_service(settings)), running_service(service):
        states = read_topic(settings, settings.topics.user_state,
                            until=lambda rs: applied_events(rs) >= len(events), timeout_s=120)
        produce_raw(settings, settings.topics.requests,
                    ((json.loads(v)["user_id"].encode(), v) for v in requests.values()))
        expected = (trigger_ids(states) - {"poison-state"}) | {"r-ok"}
        recommendations = read_topic(settings, settings.topics.recommendations,
                                     expect=len(expected), timeout_s=120)
        dead = read_topic(settings, settings.topics.dlq, expect=1, timeout_s=60)

    assert service.recovery.total == 0 and scorer.raised == 2 * (1 + service.poison_pill.max_attempts)
    answered = [recommendation_decoder.decode(r.value).trigger_id for r in recommendations]
    assert sorted(answered) == sorted(expected), "exactly one recommendation per good trigger"
    (letter,) = dead
    assert letter.value == requests["r-poison"]
    headers = headers_dict(letter.headers)
    assert headers[DLQ_REASON] == "processing_error"
    assert headers[DLQ_DETAIL] == "KeyError: 'injected bug in ranking'"
    assert scorer.skipped_by_reason == Counter(  # type: ignore[attr-defined]
        {(settings.topics.user_state, "processing_error"): 1})
