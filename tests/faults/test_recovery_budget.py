"""The recovery budget on a real broker: spread-out failures survived, a streak ends the service."""

from __future__ import annotations

import threading

import pytest

from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from support import (applied_events, assert_offsets_applied_once, ingest_service, produce_raw,
                     read_topic, reference_states, running_service)
from test_ingest_crashes import _final_states

pytestmark = pytest.mark.kafka

# Fast backoff: the budget, not the waiting, is under test.
FAST = {"max_recoveries": 10, "backoff_s": 0.05, "max_backoff_s": 0.2}


def test_fifteen_transient_failures_with_progress_between_do_not_end_the_service(kafka_settings):
    settings = kafka_settings.replace(batch_size=60)
    events = list(SyntheticStream(n_users=200, n_items=200, n_events=3_000, seed=12).events())
    expected = reference_states(settings, events)
    failed_at: list[int] = []

    def fail_every_other_batch(batch) -> None:
        # Fail once at each odd count of committed batches: each failure is followed by a
        # successful retry and one more committed batch before the next one.
        committed = service.batches_committed
        if committed % 2 == 1 and committed not in failed_at and len(failed_at) < 15:
            failed_at.append(committed)
            raise ConnectionError("injected: commit_transaction failed")

    service = ingest_service(settings, "budget-spread", before_commit=fail_every_other_batch,
                             **FAST)
    produce_raw(settings, settings.topics.clicks,
                ((e.user_id.encode(), encode_click(e)) for e in events))
    with running_service(service):
        records = read_topic(settings, settings.topics.user_state,
                             until=lambda rs: applied_events(rs) >= len(events), timeout_s=240)
        assert not service.stopping

    assert len(failed_at) == 15 > service.max_recoveries
    assert service.recovery.total == 15 and service.recovery.consecutive == 0
    assert _final_states(records) == expected
    assert_offsets_applied_once(records)


def test_eleven_consecutive_failures_end_the_service(kafka_settings):
    settings = kafka_settings.replace(batch_size=60)
    events = list(SyntheticStream(n_users=50, n_items=50, n_events=300, seed=13).events())
    attempts: list[int] = []

    def always_fail(batch) -> None:
        attempts.append(len(batch))
        raise ConnectionError("injected: commit_transaction failed")

    service = ingest_service(settings, "budget-streak", before_commit=always_fail, **FAST)
    produce_raw(settings, settings.topics.clicks,
                ((e.user_id.encode(), encode_click(e)) for e in events))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(240)
    alive = thread.is_alive()
    service.stop()
    thread.join(60)
    assert not alive, "the service kept retrying a failure that never heals"
    assert len(errors) == 1 and isinstance(errors[0], ConnectionError)
    # The first session plus max_recoveries retries, all failing: the 11th ends it.
    assert len(attempts) == service.max_recoveries + 1 == 11
    assert service.batches_committed == 0 and service.recovery.consecutive == 11
