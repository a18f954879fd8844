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

Example (needs a broker)::

    with ClickPublisher("127.0.0.1:9092", "clicks") as publisher:
        publisher.publish(event)
    # leaving the block flushed every event, or raised PublishError

    # A secured cluster: the same connection config every streamrec client takes.
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "app", password, ssl_cafile="ca.pem")
    with ClickPublisher("broker:9094", "clicks", security=security) as publisher: ...
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, NoReturn

from kafka.codec import has_lz4
from kafka.errors import KafkaError

from streamrec import kafka_clients
from streamrec.config import Settings
from streamrec.connection import KafkaAccessError, KafkaSecurity, KafkaUnreachableError
from streamrec.events import ClickEvent, encode_click


__all__ = ["ClickPublisher", "KafkaAccessError", "PublishError", "producer_config"]


class PublishError(RuntimeError):
    """One or more events could not be written to Kafka; ``errors`` holds the first few."""

    def __init__(self, message: str, errors: list[BaseException] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


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
        TLS/SASL connection config (default: plaintext); ``from_settings`` takes both from
        a ``Settings``.
    **producer_overrides
        Extra ``KafkaProducer`` settings (checked by ``producer_config``).
    """

    max_kept_errors = 10

    def __init__(self, bootstrap_servers: str, topic: str, *,
                 security: KafkaSecurity | None = None, **producer_overrides: Any) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        config = producer_config(**producer_overrides)
        self._settings = Settings(bootstrap_servers=bootstrap_servers,
                                  kafka_security=security or KafkaSecurity())
        try:
            self._producer = kafka_clients.producer(self._settings, **config)
        except (KafkaError, KafkaUnreachableError) as exc:
            raise PublishError(f"cannot connect to Kafka at {bootstrap_servers}: {exc}",
                               [exc]) from exc
        self.published = 0  # handed to the producer
        self.failed = 0
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()  # callbacks run on the producer's IO thread
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, topic: str | None = None,
                      **producer_overrides: Any) -> "ClickPublisher":
        """A publisher with the settings' bootstrap servers and security, to ``clicks`` by default."""
        return cls(settings.bootstrap_servers, topic or settings.topics.clicks,
                   security=settings.kafka_security, **producer_overrides)

    def publish(self, event: ClickEvent) -> None:
        """Queue one event for sending (asynchronous); raise if an earlier send failed."""
        self.publish_raw(event.user_id.encode(), encode_click(event))

    def publish_raw(self, key: bytes | None, value: bytes,
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue an arbitrary payload (for replaying logs verbatim and DLQ tests)."""
        if self._closed:
            raise PublishError("publisher is closed")
        if self.failed:
            self._raise_errors()
        # The record timestamp stays "now" on purpose: replayed logs carry event times from
        # years ago, and with those as record timestamps time-based retention would delete
        # the segments at once. Event time travels inside the payload (``ts``).
        try:
            future = self._producer.send(self.topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            self._record_error(exc)
            self._raise_errors()
        future.add_errback(self._record_error)
        self.published += 1

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued event is acknowledged; raise ``PublishError`` if any failed."""
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            self._record_error(exc)
        if self.failed:
            self._raise_errors()

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release the connection; raises ``PublishError`` if events were lost."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True
            self._producer.close(timeout=timeout)

    def metrics(self) -> dict[str, Any]:
        """kafka-python's producer metrics (batch sizes, record rates, errors)."""
        return self._producer.metrics()

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

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            if len(self._errors) < self.max_kept_errors:
                self._errors.append(exc)

    def _raise_errors(self) -> NoReturn:
        with self._lock:
            errors = list(self._errors)
            failed = self.failed
        first = errors[0] if errors else None
        refused = kafka_clients.access_error(first, self._settings) if first else None
        if refused is not None:  # retrying cannot help: say why in one line
            raise refused
        raise PublishError(f"{failed} send(s) to topic {self.topic!r} at "
                           f"{self.bootstrap_servers} failed; first error: {first!r}", errors)
