"""The pipeline over SASL_SSL with SCRAM-SHA-512 and ACLs on, every client its own principal.

``app`` publishes 5,000 clicks with ``ClickPublisher``; ``ingest`` and ``score`` run as
in-process services; ``app`` reads the recommendations back with ``RecommendationReader``;
``admin`` reads user-state to check exactly-once. The ACLs are the least-privilege ones of
``streamrec.transport.acls`` for this test's topics, groups and transactional ids.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from streamrec.online_models.user_state import decode_state
from streamrec.producers.publisher import ClickPublisher
from streamrec.producers.reader import RecommendationReader
from streamrec.producers.synthetic import SyntheticStream
from streamrec.config import Settings
from streamrec.app.kafka_secure import SecureBroker
from streamrec.messages import Recommendation
from support import (applied_events, assert_offsets_applied_once, ingest_service, latest_by_key,
                     read_topic, running_service, score_service, trigger_ids)

pytestmark = pytest.mark.kafka

N_EVENTS = 5_000


def read_recommendations(settings: Settings, expect: int, timeout_s: float = 120.0,
                         idle_s: float = 3.0) -> list[Recommendation]:
    """Every recommendation on the topic, as the app reads them (``expect``, then ``idle_s``
    more to catch a duplicate)."""
    received: list[Recommendation] = []
    deadline = time.monotonic() + timeout_s
    with RecommendationReader(settings, from_beginning=True) as reader:
        while len(received) < expect and time.monotonic() < deadline:
            received += reader.poll(500)
        idle_until = time.monotonic() + idle_s
        while time.monotonic() < idle_until:
            received += reader.poll(250)
        assert reader.skipped == 0
    return received


def test_5000_clicks_through_the_secured_pipeline_exactly_once(
        kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    as_app = kafka_secure.settings_for("app", secure_settings)
    events = list(SyntheticStream(n_users=200, n_items=300, n_events=N_EVENTS, seed=17).events())

    with running_service(ingest_service(kafka_secure.settings_for("ingest", secure_settings))), \
            running_service(score_service(kafka_secure.settings_for("score", secure_settings))):
        with ClickPublisher.from_settings(as_app) as publisher:
            for event in events:
                publisher.publish(event)
        assert publisher.published == N_EVENTS and publisher.failed == 0
        states = read_topic(secure_settings, secure_settings.topics.user_state,
                            until=lambda rs: applied_events(rs) >= N_EVENTS, timeout_s=180)
        triggers = trigger_ids(states)
        recommendations = read_recommendations(as_app, expect=len(triggers))

    # Every click applied exactly once: per-user counts, and no source offset twice.
    final = {r.key.decode(): decode_state(r.value) for r in latest_by_key(states).values()}
    assert {user: state.event_count for user, state in final.items()} == \
        dict(Counter(e.user_id for e in events))
    assert_offsets_applied_once(states)

    # One recommendation per trigger, none twice, none for anything else.
    by_trigger = Counter(message.trigger_id for message in recommendations)
    assert set(by_trigger) == triggers and max(by_trigger.values()) == 1
    assert len(recommendations) == len(triggers)

    # Nothing the user had clicked up to the trigger is recommended.
    seen_through: dict[str, set[str]] = {}
    clicked: dict[str, set[str]] = {}
    for e in events:
        clicked.setdefault(e.user_id, set()).add(e.item_id)
        seen_through[e.event_id] = set(clicked[e.user_id])
    # A trigger is ranked with what the scorer knows at its own position in the stream, so
    # a list may be empty only when no known item is unseen by the user: the scorer knows
    # at least every item of the states before the trigger's in its user-state partition.
    known_before: dict[str, set[str]] = {}
    for partition in {r.partition for r in states}:
        known: set[str] = set()
        for record in sorted((r for r in states if r.partition == partition and r.value),
                             key=lambda r: r.offset):
            state = decode_state(record.value)
            known_before.setdefault(state.last_event_id, set(known))
            known.update(state.seen_items)
    for message in recommendations:
        if known_before[message.trigger_id] - seen_through[message.trigger_id]:
            assert message.items, message
        assert not seen_through[message.trigger_id] & {i.item_id for i in message.items}, message
    assert {m.user_id for m in recommendations} == set(clicked)

