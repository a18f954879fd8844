"""The app-facing reader of ``recommendations``: typed, committed-only, latest per user.

``RecommendationReader`` follows every partition of the topic with ``read_committed`` (a
scorer's aborted transaction is never seen), decodes each message with the scorer's own
type (``streamrec.messages.Recommendation``) and keeps the latest recommendation per user.
A message that does not decode (foreign bytes, another schema, oversized) is skipped and
counted in ``skipped``, never raised: one bad record must not stop an app.

Two styles, same reader::

    with RecommendationReader(settings) as reader:
        for rec in reader:                      # blocks; ends when close() is called
            show(rec.user_id, [i.item_id for i in rec.items])

    reader.run(callback, until=lambda: done.is_set())   # callback(rec) per message
    reader.latest("u42")                        # the newest one seen for a user, or None

Built through ``streamrec.transport.kafka_clients``: TLS and SASL come from ``settings``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from types import TracebackType
from typing import Callable, Iterator

import msgspec
from kafka import TopicPartition as KafkaTopicPartition

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.messages import Recommendation, recommendation_decoder

# A recommendation is k items with a few scores: far below this. Larger is not ours.
MAX_MESSAGE_BYTES = 1024 * 1024


class RecommendationReader:
    """Follow ``recommendations`` and keep the latest one per user (at most ``max_users``).

    Parameters
    ----------
    settings
        Bootstrap servers, security and topic prefix.
    from_beginning
        Read what the topic holds already (default: only what arrives from now on).
    max_users
        Users kept for ``latest``; the least recently updated are forgotten first.
    """

    def __init__(self, settings: Settings, *, from_beginning: bool = False,
                 max_users: int = 1_000_000, poll_timeout_ms: int = 200,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        if max_users <= 0:
            raise ValueError("max_users must be positive")
        self.topic = settings.topics.recommendations
        self.max_users = max_users
        self.poll_timeout_ms = poll_timeout_ms
        self.max_message_bytes = max_message_bytes
        self.received = 0  # decoded and kept
        self.skipped = 0   # did not decode, or too large
        self._latest: OrderedDict[str, Recommendation] = OrderedDict()
        self._lock = threading.Lock()  # guards _latest and the counters (latest() from any thread)
        # The consumer is not thread-safe: close() from another thread waits for the poll.
        self._io_lock = threading.Lock()
        self._closed = threading.Event()
        self._consumer_closed = False
        self._consumer = kafka_clients.committed_reader(settings)
        # (read_committed: an aborted batch's recommendations never show)
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [KafkaTopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        if from_beginning:
            self._consumer.seek_to_beginning(*tps)
        else:
            self._consumer.seek_to_end(*tps)
            for tp in tps:
                self._consumer.position(tp)  # resolve now: "from now on" means now

    def poll(self, timeout_ms: int | None = None) -> list[Recommendation]:
        """One fetch: the recommendations that arrived, in partition order (maybe none)."""
        with self._io_lock:
            if self._closed.is_set():
                return []
            fetched = self._consumer.poll(timeout_ms=self.poll_timeout_ms if timeout_ms is None
                                          else timeout_ms)
        out: list[Recommendation] = []
        for messages in fetched.values():
            for message in messages:
                rec = self._decode(message.value)
                if rec is not None:
                    out.append(rec)
        with self._lock:
            for rec in out:
                self._latest[rec.user_id] = rec
                self._latest.move_to_end(rec.user_id)
            while len(self._latest) > self.max_users:
                self._latest.popitem(last=False)
            self.received += len(out)
        return out

    def _decode(self, value: bytes | None) -> Recommendation | None:
        if value is None or len(value) > self.max_message_bytes:
            self.skipped += 1
            return None
        try:
            return recommendation_decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError,
                TypeError, RecursionError, MemoryError):
            self.skipped += 1  # foreign or corrupt bytes: counted, never raised
            return None

    def latest(self, user_id: str) -> Recommendation | None:
        """The newest recommendation seen for ``user_id``, or None."""
        with self._lock:
            return self._latest.get(user_id)

    def users(self) -> int:
        with self._lock:
            return len(self._latest)

    def __iter__(self) -> Iterator[Recommendation]:
        """Every recommendation as it arrives; ends once ``close()`` was called."""
        while not self._closed.is_set():
            yield from self.poll()

    def run(self, callback: Callable[[Recommendation], object], *,
            until: Callable[[], bool] | None = None, timeout_s: float | None = None) -> int:
        """Call ``callback`` for each recommendation until ``until()`` is true, ``timeout_s``
        passed or ``close()`` was called. Returns how many were delivered."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delivered = 0
        while not self._closed.is_set():
            for rec in self.poll():
                callback(rec)
                delivered += 1
            if (until is not None and until()) or (deadline is not None
                                                   and time.monotonic() >= deadline):
                break
        return delivered

    def close(self) -> None:
        """Stop iterating and release the connection (idempotent)."""
        self._closed.set()
        with self._io_lock:
            if not self._consumer_closed:
                self._consumer_closed = True
                self._consumer.close()

    def __enter__(self) -> "RecommendationReader":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
