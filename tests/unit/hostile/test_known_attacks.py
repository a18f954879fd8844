"""Issue 9's table, the rows about clicks, forget keys, requests and user states.

Each test replays one hostile record against the pure processors and checks the intended
behaviour: dead-lettered (with a sendable dead letter) or skipped and counted, and the
service logic going on with the next valid record.
"""

from __future__ import annotations

import pytest

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.consumers.train_window import build_window
from streamrec.online_models.user_state import UserState, decode_state, encode_state
from streamrec.config import ConfigError, Settings
from streamrec.control import CONTROL_HEADER, FORGET
from streamrec.events import (
    DLQ_HEADERS_DROPPED,
    DLQ_KEY_ABSENT,
    DLQ_REASON,
    DLQ_VALUE_ABSENT,
    DLQ_VALUE_TRUNCATED,
    BadEvent,
    ClickEvent,
    dead_letter,
    decode_click,
    encode_click,
    headers_dict,
    is_sendable,
)
from streamrec.input_bounds import BadInput, is_reserved_user_id
from streamrec.metrics import MetricsRegistry
from streamrec.metrics.service import service_metrics
from streamrec.records import Record

SETTINGS = Settings(top_k=3)
T = SETTINGS.topics
NOW_MS = 1_764_633_600_000  # 2025-12-02: the broker timestamp of every record below
NESTED = b'{"event_id":"e","user_id":"u","item_id":"i","type":"click","ts":1,"x":' + \
    b"[" * 1000 + b"]" * 1000 + b"}"


def click(offset: int, user: str = "u1", item: str = "a", ts: float = 100.0,
          **fields: object) -> Record:
    event = ClickEvent(event_id=f"e{offset}", user_id=user, item_id=item, type="click", ts=ts,
                       **fields)  # type: ignore[arg-type]
    return Record(T.clicks, 0, offset, user.encode(), encode_click(event), NOW_MS)


def raw(offset: int, key: bytes | None, value: bytes | None, headers=(), topic=T.clicks,
        timestamp_ms: int = NOW_MS) -> Record:
    return Record(topic, 0, offset, key, value, timestamp_ms, tuple(headers))


def assert_sendable_dead_letter(output, limit: int = SETTINGS.max_message_bytes) -> dict:
    assert output.topic == T.dlq
    assert isinstance(output.key, bytes) and isinstance(output.value, bytes)
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in output.headers)
    assert is_sendable(output, limit)
    return headers_dict(output.headers)


def ingest_one(bad: Record) -> tuple[IngestProcessor, list]:
    """Process a valid click, the bad record, and another valid click in one batch."""
    ingest = IngestProcessor(SETTINGS)
    result = ingest.process([click(0, item="a"), bad, click(bad.offset + 1, item="b")])
    dead = [o for o in result.outputs if o.topic == T.dlq]
    assert (result.processed, result.rejected, len(dead)) == (2, 1, 1)
    assert ingest.users(0)["u1"].recent_items == ["a", "b"]  # the logic went on
    return ingest, dead


def test_a_click_nesting_1000_arrays_is_dead_lettered_and_the_trainer_skips_it():
    assert len(NESTED) < 2100
    ingest, dead = ingest_one(raw(1, b"u", NESTED))
    assert assert_sendable_dead_letter(dead[0])[DLQ_REASON] == "too_deep"
    assert ingest.rejected_by_reason == {"too_deep": 1}
    window = build_window([click(0), raw(1, b"u", NESTED)], T.clicks, {0: (0, 2)},
                          SETTINGS.max_event_bytes)
    assert (len(window.events), window.bad_events) == (1, 1)


def test_a_tombstone_click_becomes_a_sendable_dead_letter_with_absence_headers():
    _, dead = ingest_one(raw(1, None, None))
    headers = assert_sendable_dead_letter(dead[0])
    assert (dead[0].key, dead[0].value) == (b"", b"")
    assert headers[DLQ_KEY_ABSENT] == "1" and headers[DLQ_VALUE_ABSENT] == "1"
    assert headers[DLQ_REASON] == "empty"


def test_a_bad_click_with_null_and_non_str_headers_drops_them_and_keeps_the_rest():
    bad = raw(1, b"u1", b"{broken", headers=[("trace", None), (7, b"x"), ("app", b"web")])
    _, dead = ingest_one(bad)
    headers = assert_sendable_dead_letter(dead[0])
    assert headers["app"] == "web" and "trace" not in headers
    assert headers[DLQ_HEADERS_DROPPED] == "2" and dead[0].value == b"{broken"


@pytest.mark.parametrize("key, reason", [(b"\xff\xfeu", "bad_key"), (None, "missing_key"),
                                         (b"u\x00", "bad_id"),
                                         (b"__streamrec_snapshot__", "reserved_user_id")])
