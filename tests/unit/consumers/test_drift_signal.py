"""Online hit-rate and drift: the pure tracker, and the scorer publishing drops on models."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from streamrec.consumers.drift_signal import (DRIFT_KEY, DROP, OnlineHitRateTracker, decode_drift,
                                    encode_drift)
from streamrec.consumers.model_follower import current_values
from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.online_models.user_state import UserState, encode_state
from streamrec.config import ConfigError, Settings
from streamrec.metrics import MetricsRegistry
from streamrec.records import Record

SETTINGS = Settings(top_k=5)
T = SETTINGS.topics


def judge_stream(tracker: OnlineHitRateTracker, rates: list[float], seed: int) -> list:
    """One first click per step, a hit with the step's probability; the drifts returned."""
    rng = np.random.default_rng(seed)
    drifts = []
    for n, rate in enumerate(rates):
        user = f"u{n % 50}"
        tracker.recommended(0, user, ["shown"])
        item = "shown" if rng.random() < rate else f"other{n}"
        drift = tracker.observe(0, user, [(item, float(n))], seen_before=())
        if drift is not None:
            drifts.append((n, drift))
    return drifts


def test_hits_and_misses_are_counted_against_the_last_recommendation():
    tracker = OnlineHitRateTracker()
    tracker.recommended(0, "u1", ["a", "b"])
    tracker.recommended(0, "u1", ["c", "d"])  # only the newest recommendation counts
    tracker.recommended(0, "u2", ["a"])
    tracker.observe(0, "u1", [("c", 1.0), ("a", 2.0)], seen_before=[])
    tracker.observe(0, "u2", [("a", 3.0)], seen_before=["x"])
    assert (tracker.judged, tracker.hits) == (3, 2)
    assert tracker.hit_rate == pytest.approx(2 / 3)


def test_only_first_clicks_are_judged():
    tracker = OnlineHitRateTracker()
    tracker.recommended(0, "u1", ["a", "b"])
    # "x" was seen before (a repeat can never be a hit); the second "b" repeats the first.
    tracker.observe(0, "u1", [("x", 1.0), ("b", 2.0), ("b", 3.0)], seen_before=["x"])
    assert (tracker.judged, tracker.hits) == (1, 1)


def test_users_without_a_previous_recommendation_are_not_judged():
    tracker = OnlineHitRateTracker()
    assert tracker.observe(0, "u1", [("a", 1.0)], seen_before=[]) is None
    tracker.recommended(1, "u1", ["a"])  # another partition's user of the same name
    tracker.observe(0, "u1", [("a", 1.0)], seen_before=[])
    assert tracker.judged == 0 and tracker.hit_rate == 0.0


def test_an_abrupt_drop_is_detected_as_a_drop():
    tracker = OnlineHitRateTracker()
    drifts = judge_stream(tracker, [0.3] * 3000 + [0.05] * 3000, seed=1)
    assert drifts, "the drop from 0.30 to 0.05 went unnoticed"
    n, first = drifts[0]
    assert 3000 < n < 3600  # after the change, and soon after it
    assert first.direction == DROP and first.hit_rate_before > first.hit_rate_after
    assert first.events_before > 0 and first.events == n + 1
    assert tracker.detections[DROP] >= 1
    assert tracker.hit_rate < 0.1  # the window restarted on the new regime


def test_a_stationary_stream_raises_no_alarm():
    tracker = OnlineHitRateTracker()
    assert judge_stream(tracker, [0.2] * 6000, seed=0) == []
    assert tracker.detections == {"drop": 0, "rise": 0}
    assert tracker.hit_rate == pytest.approx(0.2, abs=0.03)


def test_forget_and_drop_release_users():
    tracker = OnlineHitRateTracker()
    for partition in (0, 1):
        for user in ("u1", "u2"):
            tracker.recommended(partition, user, ["a"])
    assert tracker.tracked_users == 4
    tracker.forget(0, "u1")
    assert tracker.tracked_users == 3
    assert tracker.observe(0, "u1", [("a", 1.0)], seen_before=[]) is None
    tracker.drop(1)
    tracker.drop(7)  # never held: nothing to do
    assert tracker.tracked_users == 1 and tracker.judged == 0


