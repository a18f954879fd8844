"""streamrec.control: what the CLI and the trainer write is what ingest reads."""

from __future__ import annotations

import json

import pytest

from streamrec.control import (ADOPT_MODEL, CONTROL_HEADER, CONTROL_KEY, FORGET,
                               AdoptModelRequest, BadControl, adopt_model_requests, forget_request, kind_of,
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


ANNOUNCEMENT = json.dumps({"version": "v000003", "path": "/models/v000003",
                           "manifest_sha256": "a" * 64, "uri": "file:///models/v000003",
                           "metrics": {"ndcg@10": 0.1}}, sort_keys=True).encode()


def test_adopt_model_goes_to_every_partition_and_carries_the_announcement() -> None:
    messages = adopt_model_requests(ANNOUNCEMENT, {3, 1, 0, 2})
    assert [m.partition for m in messages] == [0, 1, 2, 3]
    assert {m.key for m in messages} == {CONTROL_KEY}
    assert all(kind_of(m.headers) == ADOPT_MODEL for m in messages)
    assert {m.value for m in messages} == {ANNOUNCEMENT}  # the models value, byte for byte
    request = AdoptModelRequest.decode(messages[0].value)
    assert (request.version, request.path, request.manifest_sha256) == (
        "v000003", "/models/v000003", "a" * 64)
    assert request.fields["uri"] == "file:///models/v000003"


@pytest.mark.parametrize("value", [
    None, b"", b"{broken", b"[]", b'{"version": "v1"}', b"\xff\xfe",
    b'{"version": "v000001", "manifest_sha256": 3}',
    b'{"version": "v000001", "manifest_sha256": "%s", "path": 7}' % (b"a" * 64),
    b'{"version": "../v000001", "manifest_sha256": "%s"}' % (b"a" * 64),
    b"[" * 1000 + b"]" * 1000, b'{"version": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"version": "v000001", "manifest_sha256": "%s", "pad": "%s"}' % (b"a" * 64, b"x" * 70000)])
def test_a_malformed_adopt_request_raises_bad_control_only(value: bytes | None) -> None:
    with pytest.raises(BadControl) as info:
        AdoptModelRequest.decode(value)
    assert info.value.reason == "bad_request"


def test_a_builder_refuses_to_send_what_ingest_would_refuse() -> None:
    with pytest.raises(BadControl):
        adopt_model_requests(b'{"version": "latest"}', [0])


def test_ordinary_events_have_no_control_kind() -> None:
    assert kind_of([]) is None
    assert kind_of([("trace-id", b"x")]) is None
    assert kind_of([("trace-id", b"x"), (CONTROL_HEADER, b"other")]) == b"other"


def test_send_control_sends_with_headers_and_explicit_partitions() -> None:
    producer = RecordingProducer()
    send_control(producer, "clicks", [forget_request("u1")]
                 + adopt_model_requests(ANNOUNCEMENT, [0, 1]))
    assert [(s["key"], s["partition"]) for s in producer.sent] == [
        (b"u1", None), (CONTROL_KEY, 0), (CONTROL_KEY, 1)]
    assert producer.sent[0]["headers"] == [(CONTROL_HEADER, FORGET)]
