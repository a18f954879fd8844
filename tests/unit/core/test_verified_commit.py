"""A commit counts only once verified: the runtime on fake Kafka clients, one fault per cause.

The fake producer carries kafka-python's own ``TransactionManager`` and drives it the way
kafka-python 3.0.12 does, including the bug that made this necessary: after a send fails
with ``InvalidProducerEpoch`` the client bumps its epoch (the broker aborts the open
transaction), and ``commit_transaction`` then returns normally having committed nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, NamedTuple

import pytest
from kafka import errors as kafka_errors
from kafka import TopicPartition as KafkaTopicPartition
from kafka.future import Future
from kafka.producer.transaction_manager import (
    ProducerIdAndEpoch,
    TransactionManager,
    TransactionState,
)

from streamrec.transport import kafka_clients
from streamrec.transport import runtime as runtime_module
from streamrec.config import Settings
from streamrec.metrics.registry import MetricsRegistry
from streamrec.metrics.service import KNOWN_COMMIT_FAILURE_CAUSES, service_metrics
from streamrec.processor import ProcessorDefaults
from streamrec.records import Output, ProcessResult, Record
from streamrec.transport.runtime import ProcessorService
from streamrec.transport.verified_commit import (
    BAD_STATE,
    CAUSES,
    COMMIT_RAISED,
    OFFSETS_FAILED,
    SEND_FAILED,
    UnverifiedCommit,
    check_status,
    transaction_status,
)

IN, STATE = "in", "state"
PARTITIONS = (0, 1)
# 6 clicks per partition, polled 3 at a time (at most 2 per partition): batches span both.
CLICKS = {p: [f"u{p}{i % 2}".encode() for i in range(6)] for p in PARTITIONS}
EXPECTED = {p: Counter(keys) for p, keys in CLICKS.items()}
FAULTY_TRANSACTION = 2  # the transaction after the second commit goes wrong (3 records)


class SendFuture(Future):
    """A send's future; ``get`` as kafka-python's ``FutureRecordMetadata`` (never blocks here)."""

    def get(self, timeout=None):  # type: ignore[no-untyped-def]
        if not self.is_done:
            raise kafka_errors.KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
        if self.failed():
            raise self.exception
        return self.value


class Message(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: int = 0
    headers: tuple = ()


class CountingProcessor(ProcessorDefaults):
    """Clicks per user and partition; every change is emitted as the user's new count."""

    changelog_topic = STATE
    rejected_by_reason: Counter[str] = Counter()
    skipped_by_reason: Counter[tuple[str, str]] = Counter()

    def __init__(self) -> None:
        self.state: dict[int, Counter[bytes]] = {}
        self.processed = 0
        self.restores: list[int] = []
        self.drops: list[list[int]] = []
        # Sizes of the batches processed before the first drop (the first session's).
        self.first_session_batches: list[int] = []

    def restore(self, partition: int, changelog: list[Record]) -> int:
        self.restores.append(partition)
        counts: Counter[bytes] = Counter()
        for record in changelog:
            counts[record.key] = int(record.value)  # type: ignore[index, arg-type]
        self.state[partition] = counts
        return len(counts)

    def drop(self, partitions: list[int]) -> None:
        self.drops.append(list(partitions))
        for p in partitions:
            self.state.pop(p, None)

    def process(self, batch: list[Record]) -> ProcessResult:
        outputs = []
        for record in batch:
            counts = self.state[record.partition]  # KeyError: processing an unrestored partition
            counts[record.key] += 1  # type: ignore[index]
            outputs.append(Output(STATE, record.key, str(counts[record.key]).encode(),  # type: ignore[index]
                                  partition=record.partition))
        self.processed += len(batch)
        if not self.drops:
            self.first_session_batches.append(len(batch))
        return ProcessResult(outputs=outputs, processed=len(batch))

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        return None


