"""A scorer killed and restarted with the same ``--instance-id`` takes its partitions back at once.

As a static group member (``group.instance.id``) the restarted process replaces its dead
predecessor in the group: no rebalance, no waiting for the dead member's session to expire.
The session timeout is set to 120 s here, so a dynamic member would leave the partitions idle
for about two minutes; the restarted scorer answers well before.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from streamrec.consumers.score import recommendation_decoder
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from support import (applied_events, produce_raw, read_topic, start_service_process,
                     trigger_ids)

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT_S = 120.0


def _answered(settings) -> Counter:  # type: ignore[no-untyped-def]
    return Counter(recommendation_decoder.decode(r.value).trigger_id
                   for r in read_topic(settings, settings.topics.recommendations, timeout_s=5))


def test_restarted_scorer_with_the_same_instance_id_resumes_without_waiting(kafka_settings):
    settings = kafka_settings.replace(session_timeout_s=SESSION_TIMEOUT_S)
    events = list(SyntheticStream(n_users=200, n_items=150, n_events=3_000, seed=21).events())
    wave1, wave2 = events[:1_500], events[1_500:]
    ingest = start_service_process(settings, "ingest", "ingest-0")
    scorer = start_service_process(settings, "score", "score-a")
    restarted = None
    try:
        produce_raw(settings, settings.topics.clicks,
                    [(e.user_id.encode(), encode_click(e)) for e in wave1])
        states = read_topic(settings, settings.topics.user_state, timeout_s=120,
                            until=lambda rs: applied_events(rs) >= len(wave1))
        wave1_triggers = trigger_ids(states)
        read_topic(settings, settings.topics.recommendations, timeout_s=120,
                   until=lambda rs: {recommendation_decoder.decode(r.value).trigger_id
                                     for r in rs} >= wave1_triggers)
        scorer.send_signal(signal.SIGKILL)  # no leaving the group, a transaction maybe open
        scorer.wait(30)

        started = time.monotonic()
        restarted = start_service_process(settings, "score", "score-a")
        produce_raw(settings, settings.topics.clicks,
                    [(e.user_id.encode(), encode_click(e)) for e in wave2])
        states = read_topic(settings, settings.topics.user_state, timeout_s=120,
                            until=lambda rs: applied_events(rs) >= len(events))
        wave2_triggers = trigger_ids(states) & {e.event_id for e in wave2}
        read_topic(settings, settings.topics.recommendations, timeout_s=SESSION_TIMEOUT_S,
                   idle_s=0.0,
                   until=lambda rs: {recommendation_decoder.decode(r.value).trigger_id
                                     for r in rs} >= wave2_triggers)
        resumed_s = time.monotonic() - started
        print(f"restarted scorer answered all {len(wave2_triggers)} new triggers "
              f"{resumed_s:.1f} s after it was started (session timeout {SESSION_TIMEOUT_S:.0f} s)")
        # A dynamic member would wait out the dead one's session (~120 s) before the first.
        assert resumed_s < SESSION_TIMEOUT_S * 0.75, resumed_s
        answered = _answered(settings)
        assert set(answered) >= wave1_triggers | wave2_triggers
        assert set(answered.values()) == {1}, "a trigger was answered twice"
    finally:
        for process in (restarted, ingest):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=60)
        if scorer.poll() is None:
            scorer.kill()
