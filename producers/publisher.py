"""The app-facing SDK: publish click events to the ``clicks`` topic, keyed by user.

Keying by ``user_id`` sends every event of a user to the same partition, which is what lets
ingest keep a user's state on one instance and see the user's events in order. The
producer is idempotent with ``acks="all"`` so a retry after a network blip never writes a
duplicate or reorders a user's events; batching (``linger_ms``, a large ``batch_size``)
buys throughput at the cost of a few milliseconds of latency.

Sends are asynchronous. A failed send is remembered and raised as ``PublishError`` by the
next ``publish``, ``flush`` or ``close``: nothing fails silently. A cluster that refuses the
credentials or the principal's ACLs raises ``KafkaAccessError`` instead (one line naming
the broker and the mechanism): retrying cannot help.

Nothing waits forever either. Kafka retries an event for ``delivery_timeout_s`` (120 s) after
it is published, so a shorter broker outage loses nothing; no wait lasts past that (plus
``GIVE_UP_GRACE_S``) after the last publish, and then ``PublishError`` says in one line how
many events were not delivered (``published == delivered + failed + unacknowledged``).

Example (needs a broker)::

    with ClickPublisher("127.0.0.1:9092", "clicks") as publisher:
        publisher.publish(event)
    # leaving the block flushed every event, or raised PublishError

    # A secured cluster: the same connection config every streamrec client takes.
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "app", password, ssl_cafile="ca.pem")
    with ClickPublisher("broker:9094", "clicks", security=security) as publisher: ...
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, NoReturn

from kafka.codec import has_lz4
from kafka.errors import KafkaError, KafkaTimeoutError

from streamrec.producers.delivery import (DEFAULT_DELIVERY_TIMEOUT_S, GIVE_UP_GRACE_S, DeliveryCounts,
                                DeliveryLedger, check_delivery_timeout, check_wait_timeout,
                                delivery_config, describe_error, not_delivered_message,
                                stop_producer, stuck_reason)
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.connection import KafkaAccessError, KafkaSecurity, KafkaUnreachableError
from streamrec.events import ClickEvent, encode_click


__all__ = ["ClickPublisher", "DeliveryCounts", "KafkaAccessError", "PublishError",
           "delivery_config", "producer_config"]

DEFAULT_MAX_UNACKNOWLEDGED = 100_000  # ~30 MB of events and futures held for retries


class PublishError(RuntimeError):
    """One or more events could not be written to Kafka; ``errors`` holds the first few.

    ``counts`` says how many events were published, delivered, failed and unacknowledged
    when it was raised (``counts.final`` once the publisher stopped waiting).
    """

    def __init__(self, message: str, errors: list[BaseException] | None = None,
                 counts: DeliveryCounts | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []
        self.counts = counts or DeliveryCounts(0, 0, 0)


def producer_config(**overrides: Any) -> dict[str, Any]:
    """The KafkaProducer settings we publish clicks with, plus checked ``overrides``.

    Raises ``ValueError`` for overrides that would silently turn idempotence off in
    kafka-python 3.x (``acks`` 0 or 1, ``retries=0``, more than 5 requests in flight).
    """
    config: dict[str, Any] = {
        "enable_idempotence": True,  # no duplicates or reordering on retry
        "acks": "all",  # an event counts as sent once every in-sync replica has it
        "linger_ms": 10,  # wait up to 10 ms to fill batches: ~10x throughput for 10 ms latency
        "batch_size": 256 * 1024,
        "compression_type": "lz4" if has_lz4() else None,  # lz4 is optional, never required
        "max_in_flight_requests_per_connection": 5,  # the most idempotence allows
        # kafka-python backs reconnects off up to 30 s (Java: 1 s), so a producer would
        # resume up to 30 s after a broker came back, eating into the delivery timeout.
        "reconnect_backoff_max_ms": 1000,
    }
    config.update(overrides)
    if config.get("acks") in (0, 1, "0", "1"):
        raise ValueError("acks must be 'all': acks=0/1 turns idempotence off and loses events")
    if config.get("retries") == 0:
        raise ValueError("retries=0 turns idempotence off; leave retries at its default")
    if int(config.get("max_in_flight_requests_per_connection", 5)) > 5:
        raise ValueError("more than 5 in-flight requests turns idempotence off")
    return config


class ClickPublisher:
    """Publish ``ClickEvent`` (or raw bytes) to a topic, keyed by user id.

    Parameters
    ----------
    bootstrap_servers
        Kafka bootstrap address(es), ``"host:port[,host:port]"``.
    topic
        Destination topic, usually ``settings.topics.clicks``.
    security
        TLS/SASL connection config (default: plaintext); see also ``from_settings``.
    delivery_timeout_s
        How long Kafka retries an event through an outage before it counts as failed
        (default 120 s, Kafka's); also the bound on every other wait (``delivery_config``).
    max_unacknowledged
        Events in flight before ``publish`` waits for acknowledgements (memory bound).
    **producer_overrides
        Extra ``KafkaProducer`` settings (checked by ``producer_config``).
    """

    max_kept_errors = 10
    give_up_grace_s = GIVE_UP_GRACE_S

    def __init__(self, bootstrap_servers: str, topic: str, *,
                 security: KafkaSecurity | None = None,
                 delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
                 max_unacknowledged: int = DEFAULT_MAX_UNACKNOWLEDGED,
                 **producer_overrides: Any) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        if "delivery_timeout_ms" in producer_overrides:
            raise ValueError("pass delivery_timeout_s, not delivery_timeout_ms: the publisher "
                             "bounds its own waits by it")
        linger_ms = int(producer_overrides.get("linger_ms", producer_config()["linger_ms"]))
        self.delivery_timeout_s = check_delivery_timeout(delivery_timeout_s, linger_ms)
        if type(max_unacknowledged) is not int or max_unacknowledged < 1:
            raise ValueError(f"max_unacknowledged must be a positive int, got {max_unacknowledged!r}")
        self.max_unacknowledged = max_unacknowledged
        self._ledger = DeliveryLedger(self.max_kept_errors)
        self._closed = False
        config = producer_config(**{**delivery_config(self.delivery_timeout_s, linger_ms),
                                    **producer_overrides})
        if config["delivery_timeout_ms"] < config["linger_ms"] + config["request_timeout_ms"]:
            raise ValueError("request_timeout_ms + linger_ms must not exceed the delivery timeout")
        self._settings = Settings(bootstrap_servers=bootstrap_servers,
                                  kafka_security=security or KafkaSecurity())
        try:
            self._producer = kafka_clients.producer(self._settings, **config)
        except KafkaUnreachableError as exc:  # its message names the broker and the reason
            raise PublishError(str(exc), [exc], self._ledger.finish()) from exc
        except KafkaError as exc:
            raise PublishError(f"cannot connect to Kafka at {bootstrap_servers}: "
                               f"{describe_error(exc)}", [exc], self._ledger.finish()) from exc

    @classmethod
    def from_settings(cls, settings: Settings, topic: str | None = None,
                      **producer_overrides: Any) -> "ClickPublisher":
        """A publisher with the settings' bootstrap servers and security, to ``clicks`` by default."""
        return cls(settings.bootstrap_servers, topic or settings.topics.clicks,
                   security=settings.kafka_security, **producer_overrides)

    # published == delivered + failed + unacknowledged, at every moment (see DeliveryCounts).
    published = property(lambda self: self._ledger.counts().published)
    delivered = property(lambda self: self._ledger.counts().delivered)
    failed = property(lambda self: self._ledger.counts().failed)
    unacknowledged = property(lambda self: self._ledger.counts().unacknowledged)

    def counts(self) -> DeliveryCounts:
        """Published, delivered, failed and unacknowledged events, at one moment."""
        return self._ledger.counts()

    def publish(self, event: ClickEvent) -> None:
        """Queue one event for sending (asynchronous); raise if an earlier send failed."""
        self.publish_raw(event.user_id.encode(), encode_click(event))

    def publish_raw(self, key: bytes | None, value: bytes,
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue an arbitrary payload (for replaying logs verbatim and DLQ tests)."""
        if self._closed:
            raise PublishError("publisher is closed", self._ledger.errors, self._ledger.counts())
        if self._ledger.counts().failed:
            self._raise_errors()
        self._wait_for_room()
        # The record timestamp stays "now" on purpose: replayed logs carry event times from
        # years ago, and with those as record timestamps time-based retention would delete
        # the segments at once. Event time travels inside the payload (``ts``).
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=headers)
        except KafkaError as exc:  # e.g. no metadata within max_block_ms: the broker is down
            self._ledger.refused(exc)
            self._raise_errors()
        self._ledger.track(future)

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued event is acknowledged; raise ``PublishError`` if any failed.

        Waits at most ``delivery_timeout_s + GIVE_UP_GRACE_S`` after the last publish, then
        stops the producer and raises with the counts. A shorter ``timeout`` raises with the
        events still in flight and leaves the publisher open.
        """
        check_wait_timeout(timeout)
        if self._closed:  # nothing more will arrive: report what did not
            if self._ledger.counts().not_delivered:
                self._raise_errors()
            return
        outcome = self._wait_for_all(timeout)
        if outcome == "timeout":
            self._raise_errors(f"the {timeout:g} s flush timeout ran out")
        if outcome is not None:
            self._give_up(outcome)
        if self._ledger.counts().failed:
            self._raise_errors()

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release the connection; raises ``PublishError`` if events were lost.

        Never waits past the bound ``flush`` has (or ``timeout``, if shorter): what is
        still in flight then is counted as not delivered and the producer is stopped.
        """
        check_wait_timeout(timeout)
        if self._closed:
            return
        self._closed = True
        outcome: str | None = "interrupted"
        try:
            outcome = self._wait_for_all(timeout)
        finally:
            if outcome is not None:  # also on Ctrl-C: nothing may keep retrying behind us
                self._give_up(outcome if outcome != "timeout" else
                              f"the {timeout:g} s close timeout ran out",
                              raise_error=outcome != "interrupted")
        counts = self._ledger.finish()
        stop_producer(self._producer, graceful=True)
        if counts.failed:
            self._raise_errors()

    def metrics(self) -> dict[str, Any]:
        """kafka-python's producer metrics (batch sizes, record rates, errors)."""
        return self._producer.metrics()  # type: ignore[no-any-return]

    def __enter__(self) -> "ClickPublisher":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the body already failed: still try to deliver, but let its error win
            self.close()
        except PublishError:
            pass

    def _give_up_at(self) -> float:
        """Every event published so far has been resolved by Kafka by then, or never will be."""
        last = self._ledger.last_published_at
        return (time.monotonic() if last is None else last) + self.delivery_timeout_s \
            + self.give_up_grace_s

    def _stuck(self) -> str | None:  # see stuck_reason: a producer that will never recover
        return stuck_reason(self._producer)

    def _wait_for_all(self, timeout: float | None) -> str | None:
        """None once nothing is in flight, ``"timeout"`` if the caller's bound came first,
        else why waiting longer is pointless."""
        give_up_at = self._give_up_at()
        deadline = give_up_at if timeout is None else min(give_up_at, time.monotonic() + timeout)
        outcome = self._ledger.wait(lambda c: c.unacknowledged == 0, deadline, self._stuck)
        if outcome == "deadline":
            return "timeout" if deadline < give_up_at else self._no_ack_reason()
        return outcome

    def _wait_for_room(self) -> None:
        """Backpressure: while ``max_unacknowledged`` events are in flight, wait (bounded)."""
        if self._ledger.counts().unacknowledged < self.max_unacknowledged:
            return
        outcome = self._ledger.wait(
            lambda c: c.unacknowledged < self.max_unacknowledged or c.failed > 0,
            self._give_up_at(), self._stuck)
        if outcome is not None:
            self._give_up(self._no_ack_reason() if outcome == "deadline" else outcome)
        if self._ledger.counts().failed:
            self._raise_errors()

    def _no_ack_reason(self) -> str:
        return (f"no acknowledgement within {self.delivery_timeout_s + self.give_up_grace_s:g} s "
                "of the last publish")

    def _give_up(self, reason: str, raise_error: bool = True) -> None:
        """Stop waiting: freeze the counts, stop the producer, raise with the counts."""
        self._closed = True
        self._ledger.finish(KafkaTimeoutError(reason))
        stop_producer(self._producer, graceful=False)
        if raise_error:
            self._raise_errors(reason)

    def _raise_errors(self, unacknowledged_reason: str | None = None) -> NoReturn:
        counts, errors = self._ledger.counts(), self._ledger.errors
        first = counts.first_error
        refused = kafka_clients.access_error(first, self._settings) if first else None
        if refused is not None:  # retrying cannot help: say why in one line
            raise refused
        raise PublishError(not_delivered_message(counts, self.topic, self.bootstrap_servers,
                                               unacknowledged_reason), errors, counts)