class FakeBroker:
    """Committed logs and offsets; only a commit the fake client really made lands here."""

    def __init__(self, fault: Callable[["FakeProducer", str], None] | None = None) -> None:
        self.logs: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {
            (IN, p): [(key, b"click") for key in keys] for p, keys in CLICKS.items()}
        self.logs.update({(STATE, p): [] for p in PARTITIONS})
        self.committed: dict[tuple[str, int], int] = {}
        self.epoch = 0
        self.sessions = 0
        self.polls = 0
        self.transactions_committed = 0
        self.aborts = 0
        self.fault = fault
        self.fault_fired = False
        self.service: ProcessorService | None = None

    def fire(self, producer: "FakeProducer", step: str) -> None:
        """Run the fault once, at ``step`` of the faulty transaction."""
        if (self.fault is not None and not self.fault_fired
                and self.transactions_committed == FAULTY_TRANSACTION):
            self.fault(producer, step)

    def read_changelog(self, settings, topic, partitions, stops=None, start_offsets=None):  # type: ignore[no-untyped-def]
        return {p: [Record(topic, p, i, k, v) for i, (k, v) in enumerate(self.logs[(topic, p)])]
                for p in partitions}


class FakeConsumer:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.listener = None
        self.positions: dict[KafkaTopicPartition, int] = {}

    def subscribe(self, topics, listener):  # type: ignore[no-untyped-def]
        self.listener = listener

    def poll(self, timeout_ms: int, max_records: int):  # type: ignore[no-untyped-def]
        self.broker.polls += 1
        if self.broker.polls > 200:  # stalled (a lost batch is never committed): end the run
            self.broker.service.stop()  # type: ignore[union-attr]
        if not self.positions:  # the first poll joins the group and gets every partition
            tps = [KafkaTopicPartition(IN, p) for p in PARTITIONS]
            self.positions = {tp: self.broker.committed.get((IN, tp.partition), 0) for tp in tps}
            self.listener.on_partitions_assigned(tps)  # type: ignore[union-attr]
            return {}
        polled: dict[KafkaTopicPartition, list[Message]] = {}
        budget = max_records
        for tp, position in self.positions.items():
            log = self.broker.logs[(IN, tp.partition)]
            take = log[position:position + max(0, min(budget, 2))]
            if take:
                polled[tp] = [Message(IN, tp.partition, position + i, k, v) for i, (k, v) in enumerate(take)]
                self.positions[tp] = position + len(take)
                budget -= len(take)
        if not polled and all(self.broker.committed.get((IN, p), 0) == len(CLICKS[p]) for p in PARTITIONS):
            self.broker.service.stop()  # type: ignore[union-attr]
        return polled

    def assignment(self):  # type: ignore[no-untyped-def]
        return set(self.positions)

    def committed(self, tp):  # type: ignore[no-untyped-def]
        return self.broker.committed.get((tp.topic, tp.partition))

    def group_metadata(self) -> str:
        return "group"

    def highwater(self, tp):  # type: ignore[no-untyped-def]
        return len(self.broker.logs[(tp.topic, tp.partition)])

    def position(self, tp):  # type: ignore[no-untyped-def]
        return self.positions[tp]

    def seek(self, tp, offset):  # type: ignore[no-untyped-def]
        self.positions[tp] = offset

    def close(self) -> None:
        pass


