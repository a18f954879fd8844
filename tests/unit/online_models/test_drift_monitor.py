"""HitRateDriftMonitor: ADWIN flags a drop of our hit-rate, not a steady stream."""

from __future__ import annotations

import numpy as np

from streamrec.online_models.drift import HitRateDriftMonitor


def test_steady_hit_rate_raises_no_alarm():
    monitor = HitRateDriftMonitor()
    rng = np.random.default_rng(0)
    for hit in rng.random(5000) < 0.2:
        monitor.update(bool(hit))
    assert monitor.n_detections == 0 and not monitor.degraded
    assert abs(monitor.hit_rate - 0.2) < 0.03


def test_drop_is_detected_and_marked_degraded():
    monitor = HitRateDriftMonitor()
    rng = np.random.default_rng(1)
    for n, u in enumerate(rng.random(6000)):
        monitor.update(bool(u < (0.3 if n < 3000 else 0.05)))
    assert monitor.n_detections >= 1 and monitor.degraded
    assert 3000 < monitor.last_detection_update < 3600
    signal = monitor.signal()
    assert signal["n_detections"] == monitor.n_detections and signal["hit_rate"] < 0.1


def test_observe_judges_events_against_what_was_shown():
    monitor = HitRateDriftMonitor(max_tracked_users=2)
    assert monitor.observe("u1", "a") is None  # nothing shown yet: no judgement
    monitor.shown("u1", ["a", "b"])
    monitor.shown("u2", ["c"])
    monitor.observe("u1", "a")
    monitor.observe("u2", "z")
    assert monitor.n_updates == 2 and monitor.hit_rate == 0.5
    monitor.shown("u3", ["d"])  # u1 was shown least recently: forgotten
    assert monitor.observe("u1", "a") is None
