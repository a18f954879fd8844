"""ClickPublisher never waits forever and always says how many events were not delivered.

A fake producer stands in for kafka-python (its futures are resolved by the test), so each
path runs in well under a second; ``test_delivery_accounting.py`` pins the real internals.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from kafka.errors import IllegalStateError, KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

from streamrec.producers import publisher as publisher_module
from streamrec.producers.publisher import ClickPublisher, PublishError

BOUND_S = 20.0  # generous: these paths take milliseconds; the bound only proves "no hang"


class FakeSender:
    def __init__(self, producer: "FakeProducer") -> None:
        self.producer = producer
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive

    def force_close(self) -> None:  # as kafka-python's: fail whatever is still pending
        self.alive = False
        for future in self.producer.futures:
            if not future.is_done:
                future.failure(IllegalStateError("Producer is closed forcefully."))

    def join(self, timeout: float | None = None) -> None:
        pass


class FakeProducer:
    """Records sends as unresolved futures; the test decides their outcome."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.futures: list[Future] = []
        self.closes: list[float | None] = []
        self.send_error: BaseException | None = None
        self._sender = FakeSender(self)
        self._transaction_manager: Any = None

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list | None = None) -> Future:
        if self.send_error is not None:
            raise self.send_error
        future = Future()
        self.futures.append(future)
        return future

    def close(self, timeout: float | None = None) -> None:
        self.closes.append(timeout)
        if any(not f.is_done for f in self.futures):  # kafka-python's flush would time out
            raise KafkaTimeoutError("Timeout waiting for future")

    def metrics(self) -> dict:
        return {}

    @property
    def force_closed(self) -> bool:
        return not self._sender.alive


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeProducer]]:
    built: list[FakeProducer] = []

    def build(settings: object, **config: Any) -> FakeProducer:
        built.append(FakeProducer(config))
        return built[-1]

    monkeypatch.setattr(publisher_module.kafka_clients, "producer", build)
    yield built


def new_publisher(fake: list[FakeProducer], **kwargs: Any) -> tuple[ClickPublisher, FakeProducer]:
    publisher = ClickPublisher("127.0.0.1:9", "clicks", **kwargs)
    publisher.give_up_grace_s = 0.1
    return publisher, fake[-1]


def publish(publisher: ClickPublisher, n: int) -> None:
    for i in range(n):
        publisher.publish_raw(f"u{i}".encode(), b"{}")


def assert_adds_up(publisher: ClickPublisher) -> None:
    c = publisher.counts()
    assert c.published == c.delivered + c.failed + c.unacknowledged
    assert (publisher.published, publisher.delivered, publisher.failed,
            publisher.unacknowledged) == (c.published, c.delivered, c.failed, c.unacknowledged)


def test_the_delivery_timeout_reaches_kafka_with_every_wait_bounded(fake: list) -> None:
    new_publisher(fake, delivery_timeout_s=5)
    config = fake[-1].config
    assert config["delivery_timeout_ms"] == 5_000 and config["request_timeout_ms"] == 4_990
    assert config["max_block_ms"] == 5_000 and config["bootstrap_timeout_ms"] == 5_000
    assert config["enable_idempotence"] is True and config["acks"] == "all"  # untouched


@pytest.mark.parametrize("kwargs", [{"delivery_timeout_s": 0}, {"delivery_timeout_s": -3},
                                    {"delivery_timeout_s": float("nan")},
                                    {"delivery_timeout_ms": 5000}, {"max_unacknowledged": 0},
                                    {"delivery_timeout_s": 5, "request_timeout_ms": 30_000}])
def test_bad_bounds_are_refused_before_connecting(fake: list, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ClickPublisher("127.0.0.1:9", "clicks", **kwargs)
    assert fake == []


def test_close_waits_for_acknowledgements_that_come_late(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60)
    publish(publisher, 3)
    for future in producer.futures:
        threading.Timer(0.1, future.success, args=(None,)).start()
    publisher.close()
    assert (publisher.delivered, publisher.failed, publisher.unacknowledged) == (3, 0, 0)
    assert producer.closes and not producer.force_closed  # a graceful close


def test_close_gives_up_at_the_delivery_timeout_and_stops_the_producer(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=0.3)
    publish(publisher, 3)
    producer.futures[0].success(None)
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        publisher.close()  # the two others never resolve: a wedged or unreachable producer
    assert time.monotonic() - started < BOUND_S
    assert str(caught.value) == (
        "2 of 3 events not delivered to topic 'clicks' at 127.0.0.1:9 (1 delivered, 0 failed, "
        "2 unacknowledged: no acknowledgement within 0.4 s of the last publish); first error: "
        "KafkaTimeoutError: no acknowledgement within 0.4 s of the last publish")
    assert producer.force_closed  # its futures were failed by the force close...
    assert (publisher.delivered, publisher.failed, publisher.unacknowledged) == (1, 0, 2)  # ...uncounted
    assert caught.value.counts == publisher.counts() and caught.value.counts.final
    assert_adds_up(publisher)
    publisher.close()  # closing again is a no-op
    with pytest.raises(PublishError, match="closed"):
        publisher.publish_raw(b"u", b"{}")


def test_a_wedged_producer_is_given_up_at_once(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=600)
    producer._transaction_manager = SimpleNamespace(  # kafka-python's wedge: READY, no id
        is_transactional=lambda: False, has_producer_id=lambda: False,
        _current_state=SimpleNamespace(name="READY"))
    publish(publisher, 2)
    producer.futures[0].failure(KafkaTimeoutError("Expiring 1 record(s)"))
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"^2 of 2 events not delivered .*0 delivered, 1 failed, "
                                           r"1 unacknowledged: the producer lost its producer id"):
        publisher.close()
    assert time.monotonic() - started < BOUND_S  # not the 600 s delivery timeout
    assert producer.force_closed
    assert_adds_up(publisher)