class FakeProducer:
    """A transactional producer on kafka-python's real ``TransactionManager``, no network."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self._transaction_manager = TransactionManager(
            transactional_id="tx", transaction_timeout_ms=15_000, api_version=(4, 0))
        self.pending: list[tuple[str, int, bytes, bytes, Future]] = []
        self.offsets: dict = {}
        self.flush_timeout_error = False

    @property
    def manager(self) -> TransactionManager:
        return self._transaction_manager

    def init_transactions(self) -> None:
        self.broker.epoch += 1  # a new session fences the old one
        self.manager._transition_to(TransactionState.INITIALIZING)
        self.manager.set_producer_id_and_epoch(ProducerIdAndEpoch(7, self.broker.epoch))
        self.manager._transition_to(TransactionState.READY)

    def begin_transaction(self) -> None:
        self.manager.begin_transaction()
        self.manager._transaction_started = True

    def send(self, topic, key=None, value=None, headers=None, partition=None):  # type: ignore[no-untyped-def]
        if self.pending:
            self.broker.fire(self, "second_send")
        self.manager._fail_if_not_ready_for_send()
        future = SendFuture()
        self.pending.append((topic, partition, key, value, future))
        return future

    def send_offsets_to_transaction(self, offsets, group_metadata) -> None:  # type: ignore[no-untyped-def]
        self.broker.fire(self, "offsets")
        self.offsets = dict(offsets)

    def flush(self, timeout=None) -> None:  # type: ignore[no-untyped-def]
        self.broker.fire(self, "flush")
        if self.flush_timeout_error:
            raise kafka_errors.KafkaTimeoutError("Timeout waiting for future")
        for *_, future in self.pending:
            if not future.is_done:
                future.success(None)

    def fail_first_send(self) -> None:
        """The broker refuses the first send: kafka-python records the error, then fails it."""
        self.broker.fault_fired = True
        error = kafka_errors.MessageSizeTooLargeError()
        self.manager.transition_to_abortable_error(error)
        self.pending[0][-1].failure(error)

    def bump_epoch(self) -> None:
        """kafka-python's KIP-360 recovery: the broker aborts the transaction, state -> READY."""
        self.manager._transition_to(TransactionState.BUMPING_PRODUCER_EPOCH)
        self.manager._transaction_started = False
        self.broker.epoch += 1
        self.manager.set_producer_id_and_epoch(ProducerIdAndEpoch(7, self.broker.epoch))
        self.manager._complete_epoch_bump()

    def commit_transaction(self) -> None:
        self.manager.begin_commit()
        self.broker.fire(self, "commit")
        if self.manager._current_state != TransactionState.COMMITTING_TRANSACTION \
                or not self.manager._transaction_started:
            return  # what kafka-python 3.0.12 does: return normally, commit nothing
        self.broker.transactions_committed += 1
        for topic, partition, key, value, _ in self.pending:
            self.broker.logs[(topic, partition)].append((key, value))
        for tp, offset in self.offsets.items():
            self.broker.committed[(tp.topic, tp.partition)] = offset.offset
        self.pending.clear()
        self.manager._complete_transaction()

    def abort_transaction(self) -> None:
        self.manager.begin_abort()
        self.broker.aborts += 1
        self.pending.clear()
        self.manager._complete_transaction()

    def close(self, timeout=None) -> None:  # type: ignore[no-untyped-def]
        pass


def run_service(monkeypatch: pytest.MonkeyPatch, broker: FakeBroker):  # type: ignore[no-untyped-def]
    def new_consumer(settings, **kwargs):  # type: ignore[no-untyped-def]
        broker.sessions += 1
        assert broker.sessions <= 5, "the service never converged"
        return FakeConsumer(broker)

    monkeypatch.setattr(kafka_clients, "consumer", new_consumer)
    monkeypatch.setattr(kafka_clients, "producer", lambda settings, **kwargs: FakeProducer(broker))
    monkeypatch.setattr(runtime_module, "read_changelog", broker.read_changelog)
    processor = CountingProcessor()
    registry = MetricsRegistry()
    metrics = service_metrics(registry, "ingest")
    service = ProcessorService(processor, Settings(batch_size=3), input_topics=[IN],
                               group_id="g", instance_id="i", metrics=metrics,
                               backoff_s=0.0, max_backoff_s=0.0)
    broker.service = service
    service.run()
    return service, processor, metrics, registry


