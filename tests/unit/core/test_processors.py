"""Ingest and score processors on hand-made records: no broker, no clock."""

import json

from streamrec.consumers.ingest import CONTROL_HEADER, FORGET, IngestProcessor
from streamrec.consumers.partition_models import SNAPSHOT_KEY, is_snapshot_key
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.online_models.user_state import decode_state, encode_state
from streamrec.config import Settings
from streamrec.events import DLQ_REASON, ClickEvent, encode_click, headers_dict
from streamrec.records import Record
from snapshots import snapshots_of

SETTINGS = Settings(top_k=3)
T = SETTINGS.topics


def click(offset, user, item, ts=None, partition=0):
    event = ClickEvent(event_id=f"e{offset}", user_id=user, item_id=item, type="click",
                       ts=float(ts if ts is not None else offset))
    return Record(T.clicks, partition, offset, user.encode(), encode_click(event), timestamp_ms=1000)


def test_ingest_emits_one_state_per_touched_user_and_dead_letters_bad_events():
    ingest = IngestProcessor(SETTINGS)
    batch = [click(0, "u1", "a"), click(1, "u2", "b"), click(2, "u1", "c"),
             Record(T.clicks, 0, 3, b"u3", b"{broken")]
    result = ingest.process(batch)
    states = {o.key: decode_state(o.value) for o in result.outputs if o.topic == T.user_state}
    dead = [o for o in result.outputs if o.topic == T.dlq]
    assert (result.processed, result.rejected) == (3, 1)
    assert states[b"u1"].recent_items == ["a", "c"] and states[b"u1"].source_offset == 2
    assert states[b"u1"].new_events == [("a", 0.0), ("c", 2.0)]
    assert all(o.partition == 0 for o in result.outputs if o.topic == T.user_state)
    assert headers_dict(dead[0].headers)[DLQ_REASON] == "bad_json" and dead[0].value == b"{broken"
    # The published delta is not repeated by the next message.
    assert ingest.users(0)["u1"].new_events == []


def test_ingest_never_applies_an_offset_twice_even_after_restore():
    ingest = IngestProcessor(SETTINGS)
    first = ingest.process([click(0, "u1", "a"), click(1, "u1", "b")])
    changelog = [Record(T.user_state, 0, i, o.key, o.value) for i, o in enumerate(first.outputs)]
    restored = IngestProcessor(SETTINGS)
    assert restored.restore(0, changelog) == 1
    again = restored.process([click(1, "u1", "b"), click(2, "u1", "c")])
    assert again.skipped_duplicates == 1 and again.processed == 1
    assert restored.users(0)["u1"].recent_items == ["a", "b", "c"]
    assert restored.users(0)["u1"].event_count == 3


def test_forget_drops_state_and_writes_a_tombstone():
    ingest = IngestProcessor(SETTINGS)
    ingest.process([click(0, "u1", "a")])
    forget = Record(T.clicks, 0, 1, b"u1", None, headers=((CONTROL_HEADER, FORGET),))
    result = ingest.process([forget])
    assert [(o.topic, o.key, o.value) for o in result.outputs][0] == (T.user_state, b"u1", None)
    # A fresh snapshot of the partition's models replaces older ones that knew the user.
    manifests = [o for o in result.outputs if o.key == SNAPSHOT_KEY]
    assert len(manifests) == 1 and manifests[0].partition == 0
    assert all(o.partition == 0 for o in result.outputs if is_snapshot_key(o.key))
    (snapshot,) = snapshots_of(result.outputs)
    assert not snapshot.blend.knows_user("u1")
    assert "u1" not in ingest.users(0)
    assert IngestProcessor(SETTINGS).restore(0, [Record(T.user_state, 0, 0, b"u1", None)]) == 0


def _state_record(offset, state, partition=0):
    return Record(T.user_state, partition, offset, state.user_id.encode(), encode_state(state))


def test_scorer_excludes_everything_the_user_has_seen():
    ingest = IngestProcessor(SETTINGS)
    score = ScoreProcessor(SETTINGS, clock=lambda: 5.0)
    clicks = [click(i, f"u{i % 3}", f"i{i % 12}") for i in range(30)]
    outputs = ingest.process(clicks).outputs
    result = score.process([_state_record(i, decode_state(o.value)) for i, o in enumerate(outputs)])
    assert result.processed == 3
    messages = [recommendation_decoder.decode(o.value) for o in result.outputs
                if o.topic == T.recommendations]
    # Each trigger is ranked at its own position: the first sees popularity learned from
    # its own clicks only (all seen), the later ones the earlier users' items too.
    assert [len(m.items) for m in messages] == [0, 3, 3]
    for message in messages[1:]:
        seen = set(score.state_of(message.user_id).seen_items)
        assert not seen & {i.item_id for i in message.items}
        assert message.model_version == "popularity" and message.trigger_kind == "event"
        assert set(message.items[0].components) == {"popularity", "recency"}
        assert message.end_to_end_ms == 5.0 * 1000 - 1000 and message.score_ms == 0.0


