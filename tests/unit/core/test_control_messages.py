"""streamrec.control: what the CLI and the trainer write is what ingest reads."""

from __future__ import annotations

import json

import pytest

from streamrec.control import (ADOPT_MODEL, CONTROL_HEADER, CONTROL_KEY, FORGET,
                               AdoptModelRequest, adopt_model_requests, forget_request, kind_of,
                               send_control)


class RecordingProducer:
    """Stands in for KafkaProducer.send: records each call, acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, topic: str, **kwargs: object) -> "RecordingProducer":
        self.sent.append({"topic": topic, **kwargs})
        return self

    def get(self, timeout: float) -> None:
        return None


def test_forget_is_keyed_by_the_user_and_carries_no_value() -> None:
    message = forget_request("u7")
    assert (message.key, message.value, message.partition) == (b"u7", None, None)
    assert kind_of(message.headers) == FORGET


def test_adopt_model_goes_to_every_partition_and_round_trips() -> None:
    sha = {"items.json": "a" * 64, "item_table.npy": "b" * 64}
    messages = adopt_model_requests("v000003", "/models/v000003", sha, {3, 1, 0, 2},
                                    uri="file:///models/v000003")
    assert [m.partition for m in messages] == [0, 1, 2, 3]
    assert {m.key for m in messages} == {CONTROL_KEY}
    assert all(kind_of(m.headers) == ADOPT_MODEL for m in messages)
    assert len({m.value for m in messages}) == 1  # the same request everywhere
    request = AdoptModelRequest.decode(messages[0].value)
    assert (request.version, request.path, dict(request.sha256)) == (
        "v000003", "/models/v000003", sha)
    assert json.loads(messages[0].value or b"")["uri"] == "file:///models/v000003"


@pytest.mark.parametrize("value", [None, b"", b"{broken", b"[]", b'{"version": "v1"}',
                                   b'{"version": "v1", "path": "/m", "sha256": 3}'])
def test_a_malformed_adopt_request_raises_value_error(value: bytes | None) -> None:
    with pytest.raises(ValueError):
        AdoptModelRequest.decode(value)


def test_ordinary_events_have_no_control_kind() -> None:
    assert kind_of([]) is None
    assert kind_of([("trace-id", b"x")]) is None
    assert kind_of([("trace-id", b"x"), (CONTROL_HEADER, b"other")]) == b"other"


def test_send_control_sends_with_headers_and_explicit_partitions() -> None:
    producer = RecordingProducer()
    send_control(producer, "clicks", [forget_request("u1")]
                 + adopt_model_requests("v1", "/m", {}, [0, 1]))
    assert [(s["key"], s["partition"]) for s in producer.sent] == [
        (b"u1", None), (CONTROL_KEY, 0), (CONTROL_KEY, 1)]
    assert producer.sent[0]["headers"] == [(CONTROL_HEADER, FORGET)]
