"""The v1 click event: typed schema, fast validation, and the dead-letter contract.

A click is decoded with msgspec into a frozen ``ClickEvent``; anything that does not fit
raises ``BadEvent`` (``streamrec.input_bounds.BadInput``) with a short machine-readable
``reason`` and a human ``detail``. The ingest consumer turns it into a message on
``clicks.dlq`` carrying the original bytes, so nothing is silently dropped.

>>> event = decode_click(b'{"event_id":"e1","user_id":"u1","item_id":"i9","type":"click","ts":1.5}')
>>> event.user_id, event.item_id, event.value
('u1', 'i9', None)
>>> decode_click(b'{"user_id":"u1"}')
Traceback (most recent call last):
...
streamrec.input_bounds.BadInput: schema: Object missing required field `event_id`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from streamrec.input_bounds import (
    BadInput,
    check_event_time,
    check_id,
    check_user_id,
    guarded_decode,
    is_reserved_user_id,
)
from streamrec.records import Output, Record

SCHEMA_VERSION = 1

EventType = Literal["view", "click", "add_to_cart", "purchase", "rating"]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]

# The typed bad-input error of every decoder; the name predates requests and states.
BadEvent = BadInput


class ClickEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One user interaction. ``ts`` is event time in epoch seconds."""

    event_id: Identifier
    user_id: Identifier
    item_id: Identifier
    type: EventType
    ts: float
    value: float | None = None
    context: dict[str, str | float] = {}


@dataclass(frozen=True)
class ClickBounds:
    """What a click may be: payload size, id length, context size, event-time window."""

    max_event_bytes: int = 64 * 1024
    max_id_bytes: int = 256
    max_context_entries: int = 32
    max_event_ahead_s: float = 86400.0

    @classmethod
    def from_settings(cls, settings: Any) -> "ClickBounds":
        return cls(settings.max_event_bytes, settings.max_id_bytes,
                   settings.max_context_entries, settings.max_event_ahead_s)


_decoder = msgspec.json.Decoder(ClickEvent)
_encoder = msgspec.json.Encoder()


def decode_click(payload: bytes | None, max_bytes: int = 64 * 1024,
                 bounds: ClickBounds | None = None) -> ClickEvent:
    """Decode and validate one click's value; raise ``BadEvent`` on anything malformed.

    Checks what the value alone can tell: schema, ids, context size, a finite
    non-negative ``ts``. ``decode_click_record`` adds what needs the record.
    """
    bounds = bounds if bounds is not None else ClickBounds(max_event_bytes=max_bytes)
    if not payload:
        raise BadEvent("empty", "message has no value")
    if len(payload) > bounds.max_event_bytes:
        raise BadEvent("oversized", f"{len(payload)} bytes > limit {bounds.max_event_bytes}")
    event: ClickEvent = guarded_decode(_decoder, payload)
    max_id = bounds.max_id_bytes
    for field, value in (("event_id", event.event_id), ("user_id", event.user_id),
                         ("item_id", event.item_id)):
        if not _plain_ascii_id(value, max_id):
            check_id(value, field, max_id)  # the full check: raises, or passes the rest
    if len(event.context) > bounds.max_context_entries:
        raise BadEvent("out_of_bounds", f"context has {len(event.context)} entries > limit "
                                        f"{bounds.max_context_entries}")
    for name, entry in event.context.items():
        check_id(name, "context key", bounds.max_id_bytes)
        if isinstance(entry, str):
            check_id(entry, "context value", bounds.max_id_bytes)
    check_event_time(event.ts, 0, bounds.max_event_ahead_s)
    return event


def _plain_ascii_id(value: str, max_bytes: int) -> bool:
    """The common id: printable ASCII within the limit, so ``check_id`` would pass it.

    For ASCII a char is one byte and ``isprintable`` excludes exactly the ASCII part of
    ``check_id``'s control characters; this skips its UTF-8 encode and regex on the hot path.
    """
    return 0 < len(value) <= max_bytes and value.isascii() and value.isprintable()