def test_scorer_answers_requests_and_dead_letters_bad_ones():
    score = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    ingest = IngestProcessor(SETTINGS)
    outputs = ingest.process([click(i, "u1" if i < 2 else "u2", f"i{i}") for i in range(6)]).outputs
    score.process([_state_record(i, decode_state(o.value)) for i, o in enumerate(outputs)])
    request = json.dumps({"request_id": "r1", "user_id": "u1", "k": 2, "exclude_items": ["i5"]})
    result = score.process([Record(T.requests, 0, 0, b"u1", request.encode()),
                            Record(T.requests, 0, 1, b"u1", b"{}")])
    answers = [o for o in result.outputs if o.topic == T.recommendations]
    dead = [o for o in result.outputs if o.topic == T.dlq]
    assert len(answers) == 1 and len(dead) == 1
    answer = recommendation_decoder.decode(answers[0].value)
    assert (answer.trigger_id, answer.trigger_kind) == ("r1", "request")
    assert [i.item_id for i in answer.items] == ["i4", "i3"]
    assert result.rejected == 1


def test_scorer_tombstone_forgets_the_mirror():
    score = ScoreProcessor(SETTINGS)
    ingest = IngestProcessor(SETTINGS)
    output = ingest.process([click(0, "u1", "a")]).outputs[0]
    score.process([_state_record(0, decode_state(output.value))])
    assert score.state_of("u1") is not None
    assert score.process([Record(T.user_state, 0, 1, b"u1", None)]).outputs == []
    assert score.state_of("u1") is None


def test_forget_erases_a_user_the_models_had_learned():
    settings = Settings(top_k=3, learn_every=2, snapshot_every=1_000)
    ingest = IngestProcessor(settings)
    ingest.process([click(i, f"u{i % 2}", f"i{i % 5}") for i in range(20)])
    blend = ingest.models(0).blend
    assert blend.knows_user("u1") and ingest.users(0)["u1"].embedding is not None
    forget = Record(T.clicks, 0, 20, b"u1", None, headers=((CONTROL_HEADER, FORGET),))
    result = ingest.process([forget])
    assert not ingest.models(0).blend.knows_user("u1") and ingest.models(0).blend.knows_user("u0")
    (snapshot,) = snapshots_of(result.outputs)
    assert snapshot.offset == 20 and not snapshot.blend.knows_user("u1")


def test_restore_plus_rewarm_reaches_the_uninterrupted_models():
    settings = Settings(top_k=3, learn_every=4, snapshot_every=8)
    clicks = [click(i, f"u{i % 3}", f"i{(i * 7) % 11}") for i in range(40)]
    uninterrupted = IngestProcessor(settings)
    uninterrupted.process(clicks[:25])
    uninterrupted.process(clicks[25:])
    # Crash after offset 29 was committed: restore from the changelog written up to then...
    first = IngestProcessor(settings)
    written = first.process(clicks[:30]).outputs
    changelog = [Record(T.user_state, 0, i, o.key, o.value) for i, o in enumerate(written)]
    restored = IngestProcessor(settings)
    restored.restore(0, changelog)
    start = restored.rewarm_from(0)
    assert 0 < start <= 30
    restored.rewarm(0, clicks[start:30])
    restored.process(clicks[30:])
    assert {u: s.learned_view() for u, s in restored.all_states().items()} == \
        {u: s.learned_view() for u, s in uninterrupted.all_states().items()}


def test_event_keyed_by_another_user_is_dead_lettered():
    ingest = IngestProcessor(SETTINGS)
    record = click(0, "u1", "a")
    result = ingest.process([Record(T.clicks, 0, 0, b"u2", record.value), Record(T.clicks, 0, 1, None, record.value)])
    assert result.rejected == 2 and ingest.all_states() == {}
    assert {headers_dict(o.headers)[DLQ_REASON] for o in result.outputs} == {"key_mismatch"}


def test_a_user_id_in_the_reserved_namespace_is_dead_lettered():
    # It would be written to user-state under the key of a partition snapshot.
    ingest = IngestProcessor(SETTINGS)
    records = [click(n, user, "a") for n, user in enumerate(["__streamrec_snapshot__", "u1"])]
    result = ingest.process(records)
    assert (result.rejected, result.processed) == (1, 1) and set(ingest.all_states()) == {"u1"}
    dead = [o for o in result.outputs if o.topic == T.dlq]
    assert [headers_dict(o.headers)[DLQ_REASON] for o in dead] == ["reserved_user_id"]


def test_a_re_emitted_state_updates_the_mirror_but_is_no_trigger():
    score = ScoreProcessor(SETTINGS)
    state = decode_state(IngestProcessor(SETTINGS).process([click(0, "u1", "a")]).outputs[0].value)
    assert len(score.process([_state_record(0, state)]).outputs) == 1
    state.embedding = [0.5, 0.5]  # a micro-batch moved the vector; no new event
    assert score.process([_state_record(1, state)]).outputs == []
    assert score.state_of("u1").embedding == [0.5, 0.5]
