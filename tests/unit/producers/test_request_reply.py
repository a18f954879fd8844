"""RecommendationClient without a broker: Kafka's two clients are fakes, and the fake
producer plays the scorer, answering each request on the fake ``recommendations`` after
some noise (other users, the same user's event-triggered message, another request's reply,
foreign bytes). The real round trip is tests/integration/test_app_read_side.py."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any, Callable

import msgspec
import pytest

from streamrec.config import Settings
from streamrec.consumers import score
from streamrec.messages import Recommendation, RecommendationRequest, ScoredItem
from streamrec.producers import request_reply
from streamrec.producers.request_reply import (MAX_TIMEOUT_S, RecommendationClient,
                                               RecommendationTimeout, check_timeout)

SETTINGS = Settings(bootstrap_servers="fake:9092", topic_prefix="t-")


def _rec(user_id: str, trigger_id: str, kind: str = "request") -> bytes:
    return msgspec.json.encode(Recommendation(
        user_id=user_id, trigger_id=trigger_id, trigger_kind=kind, model_version="m1",
        items=[ScoredItem("i1", 1.0, {"popularity": 1.0})], event_ts=0.0, end_to_end_ms=None,
        score_ms=0.1, scored_at_ms=1))


class FakeConsumer:
    def __init__(self) -> None:
        self.queue: list[tuple[bytes | None, bytes | None]] = []
        self.lock = threading.Lock()
        self.closed = False
        self.positions_resolved = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}

    def assign(self, tps: list) -> None: ...
    def seek_to_end(self, *tps: Any) -> None: ...

    def position(self, tp: Any) -> int:
        self.positions_resolved += 1
        return 0

    def poll(self, timeout_ms: int) -> dict:
        with self.lock:
            taken, self.queue = self.queue, []
        if not taken:
            time.sleep(timeout_ms / 1000)
        return {"tp": [SimpleNamespace(key=k, value=v) for k, v in taken]}

    def close(self) -> None:
        self.closed = True


class FakeScorer:
    """The producer: each request is answered through ``answer(request) -> messages``."""

    def __init__(self, consumer: FakeConsumer,
                 answer: Callable[[RecommendationRequest], list[tuple[bytes | None, bytes | None]]]):
        self.consumer, self.answer, self.sent = consumer, answer, []

    def send(self, topic: str, key: bytes, value: bytes) -> Any:
        request = msgspec.json.decode(value, type=RecommendationRequest)
        self.sent.append((topic, key, request))
        with self.consumer.lock:
            self.consumer.queue += self.answer(request)
        return SimpleNamespace(get=lambda timeout: None)

    def close(self, timeout: float) -> None: ...


def _client(monkeypatch: pytest.MonkeyPatch, answer) -> tuple[RecommendationClient, FakeScorer]:
    consumer = FakeConsumer()
    scorer = FakeScorer(consumer, answer)
    monkeypatch.setattr(request_reply.kafka_clients, "committed_reader", lambda s: consumer)
    monkeypatch.setattr(request_reply.kafka_clients, "producer", lambda s, **kw: scorer)
    return RecommendationClient(SETTINGS, poll_timeout_ms=10), scorer


def _noisy_answer(request: RecommendationRequest) -> list[tuple[bytes | None, bytes | None]]:
    key = request.user_id.encode()
    return [(b"someone-else", _rec("someone-else", request.request_id)),
            (key, _rec(request.user_id, "click-7", kind="event")),
            (key, _rec(request.user_id, "another-request")),
            (key, b"\xff not json"),
            (key, None),
            (key, _rec(request.user_id, request.request_id))]


def test_the_reply_is_the_one_with_the_request_id(monkeypatch: pytest.MonkeyPatch) -> None:
    client, scorer = _client(monkeypatch, _noisy_answer)
    with client:
        rec = client.recommend("u42", k=3, timeout=2.0, exclude_items=["i9"])
    (topic, key, request), = scorer.sent
    assert topic == "t-requests" and key == b"u42"
    assert (request.user_id, request.k, request.exclude_items) == ("u42", 3, ["i9"])
    assert rec.trigger_kind == "request" and rec.trigger_id == request.request_id
    assert rec.user_id == "u42"
    assert client.skipped == 2  # foreign bytes and the null value of a waited-for user


def test_no_reply_is_a_timeout_naming_the_request_and_the_topics(monkeypatch) -> None:
    client, _ = _client(monkeypatch, lambda request: [])
    started = time.monotonic()
    with client, pytest.raises(RecommendationTimeout) as caught:
        client.recommend("u42", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    message = str(caught.value)
    assert caught.value.request_id in message and "'u42'" in message
    assert "t-recommendations within 0.3 s" in message and "t-requests" in message
    assert isinstance(caught.value, TimeoutError) and "\n" not in message


def test_concurrent_callers_each_get_their_own_reply(monkeypatch) -> None:
    client, _ = _client(monkeypatch, _noisy_answer)
    results: dict[str, Recommendation] = {}

    def ask(user: str) -> None:
        results[user] = client.recommend(user, timeout=5.0)

    threads = [threading.Thread(target=ask, args=(f"u{n}",)) for n in range(8)]
    with client:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sorted(results) == sorted(f"u{n}" for n in range(8))
    assert all(rec.user_id == user for user, rec in results.items())
    assert len({rec.trigger_id for rec in results.values()}) == 8


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), MAX_TIMEOUT_S + 1,
                                     "5", True, None])
def test_a_wait_out_of_bounds_is_refused(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout"):
        check_timeout(timeout)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"user_id": ""}, "user_id is empty"),
    ({"user_id": "__streamrec_x"}, "reserved"),
    ({"user_id": "u", "k": 0}, "k must be an integer in 1..200"),
    ({"user_id": "u", "k": 201}, "k must be an integer"),
    ({"user_id": "u", "exclude_items": ["ok"] * 1001}, "exclude_items > limit 1000"),
    ({"user_id": "u", "exclude_items": ["x" * 300]}, "longer than 256"),
])
def test_a_request_the_scorer_would_dead_letter_is_refused_before_sending(
        monkeypatch, kwargs: dict, match: str) -> None:
    client, scorer = _client(monkeypatch, _noisy_answer)
    with client, pytest.raises(ValueError, match=match):
        client.recommend(**kwargs)
    assert scorer.sent == []


def test_the_app_side_request_is_the_scorers_request() -> None:
    # The scorer re-exports the contract's type: what an app sends is what the scorer decodes.
    def fields(kind: type) -> dict:
        schema = msgspec.json.schema(kind)
        definition = schema["$defs"][kind.__name__]
        return {"properties": definition["properties"], "required": definition["required"]}

    assert fields(RecommendationRequest) == fields(score.RecommendationRequest)
    from streamrec.messages import encode_request
    assert encode_request("r", "u", 3, ["a"]) == score.encode_request("r", "u", 3, ["a"])
    assert encode_request("r", "u") == score.encode_request("r", "u")


def test_close_ends_a_waiting_call_at_once(monkeypatch) -> None:
    client, _ = _client(monkeypatch, lambda request: [])
    failed: list[BaseException] = []

    def ask() -> None:
        try:
            client.recommend("u42", timeout=30.0)
        except BaseException as error:  # noqa: BLE001 - inspected below
            failed.append(error)

    waiter = threading.Thread(target=ask)
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    client.close()
    waiter.join(5)
    assert not waiter.is_alive() and time.monotonic() - started < 2
    assert isinstance(failed[0], RuntimeError) and "closed" in str(failed[0])
    with pytest.raises(RuntimeError, match="closed"):
        client.recommend("u42")
