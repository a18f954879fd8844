"""Delivery accounting: every event handed to the producer is delivered, failed or unacknowledged.

kafka-python reports each send through its future, but its own ``flush()`` and ``close()``
wait without a bound by default, and in kafka-python 3.0.12 an idempotent producer can wedge
for good (see ``stuck_reason``), so a future may never resolve. ``DeliveryLedger`` counts
outcomes from the futures' callbacks and waits for them against a deadline of its own; the
publisher gives up at that deadline and reports ``published = delivered + failed +
unacknowledged`` exactly. What this knows of kafka-python lives here too: the timeouts
derived from the delivery timeout, the wedge, and how to stop a producer that is stuck.

>>> from kafka.future import Future
>>> ledger = DeliveryLedger()
>>> ok, lost = Future(), Future()
>>> ledger.track(ok); ledger.track(lost)
>>> _ = ok.success(None); _ = lost.failure(ValueError("boom"))
>>> counts = ledger.counts()
>>> counts.published, counts.delivered, counts.failed, counts.unacknowledged
(2, 1, 1, 0)
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from streamrec.transport.verified_commit import force_close  # the one place that stops a sender

DEFAULT_DELIVERY_TIMEOUT_S = 120.0  # Kafka's delivery.timeout.ms
MAX_DELIVERY_TIMEOUT_S = 86_400.0  # a day: past that, "retry" has become "hang"
# Past the delivery timeout, the time kafka-python's IO thread gets to expire the last
# batches and run their callbacks before the publisher stops waiting for it.
GIVE_UP_GRACE_S = 5.0
CLOSE_TIMEOUT_S = 10.0  # closing a producer with nothing in flight takes milliseconds
# How often a wait looks at the producer for a wedge, at most (a callback wakes it sooner).
_CHECK_EVERY_S = 0.5


def delivery_config(delivery_timeout_s: float, linger_ms: int = 10) -> dict[str, int]:
    """KafkaProducer timeouts that keep every wait within ``delivery_timeout_s``.

    Kafka retries an event until ``delivery_timeout_ms``; the other waits are capped by it:
    a request (Kafka requires delivery >= linger + request timeout), a ``send`` blocked on
    missing metadata (``max_block_ms``) and the first connection (``bootstrap_timeout_ms``).
    """
    delivery_ms = int(delivery_timeout_s * 1000)
    return {"delivery_timeout_ms": delivery_ms,
            "request_timeout_ms": min(30_000, delivery_ms - linger_ms),
            "max_block_ms": min(60_000, delivery_ms),
            "bootstrap_timeout_ms": min(30_000, delivery_ms)}


def check_delivery_timeout(value: object, linger_ms: int) -> float:
    """``value`` as seconds, if it leaves a request at least 1 ms after ``linger_ms``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"delivery_timeout_s must be a number of seconds, got {value!r}")
    if not (linger_ms + 1) / 1000 <= value <= MAX_DELIVERY_TIMEOUT_S:
        raise ValueError(f"delivery_timeout_s must be above linger ({linger_ms} ms) and at "
                         f"most {MAX_DELIVERY_TIMEOUT_S:g} s, got {value!r}")
    return float(value)


def check_wait_timeout(timeout: float | None) -> None:
    """A ``flush``/``close`` timeout is None or a finite number of seconds >= 0."""
    if timeout is not None and not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")


@dataclass(frozen=True)
class DeliveryCounts:
    """Outcomes of the events handed to a producer, at one moment.

    ``final`` is True once the publisher stopped waiting (closed or gave up): from then on an
    unacknowledged event stays counted as not delivered, whatever Kafka does with it later.
    """

    published: int
    delivered: int
    failed: int
    first_error: BaseException | None = None
    final: bool = False

    @property
    def unacknowledged(self) -> int:
        """Handed to the producer, neither acknowledged nor failed (yet, unless ``final``)."""
        return self.published - self.delivered - self.failed

    @property
    def not_delivered(self) -> int:
        return self.published - self.delivered


