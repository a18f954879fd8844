"""The consumer loop: bind a pure processor to Kafka with exactly-once commits.

The loop only polls, restores state for newly assigned partitions, hands the batch to the
processor, and commits. All business logic lives in the processor. Commit order for one
batch (the only place it is written down):

1. ``processor.process(batch)`` — pure: updates in-memory state, returns outputs.
2. once the previous batch's transaction has settled (below): ``begin_transaction`` and send
   every output (changelog states, the processor's own ``state_topic`` records, dead
   letters, recommendations). Nothing is visible to ``read_committed`` readers yet.
3. ``send_offsets_to_transaction`` with the next offset to read for every partition in
   the batch, tagged with the consumer's group metadata so a zombie from an older group
   generation is fenced.
4. flush, and require every send of step 2 to have succeeded and the client to still be in
   the transaction it began (same producer epoch, no recorded error);
5. ``commit_transaction`` — outputs and input offsets become durable atomically — and then
   require the client to be back in a clean ``READY`` state with the same epoch.

Steps 4 and 5 wait on the broker, so they run on a helper thread
(``streamrec.transport.pending_commit``) while the loop polls and processes the next batch
(step 1 of that batch); the loop settles the pending tail before it sends the next batch's
outputs, before a rebalance or a poison-pill isolation reads committed positions, when the
input is idle and when it stops. A batch counts as committed only once it is settled. Step 3
stays on the loop's thread, before the next poll: a poll may complete a rebalance, and the
offsets must be sent in the generation that read them.

Steps 4 and 5 exist because kafka-python can return from ``commit_transaction`` for a
transaction the broker aborted (``streamrec.transport.verified_commit``): a batch counts as committed
only once that is proven, and anything else raises ``UnverifiedCommit``, counted in
``commit_failures_total`` by cause.

If any step fails the transaction is aborted and the session is torn down: in-memory state
may be ahead of what is committed (by the batch being committed and the one processed
meanwhile), so it is dropped and restored from the changelog (and the processor's own
``state_topic``, read whole: its end is the committed position) by the next session, which
resumes from the committed offsets. Nothing is lost or applied twice.
Failed sessions are retried within a ``RecoveryBudget`` (consecutive failures, reset by
every committed batch; ``streamrec.transport.recovery_budget``).

If step 1 raises, the batch never reaches Kafka: the processor is pure, so the error is a
bug or a poisoned record, and retrying the batch would fail forever. The batch's
partitions are restored from the changelog and its records are processed one per
transaction; a record that keeps failing is dead-lettered (``streamrec.transport.poison_pill``).

A processor with ``global_topics`` also gets the partitions of them it does not own, through
a group-less reader (``streamrec.transport.global_reader``), merged with the owned ones in event-time
order (``streamrec.transport.aligned_input``); records read ahead and not yet handed over are never
committed. Only the owned records of a batch are committed; a batch of global records alone
needs no transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping, NamedTuple

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.structs import OffsetAndMetadata

from streamrec.transport import kafka_clients
from streamrec.transport.aligned_input import POLL_RECORDS, AlignedInput
from streamrec.transport.assignment import PartitionOwnership
from streamrec.transport.changelog import read_changelog
from streamrec.config import Settings
from streamrec.transport.global_reader import GlobalReader
from streamrec.transport.pending_commit import PendingCommit
from streamrec.transport.poison_pill import PoisonPillPolicy, process_in_isolation, raised_at
from streamrec.processor import Processor, check_state_topic, rewarm_each
from streamrec.records import ProcessResult, Record
from streamrec.transport.recovery_budget import RecoveryBudget
from streamrec.transport.service_health import ServiceProgress
from streamrec.transport.verified_commit import (
    BAD_STATE,
    COMMIT_RAISED,
    OFFSETS_FAILED,
    SEND_FAILED,
    TransactionCallTimeout,
    TransactionStatus,
    UnverifiedCommit,
    bounded_call,
    check_delivered,
    check_status,
    diagnose,
    force_close,
    transaction_status,
)

log = logging.getLogger(__name__)

# The broker aborts a transaction left open longer than this; a batch's sends that are not
# acknowledged within it cannot be committed anyway, so it also bounds the wait for them.
TRANSACTION_TIMEOUT_MS = 15_000
RECONNECT_BACKOFF_MAX_MS = 1_000


def _unanswered(cause: str, error: TransactionCallTimeout) -> UnverifiedCommit:
    # Not answered: the request may be lost, so an abort would not be answered either; the
    # next session's init_transactions (same transactional id) settles the transaction.
    return UnverifiedCommit(cause, str(error), can_abort=False)


class _SentBatch(NamedTuple):
    """A batch whose outputs and offsets are in its transaction: what steps 4-5 need."""

    futures: list
    began: TransactionStatus


class ProcessorService:
    """Runs one processor against Kafka until ``stop()``; recovers from failed sessions.

    ``max_recoveries`` failed sessions *in a row* are recovered from (backing off from
    ``backoff_s`` up to ``max_backoff_s``); a committed batch starts the count over.
    ``poison_pill`` says how often one record may raise before it is dead-lettered.
    ``static_membership`` joins the group as ``instance_id`` (``group.instance.id``): a
    restarted instance takes its partitions back without a rebalance, within
    ``settings.session_timeout_s``. ``progress`` is what ``/readyz`` judges.
    """

    def __init__(self, processor: Processor, settings: Settings, *, input_topics: list[str],
                 group_id: str, instance_id: str, restore_to_committed: bool = False,
                 metrics: object | None = None, max_recoveries: int = 10,
                 before_commit: Callable[[list[Record]], None] | None = None,
                 poison_pill: PoisonPillPolicy | None = None, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0,
                 send_timeout_s: float = TRANSACTION_TIMEOUT_MS / 1000,
                 static_membership: bool = False, keep_state_on_rebalance: bool = True) -> None:
        check_state_topic(processor, input_topics)
        self.processor = processor
        self.settings = settings
        self.input_topics = input_topics
        self.group_id = group_id
        self.instance_id = instance_id
        # The scorer's changelog *is* its input: restore only up to the committed offset,
        # or the records after it would be applied twice (once restored, once consumed).
        self.restore_to_committed = restore_to_committed
        self.metrics = metrics
        self.max_recoveries = max_recoveries
        self.recovery = RecoveryBudget(max_recoveries, backoff_s, max_backoff_s)
        self.poison_pill = poison_pill if poison_pill is not None else PoisonPillPolicy()
        # How long a batch's sends may take to be acknowledged before the batch is failed.
        self.send_timeout_s = send_timeout_s
        # Test hook for fault injection: called inside the transaction, before commit.
        self.before_commit = before_commit
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.batches_committed = 0
        self.records_dead_lettered = 0
        self.static_membership = static_membership
        self.keep_state_on_rebalance = keep_state_on_rebalance
        self.progress = ServiceProgress(settings.stall_after_s, settings.broker_silence_s)
        since_commit = getattr(metrics, "seconds_since_commit", None)
        if since_commit is not None:
            since_commit.set_function(self.progress.seconds_since_commit)
        # Restore work, for the rebalance measurements: partitions restored, records re-read.
        self.partitions_restored = 0
        self.records_restored = 0
        self._ownership = PartitionOwnership(input_topics)
        # Set once a session has reached the broker (its producer joined the transaction
        # coordinator): a first session that never gets there is misconfigured, not unlucky.
        self._connected = False
        # The transaction of the last batch sent (and the batch), finishing while the next
        # one is processed.
        self._pending: tuple[PendingCommit, list[Record]] | None = None
        # One per service, not per session: its positions outlive a failed session.
        self.global_reader = (
            GlobalReader(settings, processor.global_topics,
                         client_id=f"{group_id}-{instance_id}-global")
            if processor.global_topics else None)
        self.aligned = (
            AlignedInput(processor, self.global_reader, input_topics, settings.batch_size,
                         settings.event_time_idle_ms / 1000.0)
            if self.global_reader is not None else None)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def partitions_held(self) -> list[int]:
        """The partitions whose state this service holds now (restored and owned)."""
        return sorted(self._ownership.held)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_session()
                return
            except Exception as error:
                delay = self.recovery.next_delay(error, ever_connected=self._connected)
                if delay is None:
                    log.error("processing session failed and retrying cannot help; stopping",
                              extra={"error_type": type(error).__name__,
                                     "consecutive_failures": self.recovery.consecutive,
                                     "connected": self._connected})
                    raise
                log.exception("processing session failed; restarting from committed state",
                              extra={"consecutive_failures": self.recovery.consecutive,
                                     "failures": self.recovery.total, "backoff_s": delay})
                self._stop.wait(delay)

    # -- one session: a consumer, a transactional producer, and in-memory state -----------------
    def _run_session(self) -> None:
        # A new session holds nothing: the previous one's state was dropped when it failed.
        ownership = self._ownership = PartitionOwnership(self.input_topics,
                                                         keep=self.keep_state_on_rebalance)
        session_ms = int(self.settings.session_timeout_s * 1000)
        consumer = kafka_clients.consumer(
            self.settings, group_id=self.group_id,
            client_id=f"{self.group_id}-{self.instance_id}",
            enable_auto_commit=False, auto_offset_reset="earliest",
            # Inputs may be transactional outputs of another service: never read aborts.
            isolation_level="read_committed",
            max_poll_records=self.settings.batch_size,
            # Model snapshots on user-state can be several MB.
            max_partition_fetch_bytes=32 * 1024 * 1024,
            session_timeout_ms=session_ms, heartbeat_interval_ms=min(3000, session_ms // 3),
            # kafka-python backs reconnects off up to 30 s: after an outage the service would
            # sit idle that long once the broker is back.
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            # Static membership: the broker keeps this member's partitions for it across a
            # restart (until the session times out) instead of rebalancing twice.
            group_instance_id=self.instance_id if self.static_membership else None)
        consumer.subscribe(self.input_topics, listener=ownership)
        producer = kafka_clients.producer(
            self.settings,
            # A stable id per instance: a restarted instance fences its own zombie and
            # aborts the transaction it left open, instead of waiting for the timeout.
            transactional_id=f"{self.settings.transactional_id_prefix}-{self.group_id}-{self.instance_id}",
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS, linger_ms=5, batch_size=256 * 1024,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            max_request_size=32 * 1024 * 1024)
        try:
            producer.init_transactions()
            self._connected = True
            if self.aligned is not None:
                self.aligned.open()
            self.progress.session_began(consumer)
            self._loop(consumer, producer, ownership)
            self._settle()  # stopping: the last batch's transaction ends before the close
        except Exception as error:
            # A tail still running would race the abort below; its outcome no longer matters
            # (the session is failing and the next one restores from what is committed).
            self._settle(quietly=True)
            # With sends still unresolved an abort would wait for them without a bound; the
            # next session's init_transactions (same transactional id) aborts it instead.
            if not (isinstance(error, UnverifiedCommit) and not error.can_abort):
                self._abort_quietly(producer)
            # The in-memory state may be ahead of what was committed: forget all of it.
            self._drop(sorted(ownership.held | {tp.partition for tp in consumer.assignment()}),
                       ownership.vouched)
            raise
        finally:
            self._close(consumer, producer)

    def _loop(self, consumer: KafkaConsumer, producer: KafkaProducer,
              ownership: PartitionOwnership) -> None:
        waiting = False
        while not self._stop.is_set():
            # While the merge waits for records already on their way, the poll does not wait.
            polled = consumer.poll(timeout_ms=0 if waiting else self.settings.poll_timeout_ms,
                                   max_records=self.settings.batch_size if self.aligned is None
                                   else POLL_RECORDS)
            if ownership.changed:
                self._settle()  # the restore reads committed offsets and changelogs
                self._apply_rebalance(consumer, ownership)
            if consumer.assignment():
                # Ready = joined the group and restored what it owns (an instance with no
                # partitions, e.g. more instances than partitions, stays a standby).
                self.ready.set()
            batch = kafka_clients.to_records(polled)
            if self.aligned is not None:  # after the rebalance: it reads what is now owned
                batch, waiting = self.aligned.next_batch(consumer, ownership.held, batch)
                gauge = getattr(self.metrics, "global_reader_lag", None)
                if gauge is not None:
                    gauge.set(self.aligned.reader.lag())
            if not batch:
                self._settle()  # an idle input: record the last commit now, not at the next batch
                self._report_lag(consumer)
                continue
            self._process_and_commit(consumer, producer, batch)
            self._report_lag(consumer)

    def _apply_rebalance(self, consumer: KafkaConsumer, ownership: PartitionOwnership) -> None:
        """Drop what is no longer ours, restore what is new; keep what stayed (see assignment)."""
        def committed(topic: str, partition: int) -> int | None:
            return consumer.committed(KafkaTopicPartition(topic, partition))

        vouched = dict(ownership.vouched)  # reconcile forgets what it vouched for dropped ones
        change = ownership.reconcile(consumer.assignment(), committed)
        if self.aligned is not None:
            self.aligned.rebalanced(consumer, change.kept)
        if change.drop:
            self._drop(change.drop, vouched)
            if self.metrics is not None:
                for topic in self.input_topics:
                    for p in change.drop:
                        # A partition we no longer own must not report a frozen lag.
                        self.metrics.forget_partition(topic, p)  # type: ignore[attr-defined]
        if change.drop or change.restore:
            log.info("rebalanced", extra={"dropped": change.drop, "restoring": change.restore,
                                          "kept": change.kept})
        if change.restore:
            self._restore(consumer, change.restore)

    def _drop(self, partitions: list[int],
              vouched: Mapping[tuple[str, int], int | None]) -> None:
        """Forget these partitions' state; move the global reader back on them.

        ``vouched`` holds the committed offset each held partition's state reflects: the
        group's committed offset for a partition this member owned and committed (no one
        else commits it meanwhile), and no further than what this processor processed for
        one that was lost. The processor ignored the global records of a partition while it
        owned it, so the global reader must read it again from there (``GlobalReader.rewind``).
        """
        self.processor.drop(partitions)
        if self.aligned is not None and partitions:
            self.aligned.dropped(partitions, vouched)

    def _restore(self, consumer: KafkaConsumer, partitions: list[int]) -> None:
        """Rebuild these partitions' state (committed state): the processor's own state
        topic, then the changelog; then rewarm.

        Every path that restores comes here (a new assignment, the poison-pill isolation, a
        new session after a failed one), and each settles the pending transaction first
        (``_settle``), so what is read is what is committed.
        """
        # Nothing commits on partitions being restored: one lookup serves the changelog's
        # stop, the rewarm's stop and what the ownership vouches for. It comes before the
        # state topic is read: the consumer is read_committed, so kafka-python asks for
        # stable offsets (KIP-447), and a transaction still holding offsets of these
        # partitions has ended (with its state records) once the lookup returns.
        committed = {(topic, p): consumer.committed(KafkaTopicPartition(topic, p))
                     for topic in self.input_topics for p in partitions}
        changelog = self.processor.changelog_topic
        if self.aligned is not None:
            self.aligned.restoring(partitions)
        stops = None
        if self.restore_to_committed:  # the changelog is an input: stop where it is committed
            stops = {p: committed.get((changelog, p)) or 0 for p in partitions}
        started = time.monotonic()
        restored, own = self._restore_state(partitions)
        changelogs = read_changelog(self.settings, changelog, partitions, stops)
        restored += sum(self.processor.restore(p, records) for p, records in changelogs.items())
        replayed = self._rewarm(partitions, committed)
        for p in partitions:
            self._ownership.restored(p, {topic: committed[(topic, p)]
                                         for topic in self.input_topics})
        self.partitions_restored += len(partitions)
        self.records_restored += own + sum(map(len, changelogs.values())) + replayed
        log.info("restored state", extra={"partitions": partitions, "keys": restored,
                                          "replayed_inputs": replayed,
                                          "seconds": round(time.monotonic() - started, 3)})

    def _restore_state(self, partitions: list[int]) -> tuple[int, int]:
        """The processor's own ``state_topic``, whole: (keys restored, records read).

        Whole, with no stop offset: its records are written in the same transaction as the
        batch's input offsets, and read ``read_committed`` up to the last stable offset, so
        the end of each partition is exactly its committed position. A batch whose
        transaction aborted, or one still open in a fenced zombie, is past that end (or
        skipped as aborted), and the inputs it consumed are read again from the committed
        offsets. Called with an empty list for an empty partition, as the contract says.
        """
        topic = self.processor.state_topic
        if topic is None:
            return 0, 0
        states = read_changelog(self.settings, topic, partitions)
        keys = sum(self.processor.restore_state(p, states[p]) for p in partitions)
        return keys, sum(map(len, states.values()))

    def _rewarm(self, partitions: list[int],
                committed: dict[tuple[str, int], int | None]) -> int:
        """Re-feed inputs between a model snapshot and the committed offset to the models.

        Snapshots of the online models are taken every so many events, not every batch;
        the inputs since the snapshot were committed (their user states are restored) but
        the models must see them again, in the same order, to be exactly where they were.
        """
        topic = self.input_topics[0]
        starts: dict[int, int] = {}
        stops: dict[int, int] = {}
        for p in partitions:
            start = self.processor.rewarm_from(p)
            stop = committed[(topic, p)] or 0
            if start is not None and start < stop:
                starts[p], stops[p] = start, stop
        if not starts:
            return 0
        inputs = read_changelog(self.settings, topic, sorted(starts), stops,
                                start_offsets=starts)
        for p, records in inputs.items():
            rewarm_each(self.processor, p, records)
        return sum(len(records) for records in inputs.values())

    def _process_and_commit(self, consumer: KafkaConsumer, producer: KafkaProducer,
                            batch: list[Record]) -> None:
        started = time.perf_counter()
        self.progress.batch_began()
        try:
            result = self.processor.process(batch)
        except Exception as error:  # noqa: BLE001 - processors are pure: a bug or a poisoned record
            self._settle()  # isolation restores from the changelog: the last batch must be in it
            # The global records learned again on their own (their learning is idempotent
            # and counts bad data): a raise there is a bug, and fails the session.
            others = [record for record in batch if not record.owned]
            if others:
                self.processor.process(others)
                self._handed_over(others)
            owned = [record for record in batch if record.owned]
            if owned:
                self._process_in_isolation(consumer, producer, owned, error)
            return
        self._handed_over(batch)
        if len(result.outputs) == 0 and not any(record.owned for record in batch):
            return  # global records only: nothing to produce or commit
        self._settle()  # one transaction at a time: the previous batch's ends first
        self.progress.batch_began()  # settling ended the previous batch; this one is in flight
        self._commit(consumer, producer, batch, result, started, pipelined=True)

    def _handed_over(self, batch: list[Record]) -> None:
        if self.aligned is not None:
            self.aligned.handed_over(batch)

    def _process_in_isolation(self, consumer: KafkaConsumer, producer: KafkaProducer,
                              batch: list[Record], error: Exception) -> None:
        """Nothing of the failed batch was sent: restore, then one record per transaction.

        The batch in hand is exactly the records from the committed offsets up to the
        consumer's position (the batch before it was settled before this runs), so it is
        re-processed from memory; only if a stop cuts it short is the consumer sought back
        to the first record left uncommitted.
        """
        log.warning("processing a batch raised; restoring its partitions and processing its "
                    "records one at a time",
                    extra={"error_type": type(error).__name__, "raised_at": raised_at(error),
                           "records": len(batch),
                           "partitions": sorted({record.partition for record in batch})})

        def restore(partitions: list[int]) -> None:
            # As for a new assignment: forget the (maybe half-applied) state, rebuild it.
            self._drop(partitions, self._ownership.vouched)
            self._ownership.forget(partitions)
            self._restore(consumer, partitions)

        def commit(records: list[Record], result: ProcessResult) -> None:
            self._commit(consumer, producer, records, result, time.perf_counter())

        outcome = process_in_isolation(batch, self.processor, self.poison_pill,
                                       restore=restore, commit=commit,
                                       stopping=self._stop.is_set)
        self.records_dead_lettered += len(outcome.dead_lettered)
        for tp, offset in outcome.unprocessed.items():
            # Stopped half-way: the consumer's position is past records never committed.
            consumer.seek(KafkaTopicPartition(tp.topic, tp.partition), offset)

    def _commit(self, consumer: KafkaConsumer, producer: KafkaProducer, batch: list[Record],
                result: ProcessResult, started: float, pipelined: bool = False) -> None:
        """Commit the batch (steps 2-5); ``pipelined``: steps 4-5 go on as ``self._pending``,
        settled by ``_settle``, and the batch counts as committed only then."""
        try:
            sent = self._send_batch(consumer, producer, batch, result)
        except UnverifiedCommit as failure:
            self._failed_commit(failure, batch)
            raise
        def finish() -> None:
            self._finish_batch(producer, sent)
            self._proven()

        self._pending = (PendingCommit(finish, lambda: self._committed(batch, result, started)),
                         batch)
        if not pipelined:
            self._settle()

    def _settle(self, quietly: bool = False) -> None:
        """Wait for the pending transaction, if any; a failure fails the session (raises),
        unless ``quietly`` (the session is failing already)."""
        held, self._pending = self._pending, None
        if held is None:
            return
        pending, batch = held
        try:
            pending.settle()
        except UnverifiedCommit as failure:
            self._failed_commit(failure, batch)
            if not quietly:
                raise
        except Exception:
            if not quietly:
                raise

    def _failed_commit(self, failure: UnverifiedCommit, batch: list[Record]) -> None:
        # Not committed, whatever the client said: the caller fails the session, which
        # drops the in-memory state and resumes from the committed offsets.
        self._count_commit_failure(failure.cause)
        self.progress.batch_ended(committed=False)
        log.warning("a batch's transaction was not committed",
                    extra={"cause": failure.cause, "records": len(batch),
                           "partitions": sorted({record.partition for record in batch})})

    def _proven(self) -> None:
        """The counters that say a batch committed, updated the moment it is proven (on the
        tail's thread, the only writer of each: one tail at a time), not when the loop next
        settles: whoever sees the batch's outputs may look at them."""
        self.batches_committed += 1
        self.progress.batch_ended(committed=True)
        self.recovery.progressed()  # a committed batch ends any streak of failed sessions

    def _committed(self, batch: list[Record], result: ProcessResult, started: float) -> None:
        """The rest of a committed batch's bookkeeping, on the loop's thread (``_settle``):
        what the loop reads when it rebalances, and the metrics (they read the processor)."""
        self._ownership.committed({(r.topic, r.partition): r.offset + 1 for r in batch if r.owned})
        self._observe(result, len(batch), time.perf_counter() - started)

    def _send_batch(self, consumer: KafkaConsumer, producer: KafkaProducer,
                    batch: list[Record], result: ProcessResult) -> "_SentBatch":
        """Steps 2-3 of the commit order in the module docstring (raises ``UnverifiedCommit``);
        returns what ``_finish_batch`` needs for steps 4-5.

        The offsets are sent here, on the loop's thread, before the next poll: a poll may
        complete a rebalance, and offsets sent after it would carry a generation the group
        has left (the broker refuses them: ``IllegalGeneration``).
        """
        try:
            producer.begin_transaction()
        except Exception as error:  # noqa: BLE001 - the client is not READY for a new transaction
            raise UnverifiedCommit(BAD_STATE, f"begin_transaction raised {type(error).__name__}") \
                from error
        began = transaction_status(producer)
        futures = []
        try:
            for output in result.outputs:
                futures.append(producer.send(output.topic, key=output.key, value=output.value,
                                             headers=list(output.headers) or None,
                                             partition=output.partition))
        except Exception as error:  # noqa: BLE001 - e.g. an earlier send already failed
            # diagnose also settles the sends already made, so the abort does not wait on them.
            raise diagnose(producer, futures, self.send_timeout_s, SEND_FAILED, error)
        offsets: dict[KafkaTopicPartition, OffsetAndMetadata] = {}
        for record in batch:
            if not record.owned:
                continue  # another member's partition: it commits it
            tp = KafkaTopicPartition(record.topic, record.partition)
            # The committed offset is the *next* offset to read.
            offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
        try:
            if offsets:  # none: outputs of global records only (e.g. drift messages)
                bounded_call(producer.send_offsets_to_transaction, self.send_timeout_s, offsets,
                             consumer.group_metadata())
        except TransactionCallTimeout as error:
            raise _unanswered(OFFSETS_FAILED, error) from error
        except Exception as error:  # noqa: BLE001 - fenced, rebalanced, a send failed, broker gone
            raise diagnose(producer, futures, self.send_timeout_s, OFFSETS_FAILED, error)
        if self.before_commit is not None:
            self.before_commit(batch)
        return _SentBatch(futures, began)

    def _finish_batch(self, producer: KafkaProducer, sent: "_SentBatch") -> None:
        """Steps 4-5 (on the ``PendingCommit`` thread); raises ``UnverifiedCommit``."""
        futures, began = sent
        # commit_transaction flushes too, so this adds no round trip: it only makes the wait
        # bounded and looks at every send's result, which commit_transaction does not.
        check_delivered(producer, futures, self.send_timeout_s)
        check_status(transaction_status(producer), began, "IN_TRANSACTION")
        try:
            bounded_call(producer.commit_transaction, self.send_timeout_s)
        except TransactionCallTimeout as error:
            raise _unanswered(COMMIT_RAISED, error) from error
        except Exception as error:  # noqa: BLE001 - fenced, timed out, broker gone
            raise diagnose(producer, futures, self.send_timeout_s, COMMIT_RAISED, error)
        # commit_transaction can return for a transaction the broker aborted: prove it did not.
        check_status(transaction_status(producer), began, "READY")

    # -- metrics and teardown ---------------------------------------------------------------------
    def _observe(self, result: ProcessResult, n_in: int, seconds: float) -> None:
        m = self.metrics
        if m is None:
            return
        m.events_in.inc(n_in)  # type: ignore[attr-defined]
        m.events_out.inc(len(result.outputs))  # type: ignore[attr-defined]
        m.batches.inc()  # type: ignore[attr-defined]
        m.commits.inc()  # type: ignore[attr-defined]
        m.processing_latency.observe(seconds)  # type: ignore[attr-defined]
        for reason, count in self.processor.rejected_by_reason.items():
            m.set_rejected(reason, count)  # type: ignore[attr-defined]
        for outcome, count in self.processor.adoptions_by_outcome.items():
            m.set_adoptions(outcome, count)  # type: ignore[attr-defined]
        for (topic, reason), count in self.processor.skipped_by_reason.items():
            m.set_skipped(topic, reason, count)  # type: ignore[attr-defined]

    def _count_commit_failure(self, cause: str) -> None:
        if self.metrics is not None:
            self.metrics.commit_failed(cause)  # type: ignore[attr-defined]

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        total = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)  # from the last fetch response: no round trip
            if highwater is not None:
                lag = max(0, highwater - consumer.position(tp))
                total += lag
                if self.metrics is not None:
                    self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)  # type: ignore[attr-defined]
        self.progress.observed_lag(total)

    def _abort_quietly(self, producer: KafkaProducer) -> None:
        try:
            bounded_call(producer.abort_transaction, self.send_timeout_s)
        except Exception:  # noqa: BLE001 - nothing was open, fenced, or the broker is gone
            pass

    def _close(self, consumer: KafkaConsumer, producer: KafkaProducer) -> None:
        # Producer first: its last transaction is already committed or aborted; then leave
        # the group so partitions move to a live member without waiting for a timeout.
        try:
            producer.close(timeout=10)
        except Exception as error:  # noqa: BLE001 - sends of a failed batch still unresolved
            # kafka-python's close raises when its flush times out and leaves the sender
            # running; stop it, or the zombie may fence the next session (see force_close).
            log.warning("closing the producer timed out; forcing it closed",
                        extra={"error_type": type(error).__name__})
            force_close(producer)
        finally:
            try:
                consumer.close()
            finally:
                if self.aligned is not None:
                    self.aligned.close()
