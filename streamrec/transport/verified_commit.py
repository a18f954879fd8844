"""Verified commits: a transaction counts as committed only once its outcome is proven.

kafka-python 3.0.12 can return normally from ``commit_transaction()`` for a transaction the
broker threw away. When a send fails with ``InvalidProducerEpoch`` or
``OutOfOrderSequenceNumber`` (e.g. after the broker's transaction timeout aborted the open
transaction) the client bumps its producer epoch, which aborts the transaction on the broker
and clears the client's "transaction started" flag; the pending ``EndTxn`` is then completed
as a success without ever being sent. A failed future whose error is merely retriable
(delivery timeout) leaves no trace in the transaction state at all, and the commit goes
through without that record. So the runtime never takes ``commit_transaction``'s word:

1. every send's future is kept; before committing, the producer is flushed within a bound
   and every future must have succeeded;
2. before and after committing, the client's transaction state must be what a healthy
   transaction goes through (``IN_TRANSACTION``, then ``READY``), with no error recorded and
   the same producer id and epoch as when the transaction began (a changed epoch means the
   broker aborted the transaction).

Anything else raises ``UnverifiedCommit`` with a ``cause`` (the ``cause`` label of
``streamrec_commit_failures_total``); the runtime treats it as a failed session.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# The ``cause`` label values of ``streamrec_commit_failures_total``.
SEND_FAILED = "send_failed"        # a send raised, failed, or was not acknowledged in time
OFFSETS_FAILED = "offsets_failed"  # send_offsets_to_transaction raised
COMMIT_RAISED = "commit_raised"    # commit_transaction raised
BAD_STATE = "bad_state"            # the client is not where a healthy transaction leaves it
CAUSES = (SEND_FAILED, OFFSETS_FAILED, COMMIT_RAISED, BAD_STATE)


class UnverifiedCommit(Exception):
    """A batch's transaction cannot be shown to have committed: treat it as not committed.

    ``can_abort`` is False when sends are still unresolved: an abort would wait for them
    without a bound, so the next session's ``init_transactions`` (same transactional id)
    aborts the transaction instead.
    """

    def __init__(self, cause: str, detail: str, *, can_abort: bool = True) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.can_abort = can_abort


@dataclass(frozen=True)
class TransactionStatus:
    """What the client believes about its transaction, read in one place."""

    state: str  # a kafka-python ``TransactionState`` name: READY, IN_TRANSACTION, ...
    error: BaseException | None  # the abortable or fatal error the client recorded
    producer_id: int
    epoch: int


def transaction_status(producer: Any) -> TransactionStatus:
    """Read the transactional state of a kafka-python ``KafkaProducer``.

    kafka-python 3.0.12 has no public view of it, so this reads the private
    ``_transaction_manager`` (``kafka/producer/transaction_manager.py``: ``_current_state``
    is a ``TransactionState``, ``last_error`` the recorded error, ``producer_id_and_epoch``
    the current id and epoch). This function is the only place that does: a kafka-python
    upgrade that renames them breaks here, and ``tests/unit/core/test_verified_commit.py``
    says so.
    """
    manager = producer._transaction_manager  # noqa: SLF001 - see the docstring
    if manager is None:
        return TransactionStatus("NOT_TRANSACTIONAL", None, -1, -1)
    ids = manager.producer_id_and_epoch
    error = manager.last_error if manager.has_error() else None
    return TransactionStatus(manager._current_state.name, error,  # noqa: SLF001
                             ids.producer_id, ids.epoch)


def check_status(status: TransactionStatus, began: TransactionStatus, expected_state: str) -> None:
    """Raise ``UnverifiedCommit(BAD_STATE)`` unless ``status`` is healthy and in ``expected_state``."""
    if status.error is not None:
        raise UnverifiedCommit(BAD_STATE, f"the producer recorded {type(status.error).__name__}"
                                          f" (state {status.state})") from status.error
    if (status.producer_id, status.epoch) != (began.producer_id, began.epoch):
        raise UnverifiedCommit(BAD_STATE, "the producer epoch changed during the transaction "
                                          f"({began.epoch} -> {status.epoch}): the broker "
                                          "aborted it")
    if status.state != expected_state:
        raise UnverifiedCommit(BAD_STATE, f"the producer is in state {status.state}, "
                                          f"expected {expected_state}")


def check_delivered(producer: Any, futures: Sequence[Any], timeout_s: float) -> None:
    """Flush within ``timeout_s`` and require every send's future to have succeeded.

    ``futures`` are what ``producer.send`` returned (kafka-python ``FutureRecordMetadata``).
    kafka-python's flush can also raise early (``UnknownError: Future not done`` once it split
    a batch the broker found too large), so on a flush error each unresolved future is waited
    for on its own, within what is left of the bound.
    """
    deadline = time.monotonic() + timeout_s
    flushed: BaseException | None = None
    try:
        producer.flush(timeout=timeout_s)
    except Exception as error:  # noqa: BLE001 - judged by the futures below
        flushed = error
    for future in futures:
        if not future.is_done:
            with contextlib.suppress(Exception):  # a failure is read from the future below
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        if not future.is_done:
            raise UnverifiedCommit(SEND_FAILED, f"sends not acknowledged within {timeout_s:g} s"
                                   + (f" ({type(flushed).__name__})" if flushed else ""),
                                   can_abort=False) from flushed
        if not future.succeeded():
            failure = future.exception
            # After a flush error batches may still be queued, and an abort would wait for
            # them without a bound: leave the abort to the next session's init_transactions.
            raise UnverifiedCommit(SEND_FAILED, f"a send failed with {type(failure).__name__}",
                                   can_abort=flushed is None) from failure


def force_close(producer: Any) -> None:
    """Stop a producer whose ``close`` raised, failing whatever it still had in flight.

    ``KafkaProducer.close(timeout)`` raises when its flush times out and leaves its sender
    thread running. That zombie would keep retrying the failed transaction's sends, and a
    send that then fails on the epoch the next session fenced makes kafka-python 3.0.12 ask
    for a fresh producer id for the same transactional id, fencing the live session in
    turn. So it is stopped here, through the private ``_sender`` (the same version caveat as
    ``transaction_status``).
    """
    sender = getattr(producer, "_sender", None)  # noqa: SLF001 - see the docstring
    if sender is not None and sender.is_alive():
        sender.force_close()
        sender.join(1.0)


def diagnose(producer: Any, futures: Sequence[Any], timeout_s: float, cause: str,
             error: BaseException) -> UnverifiedCommit:
    """The ``UnverifiedCommit`` for a transactional call that raised ``error``.

    A send failure usually surfaces first as an error of a later call (the client records
    it as the transaction's error before failing the record's future), so the sends are
    looked at first: a failed one is the cause. Only on this failure path is the flush an
    extra wait.
    """
    try:
        check_delivered(producer, futures, timeout_s)
    except UnverifiedCommit as send_failure:
        return send_failure
    failure = UnverifiedCommit(cause, f"{type(error).__name__}: {str(error)[:200]}")
    failure.__cause__ = error
    return failure


class TransactionCallTimeout(Exception):
    """A transactional request was not answered in time (the broker or its connection is gone)."""


def bounded_call(call: Callable[..., None], timeout_s: float, *args: Any) -> None:
    """Run a transactional call (``send_offsets_to_transaction``, ``commit_transaction``,
    ``abort_transaction``) and wait at most ``timeout_s`` for it.

    kafka-python 3.0.12 waits for these without a bound, and can lose the request when the
    coordinator's connection is down as it is sent (the sender raises instead of re-queueing
    it): a service whose broker died during a commit then hangs for good, even once the broker
    is back. So the call runs on a helper thread and the caller gives up after ``timeout_s``
    with ``TransactionCallTimeout``: it fails the session, the producer is force-closed, and
    the next session's ``init_transactions`` (same transactional id) settles the transaction.
    Whether it committed or not, the next session restores from what is committed. A helper
    left waiting on a lost request stays blocked (a daemon thread, one per such failure).
    """
    done = threading.Event()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call(*args)
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            raised.append(error)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True, name="transactional-call").start()
    if not done.wait(timeout_s):
        raise TransactionCallTimeout(f"{getattr(call, '__name__', 'call')} not answered "
                                     f"within {timeout_s:.0f} s")
    if raised:
        raise raised[0]
