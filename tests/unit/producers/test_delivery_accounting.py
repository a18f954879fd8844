"""Delivery accounting and the kafka-python internals it leans on (no broker needed)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.producer.transaction_manager import TransactionManager, TransactionState

from streamrec.producers.delivery import (DeliveryLedger, check_delivery_timeout, delivery_config,
                                describe_error, not_delivered_message, stuck_reason)
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.app.kafka_broker_config import pick_free_ports


def test_every_event_is_delivered_failed_or_unacknowledged() -> None:
    ledger = DeliveryLedger(max_kept_errors=2)
    futures = [Future() for _ in range(6)]
    for future in futures:
        ledger.track(future)
    futures[0].success(None)
    futures[1].success(None)
    for future in futures[2:5]:
        future.failure(KafkaTimeoutError("Expiring 1 record(s)"))
    counts = ledger.counts()
    assert (counts.published, counts.delivered, counts.failed, counts.unacknowledged) == (6, 2, 3, 1)
    assert counts.not_delivered == 4 and not counts.final
    assert len(ledger.errors) == 2  # only the first few are kept
    assert isinstance(counts.first_error, KafkaTimeoutError)


def test_an_already_resolved_future_is_counted_once() -> None:
    ledger = DeliveryLedger()
    ledger.track(Future().success(None))
    ledger.track(Future().failure(KafkaTimeoutError("metadata")))
    ledger.refused(KafkaTimeoutError("send raised"))
    counts = ledger.counts()
    assert (counts.published, counts.delivered, counts.failed) == (3, 1, 2)


def test_finish_freezes_the_counts_against_late_outcomes() -> None:
    ledger = DeliveryLedger()
    late_ok, late_fail = Future(), Future()
    ledger.track(late_ok)
    ledger.track(late_fail)
    frozen = ledger.finish(KafkaTimeoutError("gave up"))
    late_ok.success(None)  # e.g. aborted by the force close, or a response after the give-up
    late_fail.failure(KafkaTimeoutError("aborted"))
    assert frozen == ledger.counts()
    assert (frozen.delivered, frozen.failed, frozen.unacknowledged, frozen.final) == (0, 0, 2, True)
    assert str(frozen.first_error) == "KafkaTimeoutError: gave up"


def test_wait_returns_when_done_at_the_deadline_or_when_stuck() -> None:
    ledger = DeliveryLedger()
    future = Future()
    ledger.track(future)
    threading.Timer(0.05, future.success, args=(None,)).start()
    assert ledger.wait(lambda c: c.unacknowledged == 0, time.monotonic() + 30) is None

    ledger.track(Future())
    assert ledger.wait(lambda c: c.unacknowledged == 0, time.monotonic() + 0.05) == "deadline"
    started = time.monotonic()
    assert ledger.wait(lambda c: c.unacknowledged == 0, time.monotonic() + 30,
                       stuck=lambda: "wedged") == "wedged"
    assert time.monotonic() - started < 10  # at once, not at the deadline


@pytest.mark.parametrize("value", [0, -1, 0.005, float("nan"), float("inf"), True, "5", 86_401])
def test_bad_delivery_timeouts_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="delivery_timeout_s"):
        check_delivery_timeout(value, linger_ms=10)


def test_delivery_config_bounds_every_wait_by_the_delivery_timeout() -> None:
    assert delivery_config(120.0) == {"delivery_timeout_ms": 120_000, "request_timeout_ms": 30_000,
                                      "max_block_ms": 60_000, "bootstrap_timeout_ms": 30_000}
    short = delivery_config(5.0, linger_ms=10)
    assert short == {"delivery_timeout_ms": 5_000, "request_timeout_ms": 4_990,
                     "max_block_ms": 5_000, "bootstrap_timeout_ms": 5_000}
    # Kafka's own rule: delivery >= linger + request timeout.
    assert short["delivery_timeout_ms"] >= 10 + short["request_timeout_ms"]


def test_the_message_is_one_exact_line() -> None:
    ledger = DeliveryLedger()
    for outcome in ("ok", "fail", None):
        future = Future()
        ledger.track(future)
        if outcome == "ok":
            future.success(None)
        elif outcome == "fail":
            future.failure(KafkaTimeoutError("Expiring 1 record(s)\nfor clicks-0"))
    line = not_delivered_message(ledger.finish(), "clicks", "127.0.0.1:9092", "gave up")
    assert line == ("2 of 3 events not delivered to topic 'clicks' at 127.0.0.1:9092 "
                    "(1 delivered, 1 failed, 1 unacknowledged: gave up); first error: "
                    "KafkaTimeoutError: Expiring 1 record(s) for clicks-0")
    assert describe_error(ValueError("x" * 1000)).endswith("...")
    assert len(describe_error(ValueError("x" * 1000))) == 300


def _ready_manager() -> TransactionManager:
    """An idempotent producer's manager after the broker answered its InitProducerId."""
    manager = TransactionManager(transactional_id=None, api_version=(3, 9))
    manager.init_producer_id()
    handler = manager.next_request_handler(False)  # what the sender sends
    handler.handle_response(SimpleNamespace(error_code=0, producer_id=7, producer_epoch=0))
    assert manager.has_producer_id() and manager._current_state is TransactionState.READY  # noqa: SLF001
    return manager


def test_stuck_reason_sees_the_kafka_python_wedge() -> None:
    """Pins kafka-python 3.0.12's wedge: if this fails after an upgrade, the library now
    recovers a reset producer id by itself and ``stuck_reason`` may go."""
    manager = _ready_manager()
    producer = SimpleNamespace(_transaction_manager=manager)
    assert stuck_reason(producer) is None
    manager.reset_producer_id()  # what the sender does when a batch it sent expires
    manager.init_producer_id()  # what the sender's loop calls, every turn, to recover...
    assert not manager.has_producer_id()  # ...and it never asks for a new id
    assert manager.next_request_handler(True) is None  # nothing will ever be sent
    assert "producer id" in (stuck_reason(producer) or "")


def test_stuck_reason_is_none_while_starting_and_for_other_producers() -> None:
    starting = TransactionManager(transactional_id=None, api_version=(3, 9))
    assert stuck_reason(SimpleNamespace(_transaction_manager=starting)) is None
    starting.init_producer_id()  # INITIALIZING, no id yet: that is not a wedge
    assert stuck_reason(SimpleNamespace(_transaction_manager=starting)) is None
    assert stuck_reason(SimpleNamespace(_transaction_manager=None)) is None  # not idempotent
    assert stuck_reason(object()) is None


def test_a_real_producer_has_the_internals_we_read() -> None:
    """``stuck_reason`` reads ``_transaction_manager`` and ``force_close`` stops ``_sender``.
    With ``api_version`` given, kafka-python builds a producer without reaching a broker."""
    from streamrec.transport.verified_commit import force_close
    port = pick_free_ports(1)[0]  # nothing listens there
    producer = kafka_clients.producer(Settings(bootstrap_servers=f"127.0.0.1:{port}"),
                                      api_version=(3, 9), reconnect_backoff_ms=1000)
    try:
        assert isinstance(producer._transaction_manager, TransactionManager)  # noqa: SLF001
        assert stuck_reason(producer) is None
        assert producer._sender.is_alive()  # noqa: SLF001
    finally:
        force_close(producer)
        assert not producer._sender.is_alive()  # noqa: SLF001
        producer.close(timeout=0)