def test_a_forget_with_a_bad_key_is_dead_lettered_and_forgets_no_one(key, reason):
    ingest, dead = ingest_one(raw(1, key, None, headers=[(CONTROL_HEADER, FORGET)]))
    assert assert_sendable_dead_letter(dead[0])[DLQ_REASON] == reason
    assert set(ingest.users(0)) == {"u1"}


def test_a_click_with_ts_1e300_is_dead_lettered_ts_out_of_range():
    _, dead = ingest_one(click(1, ts=1e300))
    assert assert_sendable_dead_letter(dead[0])[DLQ_REASON] == "ts_out_of_range"
    # Without a broker timestamp the absolute ceiling (year 9999) still refuses it.
    with pytest.raises(BadEvent, match="ts_out_of_range"):
        decode_click(encode_click(ClickEvent(event_id="e", user_id="u", item_id="i",
                                             type="click", ts=1e300)))


def test_event_time_window_is_relative_to_the_broker_timestamp_and_the_past_is_open():
    ingest = IngestProcessor(SETTINGS)
    ahead = SETTINGS.max_event_ahead_s
    batch = [click(0, ts=852_076_800.0),                    # 1997, produced now: fine
             click(1, ts=NOW_MS / 1000 + ahead - 1),         # within a day ahead: fine
             click(2, ts=NOW_MS / 1000 + ahead + 1),         # beyond: refused
             click(3, ts=-1.0)]                              # negative: refused
    result = ingest.process(batch)
    assert (result.processed, result.rejected) == (2, 2)
    assert ingest.rejected_by_reason == {"ts_out_of_range": 2}


@pytest.mark.parametrize("user", ["__STREAMREC_x", "\uff3f\uff3fstreamrec_x", "__ſtreamrec_x",
                                  "__streamrec_snapshot__"])
def test_the_reserved_namespace_is_checked_after_normalisation(user):
    assert is_reserved_user_id(user)
    _, dead = ingest_one(click(1, user=user))
    assert headers_dict(dead[0].headers)[DLQ_REASON] == "reserved_user_id"


@pytest.mark.parametrize("fields", [{"user_id": "u\x1b[31m"}, {"item_id": "i" * 257},
                                    {"item_id": "é" * 200}, {"context": {"k": "v\u202e"}},
                                    {"context": {f"k{i}": 1.0 for i in range(33)}}])
def test_ids_and_context_are_bounded(fields):
    event = {"event_id": "e1", "user_id": "u1", "item_id": "a", "type": "click", "ts": 1.0,
             **fields}
    import json
    record = raw(1, event["user_id"].encode(), json.dumps(event).encode())
    _, dead = ingest_one(record)
    assert headers_dict(dead[0].headers)[DLQ_REASON] in {"bad_id", "out_of_bounds", "schema"}


def score_with_user() -> ScoreProcessor:
    score = ScoreProcessor(SETTINGS, clock=lambda: 1000.0)
    ingest = IngestProcessor(SETTINGS)
    outputs = ingest.process([click(i, item=f"i{i}") for i in range(5)]
                             + [click(5 + i, user="u2", item=f"j{i}") for i in range(5)]).outputs
    score.process([Record(T.user_state, 0, n, o.key, o.value, NOW_MS)
                   for n, o in enumerate(outputs) if o.topic == T.user_state])
    return score


def request(offset: int, value: bytes, key: bytes = b"u1") -> Record:
    return raw(offset, key, value, topic=T.requests)


def test_a_request_nested_1000_deep_is_dead_lettered_and_the_next_one_answered():
    score = score_with_user()
    nested = b'{"request_id":"r","user_id":"u1","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    result = score.process([request(0, nested), request(1, b'{"request_id":"r2","user_id":"u1"}')])
    dead = [o for o in result.outputs if o.topic == T.dlq]
    recs = [o for o in result.outputs if o.topic == T.recommendations]
    assert len(dead) == 1 and len(recs) == 1 and result.rejected == 1
    assert assert_sendable_dead_letter(dead[0])[DLQ_REASON] == "too_deep"
    assert recommendation_decoder.decode(recs[0].value).trigger_id == "r2"