def durable_counts(broker: FakeBroker) -> dict[int, Counter[bytes]]:
    counts: dict[int, Counter[bytes]] = {}
    for p in PARTITIONS:
        counts[p] = Counter()
        for key, value in broker.logs[(STATE, p)]:
            counts[p][key] = int(value)
    return counts


def failures_by_cause(metrics) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {cause: metrics.commit_failures.labels(cause=cause).value for cause in CAUSES}


def test_success_path_commits_every_batch_and_counts_no_failure(monkeypatch):
    broker = FakeBroker()
    service, processor, metrics, registry = run_service(monkeypatch, broker)
    assert broker.sessions == 1 and broker.aborts == 0
    assert service.batches_committed == broker.transactions_committed == 5
    assert durable_counts(broker) == EXPECTED and processor.state == EXPECTED
    assert processor.processed == sum(len(keys) for keys in CLICKS.values())
    assert set(failures_by_cause(metrics).values()) == {0.0}
    assert metrics.commits.value == 5
    assert 'streamrec_commit_failures_total{cause="send_failed",service="ingest"} 0.0' in registry.render()


def _send_fails_and_epoch_bumps(producer: FakeProducer, step: str) -> None:
    if step == "flush":
        producer.broker.fault_fired = True
        producer.pending[0][-1].failure(kafka_errors.InvalidProducerEpochError())
        producer.bump_epoch()


def _commit_returns_after_epoch_bump(producer: FakeProducer, step: str) -> None:
    if step == "commit":  # the bug: EndTxn "completed" without being sent
        producer.broker.fault_fired = True
        producer.bump_epoch()


def _commit_returns_with_abortable_error(producer: FakeProducer, step: str) -> None:
    if step == "commit":
        producer.broker.fault_fired = True
        producer.manager.transition_to_abortable_error(kafka_errors.KafkaError("aborted"))


def _commit_returns_while_still_committing(producer: FakeProducer, step: str) -> None:
    if step == "commit":
        producer.broker.fault_fired = True
        producer.manager._transaction_started = False  # nothing committed, state not READY


def _commit_raises_fenced(producer: FakeProducer, step: str) -> None:
    if step == "commit":
        producer.broker.fault_fired = True
        producer.manager.transition_to_fatal_error(kafka_errors.ProducerFencedError())
        raise kafka_errors.ProducerFencedError()


def _offsets_raise(producer: FakeProducer, step: str) -> None:
    if step == "offsets":
        producer.broker.fault_fired = True
        raise kafka_errors.CommitFailedError("rebalanced")


def _send_fails_then_offsets_raise(producer: FakeProducer, step: str) -> None:
    # kafka-python records the transaction's error before it fails the record's future, so
    # the failed send surfaces first as a later call raising: the cause is still the send.
    if step == "offsets":
        producer.fail_first_send()
        raise kafka_errors.KafkaError("Cannot execute transactional method because we are in "
                                      "an error state")


def _first_send_fails_so_the_next_raises(producer: FakeProducer, step: str) -> None:
    if step == "second_send":
        producer.fail_first_send()


def _flush_times_out(producer: FakeProducer, step: str) -> None:
    if step == "flush":
        producer.broker.fault_fired = True
        producer.flush_timeout_error = True


@pytest.mark.parametrize("fault, cause, aborted", [
    (_send_fails_and_epoch_bumps, SEND_FAILED, False),  # READY after the bump: nothing to abort
    (_commit_returns_after_epoch_bump, BAD_STATE, False),
    (_commit_returns_with_abortable_error, BAD_STATE, True),
    (_commit_returns_while_still_committing, BAD_STATE, False),
    (_commit_raises_fenced, COMMIT_RAISED, False),  # fatal: abort refused
    (_offsets_raise, OFFSETS_FAILED, True),
    (_send_fails_then_offsets_raise, SEND_FAILED, True),
    (_first_send_fails_so_the_next_raises, SEND_FAILED, True),
    (_flush_times_out, SEND_FAILED, False),  # sends unresolved: abort not even tried
], ids=["send_failed", "epoch_bumped_in_commit", "abortable_error_after_commit",
        "not_ready_after_commit", "commit_raised", "offsets_failed", "send_failed_then_offsets_raised",
        "send_failed_then_send_raised", "flush_timed_out"])