def decode_click_record(record: Record, bounds: ClickBounds) -> ClickEvent:
    """The one decoder of a click record: value, key, event time against the broker's.

    Ingest (process and rewarm) and the trainer's window all use it, so they accept and
    refuse exactly the same records.
    """
    event = decode_click(record.value, bounds=bounds)
    check_event_time(event.ts, record.timestamp_ms, bounds.max_event_ahead_s)
    # The key decides the partition, and the partition owns the user's state: an event
    # keyed by anything but its user_id would split that state across partitions.
    if record.key != event.user_id.encode():
        shown = record.key[:64] if record.key is not None else None
        raise BadEvent("key_mismatch", f"message key {shown!r} is not the event's user_id "
                                       f"{event.user_id!r}")
    # user-state keys with the reserved prefix hold partition snapshots and control
    # records: a user of that name would overwrite them under compaction. (decode_click
    # has already run ``check_id`` on it: only the reserved namespace is left to check.)
    if is_reserved_user_id(event.user_id):
        check_user_id(event.user_id, "user_id", bounds.max_id_bytes)  # raises the typed error
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
# Set to b"1" when the original record had no key / no value (a tombstone): the dead letter
# carries empty bytes instead, because a producer cannot send None there safely.
DLQ_KEY_ABSENT = "streamrec.original.key_absent"
DLQ_VALUE_ABSENT = "streamrec.original.value_absent"
# Set to the original length (decimal) when the key or value was cut to fit the topic.
DLQ_KEY_TRUNCATED = "streamrec.original.key_truncated"
DLQ_VALUE_TRUNCATED = "streamrec.original.value_truncated"
# How many original headers were dropped (null value, non-str name, or no room left).
DLQ_HEADERS_DROPPED = "streamrec.original.headers_dropped"

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
MAX_DETAIL_CHARS = 1000
# Kafka's framing around one record in its own batch (61-byte batch header, the record's
# varints): generous, so the encoded batch stays under ``max.message.bytes``.
_FRAMING_BYTES = 512


def record_size(key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> int:
    """An upper bound of the bytes one record takes on the wire, batch header included."""
    return (_FRAMING_BYTES + len(key) + len(value)
            + sum(len(name.encode()) + len(data) + 10 for name, data in headers))


def _sendable_headers(headers: Any) -> tuple[list[tuple[str, bytes]], int]:
    kept, dropped = [], 0
    try:
        items = list(headers or ())
    except TypeError:
        return [], 1
    for item in items:
        try:
            name, data = item
            if not isinstance(name, str) or not isinstance(data, (bytes, bytearray)):
                raise TypeError
            name.encode("utf-8")  # a lone surrogate cannot be sent as a header name
        except (TypeError, ValueError):
            dropped += 1
            continue
        kept.append((name, bytes(data)))
    return kept, dropped


def dead_letter(record: Record, error: BadInput, dlq_topic: str,
                max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Output:
    """The dead-letter message for a rejected record, always sendable.

    Original key, value and headers, plus reason headers. Headers a producer cannot send
    (null value, non-str name) are dropped and counted; a missing key or value becomes
    empty bytes with an ``..._absent`` header; the whole message stays under
    ``max_bytes`` (the DLQ topic's limit): the value is cut first, then the key, then
    original headers, each cut said in a header. Otherwise one bad record would make the
    producer raise and the partition re-read it forever.
    """
    ours = [(DLQ_REASON, str(error.reason)[:100].encode("utf-8", "replace")),
            (DLQ_DETAIL, str(error.detail)[:MAX_DETAIL_CHARS].encode("utf-8", "replace")),
            (DLQ_TOPIC, str(record.topic).encode("utf-8", "replace")),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode())]
    key = bytes(record.key) if isinstance(record.key, (bytes, bytearray)) else b""
    value = bytes(record.value) if isinstance(record.value, (bytes, bytearray)) else b""
    if record.key is None:
        ours.append((DLQ_KEY_ABSENT, b"1"))
    if record.value is None:
        ours.append((DLQ_VALUE_ABSENT, b"1"))
    original, dropped = _sendable_headers(record.headers)
    # Room for the cut markers, decided below, is reserved now (3 headers, 20-digit values).
    budget = max_bytes - record_size(b"", b"", tuple(ours)) - 3 * 64
    if len(key) > budget // 4:  # the key only decides the partition: a little is enough
        ours.append((DLQ_KEY_TRUNCATED, str(len(key)).encode()))
        key = key[:budget // 4]
    budget -= len(key)
    kept = []
    for name, data in original:
        cost = len(name.encode()) + len(data) + 10
        if cost > budget // 2:
            dropped += 1
            continue
        kept.append((name, data))
        budget -= cost
    if dropped:
        ours.append((DLQ_HEADERS_DROPPED, str(dropped).encode()))
    if len(value) > budget:
        ours.append((DLQ_VALUE_TRUNCATED, str(len(value)).encode()))
        value = value[:max(budget, 0)]
    return Output(topic=dlq_topic, key=key, value=value, headers=tuple(kept + ours))


def is_sendable(output: Output, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bool:
    """Key and value bytes, every header ``(str, bytes)``, the record under ``max_bytes``."""
    if not isinstance(output.key, bytes) or not isinstance(output.value, (bytes, type(None))):
        return False
    for header in output.headers:
        if (not isinstance(header, tuple) or len(header) != 2 or not isinstance(header[0], str)
                or not isinstance(header[1], bytes)):
            return False
        try:
            header[0].encode("utf-8")
        except UnicodeEncodeError:
            return False
    return record_size(output.key, output.value or b"", output.headers) <= max_bytes


def headers_dict(headers: tuple[tuple[str, bytes], ...] | list) -> dict[str, str]:
    return {str(k): (v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else "")
            for k, v in headers}


def schema_text() -> str:
    return json.dumps(click_json_schema(), indent=2, sort_keys=True)
