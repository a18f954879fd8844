"""Property-based: hostile records on clicks, requests and user-state never stop a processor.

For every generated batch: no exception escapes; every input record is accounted for with
exact arithmetic (applied, duplicate-skipped, dead-lettered with its own offset, or counted
as skipped); every output is sendable (bytes key and value, ``(str, bytes)`` headers, under
the topic's message limit).

``STREAMREC_PROPERTY_EXAMPLES`` sets the number of records per topic (default 10,000, the
acceptance criterion); each example is a batch of ``BATCH`` records.
"""

from __future__ import annotations

import math
import os

from hypothesis import HealthCheck, Phase, given, settings

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.consumers.train_window import build_window
from hostile_strategies import NOW_MS, SETTINGS, Case, batches, click_cases, request_cases, state_cases
from streamrec.online_models.user_state import UserState, encode_state
from streamrec.transport.bus import partition_for
from streamrec.config import USER_STATE_MAX_MESSAGE_BYTES
from streamrec.events import DLQ_OFFSET, DLQ_PARTITION, headers_dict, is_sendable
from streamrec.records import Output, Record

CASES_PER_TOPIC = int(os.environ.get("STREAMREC_PROPERTY_EXAMPLES", "10000"))
BATCH = 50
EXAMPLES = max(1, math.ceil(CASES_PER_TOPIC / BATCH))
T = SETTINGS.topics

# No shrinking: a failing batch of 50 records with 10,000-deep values takes minutes to
# shrink, and every case already says what it is (``Case.what``, in the failure message).
run = settings(max_examples=EXAMPLES, deadline=None, database=None,
               phases=[Phase.explicit, Phase.reuse, Phase.generate],
               suppress_health_check=list(HealthCheck))


def records(cases: list[Case], topic: str) -> list[Record]:
    """Each case at its own offset, in the partition its key hashes to."""
    offsets: dict[int, int] = {}
    out = []
    for case in cases:
        partition = partition_for(case.key, SETTINGS.partitions) if case.key else 0
        offsets[partition] = offsets.get(partition, -1) + 1
        out.append(case.record(topic, partition, offsets[partition]))
    return out


def assert_sendable(output: Output) -> None:
    limit = (USER_STATE_MAX_MESSAGE_BYTES if output.topic == T.user_state
             else SETTINGS.max_message_bytes)
    assert isinstance(output.key, bytes), output
    assert output.value is None or isinstance(output.value, bytes)
    if output.topic in (T.dlq, T.recommendations):
        assert isinstance(output.value, bytes)
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in output.headers)
    assert is_sendable(output, limit)


def dead_letter_positions(outputs: list[Output]) -> list[tuple[int, int]]:
    positions = []
    for output in outputs:
        if output.topic == T.dlq:
            headers = headers_dict(output.headers)
            positions.append((int(headers[DLQ_PARTITION]), int(headers[DLQ_OFFSET])))
    return positions


def positions(batch: list[Record], cases: list[Case], expect: str) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r, c in zip(batch, cases) if c.expect == expect]


def assert_outputs(batch: list[Record], cases: list[Case], outputs: list[Output]) -> int:
    """Every output sendable; exactly the hostile records dead-lettered. Returns how many."""
    for output in outputs:
        assert_sendable(output)
    dead = dead_letter_positions(outputs)
    hostile = positions(batch, cases, "reject")
    what = {(r.partition, r.offset): c.what for r, c in zip(batch, cases)}
    assert sorted(dead) == sorted(hostile), [what[p] for p in set(dead) ^ set(hostile)]
    return len(dead)


def run_property(strategy, check) -> None:
    """Run ``check`` on batches of ``BATCH`` cases until ``CASES_PER_TOPIC`` were checked."""
    seen = []

    @run
    @given(batches(strategy, BATCH))
    def counted(cases: list[Case]) -> None:
        check(cases)
        seen.append(len(cases))

    counted()
    assert sum(seen) >= CASES_PER_TOPIC


