"""Ask for a recommendation and wait for it: ``requests`` -> scorer -> ``recommendations``.

The scorer answers a request on ``requests`` with one ``Recommendation`` whose
``trigger_kind`` is ``"request"`` and whose ``trigger_id`` is the request's ``request_id``,
keyed by the user like every recommendation. ``RecommendationClient`` sends a request with a
fresh id and reads ``recommendations`` (``read_committed``: the scorer's transactions) until
that reply arrives, or raises ``RecommendationTimeout`` once ``timeout`` seconds passed.

The client follows the topic from the moment it was built, not from a request's send: a
reply can never arrive before the client looks. Messages of users nobody waits for are
skipped by key, without decoding; a waited-for user's message that does not decode is
skipped and counted in ``skipped``, never raised. Several threads may wait at once: one
polls at a time and hands every reply to its caller.

Example (needs a broker and a running scorer)::

    with RecommendationClient(settings) as client:
        rec = client.recommend("u42", k=5, timeout=5.0)
        print(rec.model_version, [item.item_id for item in rec.items])

    rec = recommend(settings, "u42", k=5)   # one-off: a client for one request
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter
from types import TracebackType

import msgspec
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError

from streamrec.config import Settings
from streamrec.input_bounds import check_id, check_user_id
from streamrec.messages import Recommendation, encode_request, recommendation_decoder
from streamrec.producers.reader import MAX_MESSAGE_BYTES
from streamrec.transport import kafka_clients

__all__ = ["DEFAULT_TIMEOUT_S", "MAX_TIMEOUT_S", "RecommendationClient", "RecommendationTimeout",
           "RequestError", "recommend"]

DEFAULT_TIMEOUT_S = 10.0
# A request/reply wait is for an app serving a user: minutes of waiting is a bug upstream.
MAX_TIMEOUT_S = 300.0
# Waiting callers at once; past it a call is refused rather than queue without bound.
DEFAULT_MAX_IN_FLIGHT = 10_000


class RecommendationTimeout(TimeoutError):
    """No reply to a request within its timeout (the scorer is down, lagging or elsewhere)."""

    def __init__(self, message: str, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class RequestError(RuntimeError):
    """The request could not be written to ``requests`` (refused by the broker)."""


def check_timeout(timeout: object) -> float:
    """``timeout`` as seconds: a finite number in (0, MAX_TIMEOUT_S], else ValueError."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds, not {timeout!r}")
    return float(timeout)