def test_an_unverified_commit_fails_the_session_and_every_click_counts_once(
        monkeypatch, fault, cause, aborted):
    broker = FakeBroker(fault)
    service, processor, metrics, _ = run_service(monkeypatch, broker)

    assert broker.fault_fired
    # One failed session, then a fresh one from the committed state.
    assert broker.sessions == 2
    assert processor.drops == [list(PARTITIONS)]
    assert sorted(processor.restores) == sorted(list(PARTITIONS) * 2)
    assert broker.aborts == int(aborted)
    # Nothing of the failed batch was counted as committed, and nothing of it is durable:
    # every click counted exactly once, the failed batch re-processed from the changelog.
    assert service.batches_committed == broker.transactions_committed == 5
    assert durable_counts(broker) == EXPECTED and processor.state == EXPECTED
    # Re-processed: exactly what the failed session processed after its last commit, the
    # failed batch (3 records) and, when the fault came in the commit's tail (flush, commit:
    # it runs while the loop processes the next batch), that next batch, never sent.
    after_last_commit = processor.first_session_batches[FAULTY_TRANSACTION:]
    assert after_last_commit[0] == 3 and len(after_last_commit) <= 2
    assert processor.processed == sum(len(keys) for keys in CLICKS.values()) + sum(after_last_commit)
    assert metrics.commits.value == 5
    assert failures_by_cause(metrics) == {c: float(c == cause) for c in CAUSES}
    assert service.recovery.total == 1 and service.recovery.consecutive == 0


def test_the_metric_creates_every_cause_the_runtime_raises():
    assert CAUSES == KNOWN_COMMIT_FAILURE_CAUSES


def test_transaction_status_reads_this_kafka_python_version():
    """The one place that reads kafka-python privates: this fails first on an upgrade."""
    producer = FakeProducer(FakeBroker())
    assert transaction_status(producer).state == "UNINITIALIZED"
    producer.init_transactions()
    ready = transaction_status(producer)
    assert (ready.state, ready.error, ready.producer_id, ready.epoch) == ("READY", None, 7, 1)
    producer.begin_transaction()
    began = transaction_status(producer)
    check_status(began, began, "IN_TRANSACTION")
    error = kafka_errors.KafkaError("boom")
    producer.manager.transition_to_abortable_error(error)
    status = transaction_status(producer)
    assert status.state == "ABORTABLE_ERROR" and status.error is error
    with pytest.raises(UnverifiedCommit) as raised:
        check_status(status, began, "IN_TRANSACTION")
    assert raised.value.cause == BAD_STATE and raised.value.__cause__ is error
    # A producer that is not transactional at all is never a verified commit.
    assert transaction_status(type("P", (), {"_transaction_manager": None})()).state == "NOT_TRANSACTIONAL"


def test_a_transactional_call_that_is_never_answered_gives_up_in_time():
    from streamrec.transport.verified_commit import TransactionCallTimeout, bounded_call
    import threading
    import time as clock

    never = threading.Event()
    started = clock.monotonic()
    with pytest.raises(TransactionCallTimeout, match="wait not answered within 0 s"):
        bounded_call(never.wait, 0.2)
    assert clock.monotonic() - started < 5.0
    never.set()  # release the helper thread


def test_a_transactional_call_that_raises_raises_in_the_caller():
    from streamrec.transport.verified_commit import bounded_call

    def fenced() -> None:
        raise kafka_errors.ProducerFencedError()

    with pytest.raises(kafka_errors.ProducerFencedError):
        bounded_call(fenced, 5.0)
    calls: list[int] = []
    bounded_call(calls.append, 5.0, 7)
    assert calls == [7]