def test_hostile_clicks_are_dead_lettered_and_valid_ones_applied_exactly():
    def check(cases: list[Case]) -> None:
        batch = records(cases, T.clicks)
        ingest = IngestProcessor(SETTINGS)
        result = ingest.process(batch)
        dead = assert_outputs(batch, cases, result.outputs)
        assert result.rejected == dead == sum(ingest.rejected_by_reason.values())
        valid_clicks = sum(c.expect == "apply" and c.what == "click" for c in cases)
        assert result.processed + result.skipped_duplicates == valid_clicks
        # The trainer's window skips exactly what ingest dead-letters.
        window = build_window(batch, T.clicks, {}, SETTINGS.max_event_bytes)
        assert window.bad_events == dead
        assert len(window.events) + window.forgotten_events == valid_clicks

    run_property(click_cases, check)


def primed_scorer() -> ScoreProcessor:
    """A scorer whose item-side table knows 300 items (from users of a partition it does
    not own, as the global path would bring them)."""
    score = ScoreProcessor(SETTINGS, clock=lambda: NOW_MS / 1000.0)
    for i in range(300):
        item, ts = f"item{i}", NOW_MS / 1000.0 - i
        score.item_side.apply(SETTINGS.partitions, 0, UserState(
            user_id=f"primer{i}", seen_items=[item], recent_items=[item], recent_ts=[ts]))
    return score


def test_hostile_requests_are_dead_lettered_and_valid_ones_answered_within_bounds():
    def check(cases: list[Case]) -> None:
        batch = records(cases, T.requests)
        result = primed_scorer().process(batch)
        assert assert_outputs(batch, cases, result.outputs) == result.rejected
        answers = [recommendation_decoder.decode(o.value) for o in result.outputs
                   if o.topic == T.recommendations]
        assert len(answers) == result.processed == len(positions(batch, cases, "apply"))
        assert all(len(a.items) <= SETTINGS.max_k and a.trigger_kind == "request"
                   for a in answers)

    run_property(request_cases, check)


def expected_users(batch: list[Record], cases: list[Case]) -> dict[int, dict[bytes, bytes]]:
    """Per partition, the last valid state of each user (a valid tombstone removes it)."""
    users: dict[int, dict[bytes, bytes]] = {}
    for record, case in zip(batch, cases):
        if case.expect != "apply":
            continue
        partition_users = users.setdefault(record.partition, {})
        if record.value is None:
            partition_users.pop(record.key, None)  # type: ignore[arg-type]
        else:
            partition_users[record.key] = record.value  # type: ignore[index]
    return users


def test_hostile_user_states_are_skipped_and_counted_by_the_scorer_and_ingest_restore():
    def check(cases: list[Case]) -> None:
        batch = records(cases, T.user_state)
        hostile = len(positions(batch, cases, "reject"))
        expected = expected_users(batch, cases)

        score = primed_scorer()
        result = score.process(batch)
        for output in result.outputs:
            assert_sendable(output)
        assert dead_letter_positions(result.outputs) == []  # a bad state is skipped, not DLQ'd
        assert sum(score.skipped_by_reason.values()) == hostile, [c.what for c in cases]
        assert all(topic == T.user_state for topic, _ in score.skipped_by_reason)
        for partition, users in expected.items():
            mirrored = {u.encode(): encode_state(s) for u, s in score._mirror[partition].items()}
            assert mirrored == users

        # The global path decodes the same way: a scorer owning none of these partitions
        # counts the same bad records (apart) and learns the same item-side table.
        owner, other = ScoreProcessor(SETTINGS), ScoreProcessor(SETTINGS)
        owner.process(batch)
        other.learn_global(batch)
        assert sum(other.global_skipped_by_reason.values()) == hostile
        assert sum(other.skipped_by_reason.values()) == 0
        assert other.item_side.item_counts() == owner.item_side.item_counts()
        assert other.item_side.pair_counts() == owner.item_side.pair_counts()
        assert other.item_side.decayed_weights() == owner.item_side.decayed_weights()

        ingest = IngestProcessor(SETTINGS)
        restored = 0
        for partition in range(SETTINGS.partitions):
            restored += ingest.restore(partition, [r for r in batch if r.partition == partition])
        assert sum(ingest.skipped_by_reason.values()) == hostile
        assert restored == sum(len(users) for users in expected.values())
        for partition, users in expected.items():
            assert set(ingest.users(partition)) == {k.decode() for k in users}

    run_property(state_cases, check)