class RecommendationClient:
    """Request/reply over ``requests`` and ``recommendations``, correlated by request id.

    Parameters
    ----------
    settings
        Bootstrap servers, security, topic prefix and the id bounds (``max_id_bytes``,
        ``max_k``, ``max_exclude_items``) a request is checked against before it is sent.
    poll_timeout_ms
        Longest single fetch; a waiting caller notices its reply within about this.
    """

    def __init__(self, settings: Settings, *, poll_timeout_ms: int = 100,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        if poll_timeout_ms <= 0 or max_in_flight <= 0 or max_message_bytes <= 0:
            raise ValueError("poll_timeout_ms, max_in_flight and max_message_bytes must be positive")
        self.settings = settings
        self.requests_topic = settings.topics.requests
        self.replies_topic = settings.topics.recommendations
        self.poll_timeout_ms = poll_timeout_ms
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.skipped = 0  # replies of a waited-for user that did not decode, or too large
        self._lock = threading.Lock()  # guards the three below and the counter
        self._waiting: set[str] = set()  # request ids
        self._waiting_keys: Counter[bytes] = Counter()  # user keys of those requests
        self._replies: dict[str, Recommendation] = {}
        self._io_lock = threading.Lock()  # the consumer is not thread-safe: one poller
        self._closed = False
        self._consumer = kafka_clients.committed_reader(settings)
        try:
            partitions = self._consumer.partitions_for_topic(self.replies_topic)
            if not partitions:
                raise ValueError(f"topic {self.replies_topic} does not exist at "
                                 f"{settings.bootstrap_servers} (streamrec topics create)")
            tps = [KafkaTopicPartition(self.replies_topic, p) for p in sorted(partitions)]
            self._consumer.assign(tps)
            self._consumer.seek_to_end(*tps)
            for tp in tps:
                self._consumer.position(tp)  # resolved now: no reply can slip in before
            # linger 0: a request is one message someone waits for, not a batch to fill.
            self._producer = kafka_clients.producer(settings, linger_ms=0, max_block_ms=10_000)
        except BaseException:
            self._consumer.close()
            raise

    def recommend(self, user_id: str, k: int | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                  *, exclude_items: list[str] | None = None) -> Recommendation:
        """The scorer's answer to one request for ``user_id`` (``k`` items, default: the
        scorer's ``top_k``), or ``RecommendationTimeout`` after ``timeout`` seconds."""
        timeout = check_timeout(timeout)
        self._check_request(user_id, k, exclude_items or [])
        deadline = time.monotonic() + timeout
        request_id = uuid.uuid4().hex
        key = user_id.encode("utf-8")
        with self._lock:
            if self._closed:
                raise RuntimeError("RecommendationClient is closed")
            if len(self._waiting) >= self.max_in_flight:
                raise RuntimeError(f"{self.max_in_flight} requests are already waiting")
            self._waiting.add(request_id)
            self._waiting_keys[key] += 1
        try:
            self._send(request_id, user_id, key, k, exclude_items or [], deadline, timeout)
            return self._await(request_id, user_id, deadline, timeout)
        finally:
            with self._lock:
                self._waiting.discard(request_id)
                self._replies.pop(request_id, None)
                self._waiting_keys[key] -= 1
                if self._waiting_keys[key] <= 0:
                    del self._waiting_keys[key]

    def _check_request(self, user_id: str, k: int | None, exclude_items: list[str]) -> None:
        # The scorer dead-letters a request it cannot take: refusing here says why, at once.
        settings = self.settings
        check_user_id(user_id, "user_id", settings.max_id_bytes)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int)
                              or not 1 <= k <= settings.max_k):
            raise ValueError(f"k must be an integer in 1..{settings.max_k} (max_k), not {k!r}")
        if len(exclude_items) > settings.max_exclude_items:
            raise ValueError(f"{len(exclude_items)} exclude_items > limit "
                             f"{settings.max_exclude_items} (max_exclude_items)")
        for item_id in exclude_items:
            check_id(item_id, "exclude_items", settings.max_id_bytes)

    def _send(self, request_id: str, user_id: str, key: bytes, k: int | None,
              exclude_items: list[str], deadline: float, timeout: float) -> None:
        value = encode_request(request_id, user_id, k, exclude_items)
        try:
            future = self._producer.send(self.requests_topic, key=key, value=value)
            future.get(timeout=max(deadline - time.monotonic(), 0.001))
        except KafkaTimeoutError:
            raise RecommendationTimeout(
                f"request {request_id} for user {user_id[:64]!r} was not acknowledged by "
                f"{self.settings.bootstrap_servers} ({self.requests_topic}) within "
                f"{timeout:g} s", request_id) from None
        except KafkaError as error:
            raise RequestError(f"request {request_id} could not be written to "
                               f"{self.requests_topic} at {self.settings.bootstrap_servers}: "
                               f"{type(error).__name__}: {str(error)[:200]}") from error

    def _await(self, request_id: str, user_id: str, deadline: float,
               timeout: float) -> Recommendation:
        while True:
            with self._lock:
                reply = self._replies.pop(request_id, None)
            if reply is not None:
                return reply
            if self._closed:
                raise RuntimeError(f"RecommendationClient closed while request {request_id} "
                                   "waited")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RecommendationTimeout(
                    f"no recommendation for request {request_id} (user {user_id[:64]!r}) on "
                    f"{self.replies_topic} within {timeout:g} s: is a scorer consuming "
                    f"{self.requests_topic} at {self.settings.bootstrap_servers}?", request_id)
            # Another caller may be polling; its poll delivers our reply too.
            if self._io_lock.acquire(timeout=min(remaining, self.poll_timeout_ms / 1000)):
                try:
                    self._poll_once(min(int(remaining * 1000) + 1, self.poll_timeout_ms))
                finally:
                    self._io_lock.release()

    def _poll_once(self, timeout_ms: int) -> None:
        if self._closed:
            return
        fetched = self._consumer.poll(timeout_ms=timeout_ms)
        for messages in fetched.values():
            for message in messages:
                with self._lock:
                    wanted = message.key in self._waiting_keys
                if wanted:
                    self._take(message.value)

    def _take(self, value: bytes | None) -> None:
        rec: Recommendation | None = None
        if value is not None and len(value) <= self.max_message_bytes:
            try:
                rec = recommendation_decoder.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError,
                    TypeError, RecursionError, MemoryError):
                rec = None  # foreign or corrupt bytes: counted below, never raised
        with self._lock:
            if rec is None:
                self.skipped += 1
            elif rec.trigger_kind == "request" and rec.trigger_id in self._waiting:
                self._replies[rec.trigger_id] = rec

    def close(self) -> None:
        """Release both connections (idempotent); waiting callers time out."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._io_lock:
            self._consumer.close()
        self._producer.close(timeout=5)

    def __enter__(self) -> "RecommendationClient":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def recommend(settings: Settings, user_id: str, k: int | None = None,
              timeout: float = DEFAULT_TIMEOUT_S, *,
              exclude_items: list[str] | None = None) -> Recommendation:
    """One request and its reply with a client of its own (connects each call: for a few
    requests; an app serving traffic keeps one ``RecommendationClient``)."""
    timeout = check_timeout(timeout)
    with RecommendationClient(settings) as client:
        return client.recommend(user_id, k, timeout, exclude_items=exclude_items)