def test_a_failure_is_raised_by_the_next_publish_with_the_counts(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60)
    publish(publisher, 4)
    producer.futures[0].success(None)
    producer.futures[1].failure(MessageSizeTooLargeError("too big"))
    with pytest.raises(PublishError) as caught:
        publisher.publish_raw(b"u", b"{}")
    assert str(caught.value).startswith(
        "3 of 4 events not delivered to topic 'clicks' at 127.0.0.1:9 (1 delivered, 1 failed, "
        "2 still in flight); first error: [Error 10] MessageSizeTooLargeError: too big")
    assert len(producer.futures) == 4  # the refused publish sent nothing
    for future in producer.futures[2:]:
        future.success(None)
    with pytest.raises(PublishError, match=r"^1 of 4 events not delivered .*\(3 delivered, 1 failed\)"):
        publisher.close()
    assert not producer.force_closed


def test_a_send_that_raises_counts_as_failed(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60)
    producer.send_error = KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
    with pytest.raises(PublishError, match=r"^1 of 1 events not delivered .*\(0 delivered, 1 failed\)"
                                           r"; first error: KafkaTimeoutError: Failed to update"):
        publisher.publish_raw(b"u", b"{}")
    assert_adds_up(publisher)


def test_flush_with_a_shorter_timeout_raises_but_keeps_the_publisher(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60)
    publish(publisher, 1)
    with pytest.raises(PublishError, match=r"1 still in flight: the 0.1 s flush timeout ran out"):
        publisher.flush(timeout=0.1)
    assert not producer.force_closed
    producer.futures[0].success(None)
    publisher.flush()
    publish(publisher, 1)  # still open
    producer.futures[1].success(None)
    publisher.close()
    assert publisher.delivered == 2


def test_close_with_a_shorter_timeout_stops_the_producer(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60)
    publish(publisher, 2)
    with pytest.raises(PublishError, match=r"^2 of 2 .*2 unacknowledged: the 0.1 s close timeout"):
        publisher.close(timeout=0.1)
    assert producer.force_closed


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf")])
def test_bad_flush_timeouts_are_refused(fake: list, timeout: float) -> None:
    publisher, _ = new_publisher(fake, delivery_timeout_s=60)
    with pytest.raises(ValueError, match="timeout"):
        publisher.flush(timeout=timeout)


def test_publish_waits_while_too_many_events_are_in_flight(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60, max_unacknowledged=2)
    publish(publisher, 2)
    threading.Timer(0.1, producer.futures[0].success, args=(None,)).start()
    publish(publisher, 1)  # waits for that acknowledgement, then goes
    assert len(producer.futures) == 3 and publisher.delivered == 1


def test_a_full_buffer_through_a_long_outage_ends_in_an_error_not_a_hang(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=0.3, max_unacknowledged=2)
    publish(publisher, 2)
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"^2 of 2 events not delivered .*2 unacknowledged"):
        publish(publisher, 1)
    assert time.monotonic() - started < BOUND_S
    assert producer.force_closed and len(producer.futures) == 2
    assert_adds_up(publisher)


def test_a_failure_while_waiting_for_room_is_raised(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60, max_unacknowledged=1)
    publish(publisher, 1)
    threading.Timer(0.1, producer.futures[0].failure,
                    args=(KafkaTimeoutError("Expiring 1 record(s)"),)).start()
    with pytest.raises(PublishError, match=r"^1 of 1 .*1 failed"):
        publish(publisher, 1)


def test_leaving_the_block_on_an_error_still_closes_within_the_bound(fake: list) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="app bug"):
        with ClickPublisher("127.0.0.1:9", "clicks", delivery_timeout_s=0.3) as publisher:
            publisher.give_up_grace_s = 0.1
            publish(publisher, 2)
            raise RuntimeError("app bug")  # its error wins over the PublishError of close
    assert time.monotonic() - started < BOUND_S
    assert fake[-1].force_closed and publisher.counts().final
    assert publisher.unacknowledged == 2


def test_a_producer_that_cannot_be_built_is_a_publish_error_with_zero_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrec.connection import KafkaUnreachableError

    def unreachable(settings: object, **config: Any) -> None:
        raise KafkaUnreachableError("cannot connect to Kafka at 127.0.0.1:9 (PLAINTEXT): refused")

    monkeypatch.setattr(publisher_module.kafka_clients, "producer", unreachable)
    with pytest.raises(PublishError, match=r"^cannot connect to Kafka at 127.0.0.1:9 \(PLAINTEXT\)"
                                           r": refused$") as caught:
        ClickPublisher("127.0.0.1:9", "clicks")
    assert caught.value.counts.published == 0 and caught.value.counts.final


def test_a_bad_close_timeout_leaves_the_publisher_open(fake: list) -> None:
    publisher, producer = new_publisher(fake, delivery_timeout_s=60)
    publish(publisher, 1)
    with pytest.raises(ValueError, match="timeout"):
        publisher.close(timeout=-1)
    assert not producer.force_closed
    producer.futures[0].success(None)
    publisher.close()
    assert publisher.delivered == 1


def test_flush_after_a_give_up_reports_at_once(fake: list) -> None:
    publisher, _ = new_publisher(fake, delivery_timeout_s=0.3)
    publish(publisher, 1)
    with pytest.raises(PublishError):
        publisher.flush()
    publisher.delivery_timeout_s = 600  # a second wait would now take ten minutes
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"^1 of 1 .*1 unacknowledged"):
        publisher.flush()
    assert time.monotonic() - started < BOUND_S
