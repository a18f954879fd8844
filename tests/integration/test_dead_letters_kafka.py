"""Hostile clicks through a real ingest service: each dead letter is produced, none stops it.

Some of these records cannot be written with kafka-python's ``send`` (a record with neither
key nor value, a header with a null value); other clients can write them, so they are
written with ``support.produce_unchecked``.
"""

from __future__ import annotations

import time

import pytest

from streamrec.online_models.user_state import decode_state
from streamrec.control import CONTROL_HEADER, FORGET
from streamrec.events import (
    DLQ_KEY_ABSENT,
    DLQ_OFFSET,
    DLQ_REASON,
    DLQ_VALUE_ABSENT,
    ClickEvent,
    encode_click,
    headers_dict,
)
from support import ingest_service, latest_by_key, produce_unchecked, read_topic, running_service

pytestmark = pytest.mark.kafka


def test_every_hostile_click_reaches_the_dlq_sendable_and_ingest_keeps_going(kafka_settings):
    settings = kafka_settings
    now = time.time()

    def click(event_id: str, ts: float = now) -> bytes:
        return encode_click(ClickEvent(event_id=event_id, user_id="u1", item_id=event_id,
                                       type="click", ts=ts))

    nested = (b'{"event_id":"e","user_id":"u1","item_id":"i","type":"click","ts":1,"x":'
              + b"[" * 1000 + b"]" * 1000 + b"}")
    records = [
        (b"u1", click("a"), []),
        (b"u1", nested, []),                                        # too_deep
        (None, None, []),                                           # tombstone: empty
        (b"u1", b"{broken", [("trace", None), ("app", b"web")]),    # bad_json, null header
        (b"\xff\xfe", None, [(CONTROL_HEADER, FORGET)]),            # forget, non-UTF-8 key
        (b"u1", click("far", ts=1e300), []),                        # ts_out_of_range
        (b"u1", b" " * 1_000_000, []),                              # oversized, near 1 MB
        (b"u1", click("b"), []),
    ]
    produce_unchecked(settings, settings.topics.clicks, [(0, *record) for record in records])
    written = read_topic(settings, settings.topics.clicks, expect=len(records))
    assert ("trace", None) in written[3].headers and written[2].key is None  # on the wire
    expected = {1: "too_deep", 2: "empty", 3: "bad_json", 4: "bad_key", 5: "ts_out_of_range",
                6: "oversized"}

    with running_service(ingest_service(settings)) as service:
        dead = read_topic(settings, settings.topics.dlq, expect=len(expected))
        states = read_topic(settings, settings.topics.user_state,
                            until=lambda rs: any(decode_state(r.value).event_count == 2
                                                 for r in latest_by_key(rs).values()))
        assert service.batches_committed > 0

    by_offset = {int(headers_dict(r.headers)[DLQ_OFFSET]): r for r in dead}
    assert {o: headers_dict(r.headers)[DLQ_REASON] for o, r in by_offset.items()} == expected
    tombstone = headers_dict(by_offset[2].headers)
    assert tombstone[DLQ_KEY_ABSENT] == "1" and tombstone[DLQ_VALUE_ABSENT] == "1"
    assert (by_offset[2].key, by_offset[2].value) == (b"", b"")
    assert headers_dict(by_offset[3].headers)["app"] == "web"
    assert all(v is not None for _, v in by_offset[3].headers)  # the null header was dropped
    assert by_offset[6].value == b" " * 1_000_000  # under the DLQ's limit: kept whole
    final = decode_state(latest_by_key(states)[b"u1"].value)
    assert final.event_count == 2 and final.recent_items == ["a", "b"]