class DeliveryLedger:
    """Thread-safe counts of sends and their outcomes; callbacks run on the producer's IO thread."""

    def __init__(self, max_kept_errors: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_kept_errors = max_kept_errors
        self._clock = clock
        self._changed = threading.Condition()
        self._published = self._delivered = self._failed = 0
        self._errors: list[BaseException] = []
        self._final = False
        self.last_published_at: float | None = None

    def track(self, future: Any) -> None:
        """Count an event kafka-python accepted; ``future`` is what ``send`` returned."""
        with self._changed:
            self._published += 1
            self.last_published_at = self._clock()
        # Counted before the callbacks exist: one that fires at once still finds its event.
        future.add_callback(self._on_delivered)
        future.add_errback(self.record_failure)

    def refused(self, error: BaseException) -> None:
        """Count an event whose ``send`` raised: handed over, and failed on the spot."""
        with self._changed:
            self._published += 1
            self.last_published_at = self._clock()
        self.record_failure(error)

    def record_failure(self, error: BaseException) -> None:
        with self._changed:
            if self._final:  # given up on: it is already counted as not delivered
                return
            self._failed += 1
            if len(self._errors) < self.max_kept_errors:
                self._errors.append(error)
            self._changed.notify_all()

    def _on_delivered(self, _metadata: object) -> None:
        with self._changed:
            if self._final:
                return
            self._delivered += 1
            self._changed.notify_all()

    @property
    def errors(self) -> list[BaseException]:
        with self._changed:
            return list(self._errors)

    def counts(self) -> DeliveryCounts:
        with self._changed:
            return DeliveryCounts(self._published, self._delivered, self._failed,
                                  self._errors[0] if self._errors else None, self._final)

    def finish(self, reason: BaseException | None = None) -> DeliveryCounts:
        """Stop counting: later outcomes are ignored, so the counts reported stay the truth.

        ``reason`` becomes the first error if there was none (events left unacknowledged).
        """
        with self._changed:
            self._final = True
            if reason is not None and not self._errors and self._published > self._delivered:
                self._errors.append(reason)
        return self.counts()

    def wait(self, done: Callable[[DeliveryCounts], bool], deadline: float,
             stuck: Callable[[], str | None] = lambda: None) -> str | None:
        """Block until ``done(counts)``, ``deadline`` (monotonic) passes or ``stuck()`` says why
        waiting is pointless. Returns None when done, else ``"deadline"`` or the stuck reason.
        """
        while True:
            if done(self.counts()):
                return None
            left = deadline - self._clock()
            if left <= 0:
                return "deadline"
            # Outside our lock: ``stuck`` may take kafka-python's, whose holder may be about
            # to run one of our callbacks.
            reason = stuck()
            if reason is not None:
                return reason
            with self._changed:
                if not done(self.counts()):  # an outcome in between would not wake us
                    self._changed.wait(min(left, _CHECK_EVERY_S))


def stuck_reason(producer: Any) -> str | None:
    """Why ``producer`` will never resolve its pending sends, or None if it still may.

    kafka-python 3.0.12: when a batch that was already sent expires (a delivery timeout
    during an outage), the idempotent producer calls ``TransactionManager.reset_producer_id``,
    which drops the producer id but leaves the state ``READY``. ``init_producer_id`` only
    acts in ``UNINITIALIZED``, so no new id is ever asked for, and the sender's loop waits
    for one forever: no batch is sent or expired again, even after the broker is back. This
    reads the private ``_transaction_manager`` (``_current_state``, ``has_producer_id``) to
    notice; ``tests/unit/producers/test_delivery_accounting.py`` pins both the internals and
    the wedge, so a kafka-python upgrade that changes either says so there.
    """
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None or manager.is_transactional():
        return None
    state = getattr(manager, "_current_state", None)
    if getattr(state, "name", None) == "READY" and not manager.has_producer_id():
        return ("the producer lost its producer id after a delivery timeout and "
                "kafka-python 3.0.12 never asks for a new one")
    return None


def stop_producer(producer: Any, graceful: bool) -> None:
    """Close a kafka-python producer without ever waiting long.

    ``close(timeout)`` raises when its flush times out and leaves the sender thread running,
    retrying; so on that failure, or when ``graceful`` is False (events still pending, given
    up on), the sender is stopped through ``force_close``, which fails what it still holds.
    """
    if graceful:
        try:
            producer.close(timeout=CLOSE_TIMEOUT_S)
            return
        except Exception:  # noqa: BLE001 - its flush timed out: stop it the hard way
            pass
    force_close(producer)
    with contextlib.suppress(Exception):
        producer.close(timeout=0)  # drops its atexit hook, which would flush again


def describe_error(error: BaseException | None, limit: int = 300) -> str:
    """``Type: message`` on one line, at most ``limit`` characters."""
    if error is None:
        return "none"
    text = " ".join(str(error).split())
    name = type(error).__name__
    text = text if name in text else (f"{name}: {text}" if text else name)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def not_delivered_message(counts: DeliveryCounts, topic: str, bootstrap_servers: str,
                          unacknowledged_reason: str | None = None) -> str:
    """One line: how many of the published events were not delivered, and why."""
    parts = [f"{counts.delivered} delivered", f"{counts.failed} failed"]
    if counts.unacknowledged:
        parts.append(f"{counts.unacknowledged} "
                     + ("unacknowledged" if counts.final else "still in flight")
                     + (f": {unacknowledged_reason}" if unacknowledged_reason else ""))
    return (f"{counts.not_delivered} of {counts.published} events not delivered to topic "
            f"{topic!r} at {bootstrap_servers} ({', '.join(parts)}); "
            f"first error: {describe_error(counts.first_error)}")
