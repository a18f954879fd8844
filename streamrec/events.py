"""The v1 click event: typed schema, fast validation, and the dead-letter contract.

A click is decoded with msgspec into a frozen ``ClickEvent``; anything that does not fit
raises ``BadEvent`` with a short machine-readable ``reason`` and a human ``detail``. The
ingest consumer turns a ``BadEvent`` into a message on ``clicks.dlq`` carrying the
original bytes, so nothing is silently dropped.

>>> event = decode_click(b'{"event_id":"e1","user_id":"u1","item_id":"i9","type":"click","ts":1.5}')
>>> event.user_id, event.item_id, event.value
('u1', 'i9', None)
>>> decode_click(b'{"user_id":"u1"}')
Traceback (most recent call last):
...
streamrec.events.BadEvent: schema: Object missing required field `event_id`
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import msgspec

from streamrec.records import Output, Record

SCHEMA_VERSION = 1

EventType = Literal["view", "click", "add_to_cart", "purchase", "rating"]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ClickEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One user interaction. ``ts`` is event time in epoch seconds."""

    event_id: Identifier
    user_id: Identifier
    item_id: Identifier
    type: EventType
    ts: float
    value: float | None = None
    context: dict[str, str | float] = {}


class BadEvent(ValueError):
    """A payload that is not a valid v1 click event.

    ``reason`` is one of ``bad_json``, ``schema``, ``oversized``, ``empty``,
    ``key_mismatch`` (the message key is not the user_id); it is the value
    of the ``streamrec.error.reason`` header on the dead-letter message.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_decoder = msgspec.json.Decoder(ClickEvent)
_encoder = msgspec.json.Encoder()


def decode_click(payload: bytes | None, max_bytes: int = 64 * 1024) -> ClickEvent:
    """Decode and validate one click; raise ``BadEvent`` on anything malformed."""
    if not payload:
        raise BadEvent("empty", "message has no value")
    if len(payload) > max_bytes:
        raise BadEvent("oversized", f"{len(payload)} bytes > limit {max_bytes}")
    try:
        event = _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise BadEvent("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadEvent("bad_json", str(exc)) from None
    if event.ts != event.ts or event.ts in (float("inf"), float("-inf")):
        raise BadEvent("schema", "`ts` must be a finite number")
    return event


def encode_click(event: ClickEvent) -> bytes:
    return _encoder.encode(event)


def click_json_schema() -> dict:
    """JSON Schema (2020-12) of the v1 click event, for app teams and validators."""
    schema = msgspec.json.schema(ClickEvent)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "streamrec click event v1"
    schema["description"] = (
        "Published to the clicks topic keyed by user_id. Unknown fields are ignored; a missing "
        "or mistyped required field, bad JSON or an oversized payload is dead-lettered."
    )
    return schema


# Header names on dead-letter messages; values are UTF-8 bytes.
DLQ_REASON = "streamrec.error.reason"
DLQ_DETAIL = "streamrec.error.detail"
DLQ_TOPIC = "streamrec.source.topic"
DLQ_PARTITION = "streamrec.source.partition"
DLQ_OFFSET = "streamrec.source.offset"


def dead_letter(record: Record, error: BadEvent, dlq_topic: str) -> Output:
    """The dead-letter message for a rejected record: original key and bytes, reason headers."""
    headers = tuple(record.headers) + (
        (DLQ_REASON, error.reason.encode()),
        (DLQ_DETAIL, error.detail[:1000].encode("utf-8", "replace")),
        (DLQ_TOPIC, record.topic.encode()),
        (DLQ_PARTITION, str(record.partition).encode()),
        (DLQ_OFFSET, str(record.offset).encode()),
    )
    return Output(topic=dlq_topic, key=record.key, value=record.value, headers=headers)


def headers_dict(headers: tuple[tuple[str, bytes], ...] | list) -> dict[str, str]:
    return {k: (v.decode("utf-8", "replace") if v is not None else "") for k, v in headers}


def schema_text() -> str:
    return json.dumps(click_json_schema(), indent=2, sort_keys=True)
