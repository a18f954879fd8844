"""Synthetic stream: determinism by seed, ground truth matches the draws, drift, bad payloads."""

from __future__ import annotations

import collections

import pytest

from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import BadEvent, decode_click


def test_deterministic_by_seed() -> None:
    def draw(seed: int) -> list:
        return [(e.event_id, e.user_id, e.item_id, e.type, e.ts)
                for e in SyntheticStream(30, 80, 500, seed=seed).events()]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_events_shape_and_order() -> None:
    stream = SyntheticStream(30, 80, 2_000, seed=1, start_ts=1000.0, mean_gap_s=2.0)
    events = list(stream.events())
    assert len(events) == len(stream) == 2_000
    assert events[0].ts == 1000.0
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:]))
    span = events[-1].ts - events[0].ts
    # Exponential gaps of mean 2 s: 1,999 of them average 2 within a few standard errors
    # (0.045 each); a generator that ignored mean_gap_s (or used 1 s) lands far outside.
    assert span / 1_999 == pytest.approx(2.0, abs=0.2)
    # The gap really follows mean_gap_s: the same seed with twice the mean gives exactly
    # twice the gaps (up to the millisecond rounding of event times).
    slower = list(SyntheticStream(30, 80, 2_000, seed=1, start_ts=1000.0, mean_gap_s=4.0).events())
    assert (slower[-1].ts - slower[0].ts) / span == pytest.approx(2.0, abs=1e-4)
    assert {e.user_id for e in events} <= {f"u{i}" for i in range(30)}
    assert {e.item_id for e in events} <= {f"i{i}" for i in range(80)}
    types = collections.Counter(e.type for e in events)
    assert types["view"] + types["click"] > 0.8 * len(events)
    assert len({e.event_id for e in events}) == len(events)


def test_activity_is_skewed() -> None:
    events = list(SyntheticStream(200, 50, 20_000, seed=2).events())
    counts = sorted(collections.Counter(e.user_id for e in events).values(), reverse=True)
    assert sum(counts[:20]) > 0.3 * len(events)  # top 10% of users make >30% of events


def test_ground_truth_matches_what_users_pick() -> None:
    stream = SyntheticStream(20, 100, 60_000, seed=3)
    picks = collections.Counter((e.user_id, e.item_id) for e in stream.events())
    for user in ("u0", "u5", "u11"):
        favourite = max((c, item) for (u, item), c in picks.items() if u == user)[1]
        assert favourite in stream.ground_truth_top(user, k=3)


def test_ground_truth_exclude_and_drift() -> None:
    stream = SyntheticStream(10, 60, 100, seed=4, drift_at=50)
    top = stream.ground_truth_top("u1", k=5, at_event=0)
    assert len(top) == 5 and len(set(top)) == 5
    assert stream.ground_truth_top("u1", k=4, exclude=top[:1], at_event=0) == top[1:5]
    assert stream.ground_truth_top("u1", k=5, at_event=49) == top
    assert stream.ground_truth_top("u1", k=5) != top  # after drift the tastes moved
    assert len(stream.ground_truth_top("u1", k=1000)) == 60
    with pytest.raises(KeyError):
        stream.ground_truth_top("u10")
    with pytest.raises(KeyError):
        stream.ground_truth_top("bob")


def test_drift_changes_the_picks() -> None:
    stream = SyntheticStream(5, 200, 40_000, seed=5, drift_at=20_000)
    events = list(stream.events())
    before = collections.Counter(e.item_id for e in events[:20_000] if e.user_id == "u0")
    after = collections.Counter(e.item_id for e in events[20_000:] if e.user_id == "u0")
    top_before = {i for i, _ in before.most_common(5)}
    top_after = {i for i, _ in after.most_common(5)}
    assert top_before != top_after


def test_approximate_sampling_for_huge_catalogues() -> None:
    stream = SyntheticStream(2_000, 30_000, 5_000, seed=6)  # 60M cells > exact limit
    events = list(stream.events())
    assert len(events) == 5_000
    assert {int(e.item_id[1:]) for e in events} <= set(range(30_000))


def test_raw_payloads_mix_bad_ones_at_the_rate() -> None:
    stream = SyntheticStream(20, 40, 5_000, seed=8, malformed_rate=0.2)
    payloads = list(stream.raw_payloads())
    bad = [p for p in payloads if not p[2]]
    assert abs(len(bad) / len(payloads) - 0.2) < 0.01
    reasons = collections.Counter()
    valid = []
    for key, value, is_valid in payloads:
        try:
            event = decode_click(value)
        except BadEvent as exc:
            assert not is_valid
            reasons[exc.reason] += 1
        else:
            assert is_valid and key == event.user_id.encode()
            valid.append(event)
    assert set(reasons) == {"bad_json", "schema", "oversized"}
    assert valid == list(stream.events())  # every valid event, once, in order
    assert list(stream.raw_payloads()) == payloads


def test_no_malformed_by_default_and_argument_checks() -> None:
    assert all(ok for _, _, ok in SyntheticStream(5, 5, 100).raw_payloads())
    for kwargs in ({"n_users": 0}, {"n_events": -1}, {"malformed_rate": 1.0},
                   {"drift_at": -3}):
        with pytest.raises(ValueError):
            SyntheticStream(**{"n_users": 5, "n_items": 5, "n_events": 5, **kwargs})
