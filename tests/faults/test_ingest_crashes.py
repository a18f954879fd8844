"""Crashes of ingest on a real broker: kill -9 of one of two instances, and a failed commit."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from streamrec.online_models.user_state import decode_state
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from support import (applied_events, assert_offsets_applied_once, ingest_service, latest_by_key,
                     produce_raw, read_topic, reference_states, running_service, start_ingest_process)

pytestmark = pytest.mark.kafka


def _produce_in_slices(settings, events, slice_size: int, pause_s: float) -> threading.Thread:
    def produce() -> None:
        for i in range(0, len(events), slice_size):
            produce_raw(settings, settings.topics.clicks,
                        ((e.user_id.encode(), encode_click(e)) for e in events[i:i + slice_size]))
            time.sleep(pause_s)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    return thread


def _final_states(records) -> dict[str, dict]:
    return {r.key.decode(): decode_state(r.value).learned_view()
            for r in latest_by_key(records).values() if r.value is not None}


def test_kill_9_one_of_two_instances_then_restart_equals_uninterrupted_run(kafka_settings):
    settings = kafka_settings
    assert settings.partitions == 4
    events = list(SyntheticStream(n_users=2_000, n_items=1_000, n_events=50_000, seed=9).events())
    expected = reference_states(settings, events)

    first = start_ingest_process(settings, "kill-a")
    second = start_ingest_process(settings, "kill-b")
    producer = _produce_in_slices(settings, events, 5_000, 0.5)
    try:
        read_topic(settings, settings.topics.user_state, until=lambda rs: applied_events(rs) >= 12_000,
                   idle_s=0.0, timeout_s=120)
        first.send_signal(signal.SIGKILL)  # no flush, no commit, no leaving the group
        first.wait(30)
        # The survivor takes over the dead instance's partitions once its session expires.
        survivor_progress = read_topic(settings, settings.topics.user_state,
                                       until=lambda rs: applied_events(rs) >= 30_000,
                                       idle_s=0.0, timeout_s=120)
        assert applied_events(survivor_progress) >= 30_000
        restarted = start_ingest_process(settings, "kill-a")
        try:
            producer.join(120)
            records = read_topic(settings, settings.topics.user_state,
                                 until=lambda rs: applied_events(rs) >= len(events), timeout_s=180)
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.communicate(timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output

    assert _final_states(records) == expected
    assert_offsets_applied_once(records)


def test_failed_commit_is_not_visible_and_the_run_converges(kafka_settings):
    settings = kafka_settings.replace(batch_size=300)
    events = list(SyntheticStream(n_users=300, n_items=200, n_events=6_000, seed=4).events())
    expected = reference_states(settings, events)
    failed_batches: list[list] = []

    def fail_third_commit(batch) -> None:
        if service.batches_committed == 2 and not failed_batches:
            failed_batches.append(batch)
            raise ConnectionError("injected: commit_transaction failed")

    service = ingest_service(settings, "commit-fault", before_commit=fail_third_commit)
    totals = {"processed": 0, "skipped": 0}
    process = service.processor.process

    def counting_process(batch):
        result = process(batch)
        totals["processed"] += result.processed
        totals["skipped"] += result.skipped_duplicates
        return result

    service.processor.process = counting_process  # type: ignore[method-assign]
    produce_raw(settings, settings.topics.clicks, ((e.user_id.encode(), encode_click(e)) for e in events))
    with running_service(service):
        records = read_topic(settings, settings.topics.user_state,
                             until=lambda rs: applied_events(rs) >= len(events), timeout_s=120)

    assert failed_batches, "the fault was never injected"
    assert _final_states(records) == expected
    # The aborted transaction's states are invisible to read_committed readers, so every
    # offset shows up exactly once in the changelog.
    assert_offsets_applied_once(records)
    # After the failure the in-memory state was dropped and restored from the changelog,
    # which excludes the failed batch: its events were applied again (not skipped as
    # already applied), and every other event exactly once.
    assert totals["skipped"] == 0
    assert totals["processed"] == len(events) + len(failed_batches[0])
