"""A processor's own state topic on a real broker (streamrec.transport.runtime ``_restore``).

``StateCounter`` (tests/state_counting.py) counts clicks per key and partition and writes
every count to ``scorer-state`` in the batch's transaction, pinned to the click's partition.
Whoever takes a partition must restore exactly the committed counts: not a batch aborted by
the ``before_commit`` hook, not the open transaction of a zombie, not a batch whose processing
raised (the poison-pill isolation restores it), and after a restart or a rebalance, everything
that was committed, partition by partition.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest

from streamrec.config import Settings
from streamrec.records import Record
from streamrec.transport import kafka_clients
from streamrec.transport.changelog import read_changelog
from streamrec.transport.runtime import ProcessorService
from state_counting import (POISON, StateCounter, decode_count, encode_count, expected_counts,
                            latest_counts)
from support import produce_raw, running_service, uncommitted_state

pytestmark = pytest.mark.kafka

KEYS = [f"u{i}".encode() for i in range(20)]  # all four partitions get some
ALL = [0, 1, 2, 3]
BOGUS = 1_000_000  # a zombie's count: restored, it would show


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def produce_clicks(settings: Settings, n: int, start: int = 0) -> None:
    produce_raw(settings, settings.topics.clicks,
                ((KEYS[i % len(KEYS)], b"click") for i in range(start, start + n)))


def clicks(settings: Settings) -> list[Record]:
    """Every click on the input, as committed (a plain producer: all of it)."""
    return [r for records in read_changelog(settings, settings.topics.clicks, ALL).values()
            for r in records]


def counter_service(settings: Settings, instance: str, **options: object
                    ) -> tuple[ProcessorService, StateCounter]:
    t = settings.topics
    # user-state stands in for the changelog (empty here): scorer-state is restored before it.
    processor = StateCounter(t.scorer_state, t.user_state)
    service = ProcessorService(processor, settings, input_topics=[t.clicks],  # type: ignore[arg-type]
                               group_id=settings.score_group_id, instance_id=instance,
                               backoff_s=0.2, **options)  # type: ignore[arg-type]
    return service, processor


def all_counted(processor: StateCounter, settings: Settings, partitions: list[int] = ALL
                ) -> Callable[[], bool]:
    def done() -> bool:
        want = expected_counts(clicks(settings), partitions=ALL)
        held = processor.snapshot()
        return all(held.get(p) == want[p] for p in partitions)
    return done


def test_a_transaction_aborted_by_before_commit_leaves_no_state_to_restore(kafka_settings):
    settings = kafka_settings.replace(batch_size=10)
    produce_clicks(settings, 200)
    failed: list[list[Record]] = []
    restores_before: list[int] = []

    def fail_once(batch: list[Record]) -> None:
        if service.batches_committed >= 3 and not failed:
            failed.append(batch)
            restores_before.append(len(processor.restored))
            time.sleep(0.3)  # the batch's state records reach the log before the abort
            raise RuntimeError("injected: the transaction is aborted")

    service, processor = counter_service(settings, "aborting", before_commit=fail_once)
    with running_service(service):
        wait_for(lambda: bool(failed) and all_counted(processor, settings)(), 60,
                 "the failed batch, then every click counted")
    everything = expected_counts(clicks(settings), partitions=ALL)
    assert processor.snapshot() == everything  # every click once, the aborted batch included

    # The aborted batch's state records are in the log, marked aborted...
    aborted = {(r.partition, r.offset) for r in failed[0]}
    written = {(r.partition, decode_count(r.value)[1]) for r in uncommitted_state(settings, ALL)
               if r.value is not None}
    assert aborted <= written
    # ... and the next session's restore, of every partition, saw none of them: it rebuilt
    # exactly the counts of the clicks before the aborted batch (committed before it began).
    second = processor.restored[restores_before[0]:restores_before[0] + len(ALL)]
    assert sorted(p for p, _, _ in second) == ALL
    stops = {}
    for p, counts, sources in second:
        assert not {(p, o) for o in sources} & aborted
        stops[p] = max(sources, default=-1) + 1
        failed_here = [o for q, o in aborted if q == p]
        if failed_here:
            assert stops[p] == min(failed_here)  # the committed position, exactly
    restored = {p: counts for p, counts, _ in second}
    assert restored == expected_counts(clicks(settings), stops, ALL)
    assert latest_counts(r for records in read_changelog(
        settings, settings.topics.scorer_state, ALL).values() for r in records) == everything


def test_a_restart_restores_exactly_the_committed_counts_not_a_zombies(kafka_settings):
    settings = kafka_settings.replace(batch_size=25)
    produce_clicks(settings, 300)
    first, counted = counter_service(settings, "first")
    with running_service(first):
        wait_for(all_counted(counted, settings), 60, "every click counted")
    committed = expected_counts(clicks(settings), partitions=ALL)
    state_records = sum(map(len, read_changelog(settings, settings.topics.scorer_state,
                                                ALL).values()))

    # A zombie of the next instance (its transactional id) left a transaction open on every
    # partition of the state topic.
    zombie = kafka_clients.producer(settings, transactional_id=(
        f"{settings.transactional_id_prefix}-{settings.score_group_id}-second"))
    zombie.init_transactions()
    zombie.begin_transaction()
    for p in ALL:
        zombie.send(settings.topics.scorer_state, key=b"u0", value=encode_count(BOGUS, BOGUS),
                    partition=p)
    zombie.flush(10)
    try:
        # Still open: a read_committed restore stops before it (the last stable offset) and
        # does not wait for it.
        started = time.monotonic()
        open_read = read_changelog(settings, settings.topics.scorer_state, ALL)
        assert time.monotonic() - started < 10
        assert latest_counts(r for rs in open_read.values() for r in rs) == committed

        second, fresh = counter_service(settings, "second")  # fences the zombie
        with running_service(second):
            wait_for(lambda: sorted(p for p, _, _ in fresh.restored) == ALL, 30, "the restore")
            assert {p: counts for p, counts, _ in fresh.restored} == committed
            assert second.records_restored == state_records  # the changelog is empty here
            produce_clicks(settings, 100, start=300)
            wait_for(all_counted(fresh, settings), 60, "the new clicks counted")
    finally:
        zombie.close(timeout=1)
    everything = expected_counts(clicks(settings), partitions=ALL)
    assert fresh.snapshot() == everything
    assert latest_counts(r for records in read_changelog(
        settings, settings.topics.scorer_state, ALL).values() for r in records) == everything


def test_a_rebalance_restores_the_moved_partitions_state_on_the_new_owner(kafka_settings):
    settings = kafka_settings.replace(batch_size=25, session_timeout_s=6.0)
    produce_clicks(settings, 300)
    first, kept = counter_service(settings, "m0")
    second, moved = counter_service(settings, "m1")
    with running_service(first):
        wait_for(all_counted(kept, settings), 60, "every click counted by the first member")
        committed = expected_counts(clicks(settings), partitions=ALL)
        with running_service(second):
            wait_for(lambda: bool(second.partitions_held) and bool(first.partitions_held)
                     and sorted(first.partitions_held + second.partitions_held) == ALL, 60,
                     "the partitions shared by both members")
            taken = second.partitions_held
            # The new owner restored its partitions, and only those, to what was committed.
            assert {p for p, _, _ in moved.restored} == set(taken)
            assert {p: counts for p, counts, _ in moved.restored} == {p: committed[p]
                                                                      for p in taken}
            assert sorted(kept.snapshot()) == first.partitions_held  # it dropped the rest
            produce_clicks(settings, 100, start=300)
            wait_for(all_counted(kept, settings, first.partitions_held), 60, "m0 counting")
            wait_for(all_counted(moved, settings, taken), 60, "m1 counting")
            held = {**kept.snapshot(), **moved.snapshot()}
    everything = expected_counts(clicks(settings), partitions=ALL)
    assert held == everything
    assert latest_counts(r for records in read_changelog(
        settings, settings.topics.scorer_state, ALL).values() for r in records) == everything


def test_the_isolation_after_a_raise_restores_the_committed_counts(kafka_settings):
    settings = kafka_settings.replace(batch_size=25)
    produce_clicks(settings, 120)
    produce_raw(settings, settings.topics.clicks, [(KEYS[0], POISON)])
    produce_clicks(settings, 120, start=120)
    [poisoned] = [r for r in clicks(settings) if r.value == POISON]
    service, processor = counter_service(settings, "isolating")
    raised: list[list[Record]] = []
    process = processor.process

    def watched(batch: list[Record]):  # type: ignore[no-untyped-def]
        try:
            return process(batch)
        except ValueError:
            if len(batch) > 1 and not raised:
                raised.append(batch)
            raise

    processor.process = watched  # type: ignore[method-assign]
    with running_service(service):
        wait_for(lambda: service.records_dead_lettered == 1
                 and all_counted(processor, settings)(), 60, "the poisoned click skipped")
    everything = expected_counts(clicks(settings), partitions=ALL)
    assert processor.snapshot() == everything  # the raised batch's clicks counted once
    first_session = len(ALL)
    isolation = processor.restored[first_session:]
    # The batch's partitions, then the poisoned one's after each of its 3 failures: every
    # time exactly the counts of the clicks committed before (the previous batch's pending
    # transaction settled first), which ends right before the poisoned click on the retries.
    assert [p for p, _, _ in isolation[-3:]] == [poisoned.partition] * 3
    for p, counts, sources in isolation:
        stop = max(sources, default=-1) + 1
        assert {p: counts} == {p: expected_counts(clicks(settings), {p: stop}, [p])[p]}
    assert [max(sources) + 1 for _, _, sources in isolation[-3:]] == [poisoned.offset] * 3
    # The first restore of each of the batch's partitions ends where the batch began.
    begins = {}
    for record in raised[0]:
        begins.setdefault(record.partition, record.offset)
    assert {p: max(sources, default=-1) + 1 for p, _, sources in isolation[:-3]} == begins
    assert latest_counts(r for records in read_changelog(
        settings, settings.topics.scorer_state, ALL).values() for r in records) == everything