def test_drift_messages_round_trip_and_bad_ones_raise():
    tracker = OnlineHitRateTracker()
    drift = judge_stream(tracker, [0.3] * 3000 + [0.05] * 3000, seed=1)[0][1]
    message = decode_drift(encode_drift(drift, detected_at_ms=5, scorer_group="g",
                                        partitions=[2, 0]))
    assert (message.detected_at_ms, message.partitions, message.direction) == (5, [0, 2], DROP)
    with pytest.raises(ValueError):
        decode_drift(b'{"version": "v000001"}')


def test_drift_delta_is_validated():
    with pytest.raises(ConfigError):
        Settings.from_env({"STREAMREC_DRIFT_DELTA": "1.5"})


# -- the scorer -----------------------------------------------------------------------------
class UserStream:
    """Hand-made user-state messages for one partition, as ingest would emit them."""

    def __init__(self) -> None:
        self.states: dict[str, UserState] = {}
        self.offset = 0

    def click(self, user: str, item: str) -> Record:
        state = self.states.setdefault(user, UserState(user_id=user))
        state.new_events = []
        state.apply(item, ts=float(self.offset), event_id=f"e{self.offset}", event_type="click",
                    offset=self.offset, partition=0)
        self.offset += 1
        return Record(T.user_state, 0, self.offset, user.encode(), encode_state(state))


def test_the_scorer_publishes_one_drift_message_on_models_when_its_hit_rate_drops():
    score = ScoreProcessor(SETTINGS, clock=lambda: 12.5)
    registry = MetricsRegistry()
    score.drift.bind_metrics(registry)
    stream, rng = UserStream(), np.random.default_rng(3)
    pool = [f"i{n}" for n in range(400)]
    last: dict[str, list[str]] = {}
    drift_outputs: list[tuple[int, object]] = []
    for n in range(4000):
        user = f"u{n % 20}"
        rate = 0.3 if n < 2000 else 0.03
        seen = set(stream.states[user].seen_items) if user in stream.states else set()
        shown = last.get(user, [])
        if shown and rng.random() < rate:
            item = shown[0]
        else:  # a first click outside what we showed
            item = next(str(i) for i in rng.permutation(pool) if i not in seen and i not in shown)
        result = score.process([stream.click(user, item)])
        for output in result.outputs:
            if output.topic == T.recommendations:
                last[user] = [i.item_id for i in recommendation_decoder.decode(output.value).items]
            elif output.topic == T.models:
                drift_outputs.append((n, output))
    assert drift_outputs, "no drift message after the hit-rate fell from 0.30 to 0.03"
    n, output = drift_outputs[0]
    assert n > 2000 and output.key == DRIFT_KEY and output.partition == 0
    message = decode_drift(output.value)
    assert message.direction == DROP and message.hit_rate_before > message.hit_rate_after
    assert (message.detected_at_ms, message.scorer_group, message.partitions) == (
        12500, SETTINGS.score_group, [0])
    text = registry.render()
    assert 'streamrec_drift_detected_total{direction="drop",service="score"}' in text
    assert "streamrec_online_hit_rate" in text
    assert score.drift.tracker.judged > 3500  # new users' first events are not judged


def test_the_scorer_forgets_tracked_users_on_tombstones_and_partition_drops():
    score = ScoreProcessor(SETTINGS, clock=lambda: 1.0)
    stream = UserStream()
    score.process([stream.click("u1", "a"), stream.click("u2", "b")])
    assert score.drift.tracker.tracked_users == 2
    score.process([Record(T.user_state, 0, 99, b"u1", None)])
    assert score.drift.tracker.tracked_users == 1
    score.drop([0])
    assert score.drift.tracker.tracked_users == 0


def test_the_model_follower_takes_only_current_messages():
    messages = [SimpleNamespace(key=b"current", value=b"1"), SimpleNamespace(key=DRIFT_KEY, value=b"{}"),
                SimpleNamespace(key=b"current", value=None), SimpleNamespace(key=None, value=b"x"),
                SimpleNamespace(key=b"current", value=b"2")]
    assert current_values(messages) == [b"1", b"2"]
