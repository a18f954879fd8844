import json

import pytest

from streamrec.events import (DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC, BadEvent, ClickEvent,
                              click_json_schema, dead_letter, decode_click, encode_click, headers_dict)
from streamrec.records import Record

GOOD = {"event_id": "e1", "user_id": "u1", "item_id": "i1", "type": "click", "ts": 12.5}


def payload(**changes):
    body = dict(GOOD, **changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_valid_event_round_trips_and_ignores_unknown_fields():
    event = decode_click(payload(extra="ignored", context={"device": "ios", "score": 2}))
    assert event == ClickEvent(event_id="e1", user_id="u1", item_id="i1", type="click", ts=12.5,
                               context={"device": "ios", "score": 2.0})
    assert decode_click(encode_click(event)) == event


def test_integer_timestamp_is_accepted_as_float():
    assert decode_click(payload(ts=10)).ts == 10.0


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "bad_json"),
    (b"", "empty"),
    (None, "empty"),
    (payload(user_id=...), "schema"),
    (payload(ts="yesterday"), "schema"),
    (payload(type="hover"), "schema"),
    (payload(item_id=""), "schema"),
    (payload(value="high"), "schema"),
    (payload(ts=float("nan")).replace(b"NaN", b"1e999"), "schema"),
    (b"[1, 2]", "schema"),
])
def test_bad_events_raise_with_a_reason(body, reason):
    with pytest.raises(BadEvent) as caught:
        decode_click(body)
    assert caught.value.reason == reason


def test_oversized_payload_is_rejected_before_decoding():
    with pytest.raises(BadEvent) as caught:
        decode_click(payload(context={"blob": "x" * 2000}), max_bytes=1000)
    assert caught.value.reason == "oversized"


def test_dead_letter_keeps_original_bytes_and_names_the_source():
    record = Record("clicks", 3, 41, b"u1", b"{bad", headers=(("trace", b"abc"),))
    error = BadEvent("bad_json", "unexpected character")
    output = dead_letter(record, error, "clicks.dlq")
    assert (output.topic, output.key, output.value) == ("clicks.dlq", b"u1", b"{bad")
    headers = headers_dict(output.headers)
    assert headers["trace"] == "abc"
    assert (headers[DLQ_REASON], headers[DLQ_TOPIC], headers[DLQ_PARTITION], headers[DLQ_OFFSET]) == \
        ("bad_json", "clicks", "3", "41")


def test_json_schema_names_required_fields_and_event_types():
    schema = click_json_schema()
    definition = schema["$defs"]["ClickEvent"]
    assert set(definition["required"]) == {"event_id", "user_id", "item_id", "type", "ts"}
    assert set(definition["properties"]["type"]["enum"]) == {"view", "click", "add_to_cart",
                                                             "purchase", "rating"}