def test_k_of_a_billion_is_clamped_to_max_k_and_a_1mb_user_id_is_dead_lettered():
    settings = SETTINGS.replace(max_k=4)
    score = ScoreProcessor(settings, clock=lambda: 1000.0)
    for i in range(50):
        score.item_side.apply(0, i, UserState(user_id=f"primer{i}", seen_items=[f"item{i}"],
                                              recent_items=[f"item{i}"], recent_ts=[100.0]))
    huge = b'{"request_id":"r","user_id":"' + b"u" * 1_000_000 + b'"}'
    result = score.process([request(0, b'{"request_id":"r1","user_id":"u1","k":1000000000}'),
                            request(1, huge, key=b"u" * 1_000_000)])
    recs = [o for o in result.outputs if o.topic == T.recommendations]
    dead = [o for o in result.outputs if o.topic == T.dlq]
    assert len(recommendation_decoder.decode(recs[0].value).items) == 4
    assert is_sendable(recs[0], settings.max_message_bytes)
    headers = assert_sendable_dead_letter(dead[0])
    # oversized before decoding (the payload is over max_event_bytes); value cut to fit.
    assert headers[DLQ_REASON] == "oversized"
    assert int(headers[DLQ_VALUE_TRUNCATED]) == len(huge) and len(dead[0].value) < len(huge)


def test_a_1mb_dead_letter_value_is_cut_to_fit_and_says_so():
    record = raw(3, b"u1", b"x" * (2 * 1024 * 1024), headers=[("h", b"y" * 1000)])
    output = dead_letter(record, BadInput("oversized", "big"), T.dlq, 1024 * 1024)
    headers = assert_sendable_dead_letter(output)
    assert headers[DLQ_VALUE_TRUNCATED] == str(2 * 1024 * 1024)
    assert output.value == b"x" * len(output.value) and len(output.value) > 1000 * 1000


STATE_JUNK = [b"not json", b'{"user_id":' + b"[" * 1000 + b"]" * 1000 + b"}",
              b'{"user_id":"u1","embedding":[1e400]}', b'{"user_id":"u1","last_ts":1e300}',
              encode_state(UserState(user_id="u1", recent_items=["x"] * 51)),
              encode_state(UserState(user_id="u1", embedding=[float("nan")])),
              encode_state(UserState(user_id="someone-else")), b""]


@pytest.mark.parametrize("value", STATE_JUNK)
def test_a_malformed_user_state_is_skipped_and_counted_in_both_processors(value):
    score = score_with_user()
    before = score.state_of("u1")
    bad = Record(T.user_state, 0, 99, b"u1", value, NOW_MS)
    result = score.process([bad])
    assert result.outputs == [] or all(o.topic != T.recommendations for o in result.outputs)
    assert score.state_of("u1") is before  # the mirror keeps the previous state
    assert sum(score.skipped_by_reason.values()) == 1
    assert next(iter(score.skipped_by_reason))[0] == T.user_state

    ingest = IngestProcessor(SETTINGS)
    good = Record(T.user_state, 0, 0, b"u1", encode_state(UserState(user_id="u1", event_count=3)))
    assert ingest.restore(0, [good, bad, Record(T.user_state, 0, 1, b"\xff", b"{}")]) == 1
    assert ingest.users(0)["u1"].event_count == 3
    assert sum(ingest.skipped_by_reason.values()) == 2
    assert ingest.skipped_by_reason[(T.user_state, "bad_key")] == 1


def test_a_state_with_a_non_utf8_key_is_skipped_by_the_scorer():
    score = score_with_user()
    score.process([Record(T.user_state, 0, 99, b"\xc3(", encode_state(UserState(user_id="x")))])
    assert score.skipped_by_reason == {(T.user_state, "bad_key"): 1}


def test_skipped_counts_reach_the_service_metric():
    registry = MetricsRegistry()
    metrics = service_metrics(registry, "score")
    metrics.set_skipped(T.user_state, "bad_json", 3)
    metrics.set_skipped(T.user_state, "bad_json", 2)  # a restarted tally never goes down
    text = registry.render()
    assert 'streamrec_inputs_skipped_total{reason="bad_json",service="score",topic="user-state"} 3' in text


def test_settings_refuse_bounds_whose_messages_cannot_fit():
    Settings().validate()
    with pytest.raises(ConfigError, match="recommendation"):
        Settings(max_k=5000, max_id_bytes=4096).validate()
    with pytest.raises(ConfigError, match="user state"):
        Settings(max_seen_items=100_000, max_id_bytes=1024).validate()
    with pytest.raises(ConfigError, match="max_k"):
        Settings(top_k=300).validate()


def test_the_user_state_limit_is_the_topic_s():
    from streamrec.config import USER_STATE_MAX_MESSAGE_BYTES
    from streamrec.transport.topics import MAX_MESSAGE_BYTES
    assert USER_STATE_MAX_MESSAGE_BYTES == MAX_MESSAGE_BYTES


def test_a_state_written_by_ingest_decodes_within_the_scorer_s_bounds():
    ingest = IngestProcessor(SETTINGS)
    outputs = ingest.process([click(i, item=f"i{i % 70}", ts=float(i)) for i in range(400)]).outputs
    state = [o for o in outputs if o.topic == T.user_state and o.key == b"u1"][0]
    assert decode_state(state.value, ScoreProcessor(SETTINGS).state_bounds, NOW_MS).event_count == 400
