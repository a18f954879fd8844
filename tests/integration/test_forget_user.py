"""`streamrec forget USER_ID`: nothing of the user survives, not even a restart."""

from __future__ import annotations

import subprocess
import time
import sys

import pytest

from streamrec.producers.synthetic import SyntheticStream
from snapshots import published_snapshots
from streamrec.events import ClickEvent, encode_click
from support import (applied_events, ingest_service, latest_by_key, produce_raw, read_topic,
                     running_service, score_service)

pytestmark = pytest.mark.kafka


def test_forgotten_user_leaves_no_trace_after_restart(kafka_settings):
    settings = kafka_settings.replace(learn_every=16, snapshot_every=200)
    events = list(SyntheticStream(n_users=40, n_items=80, n_events=2_000, seed=8).events())
    victim = max({e.user_id for e in events}, key=lambda u: sum(e.user_id == u for e in events))
    produce_raw(settings, settings.topics.clicks, ((e.user_id.encode(), encode_click(e)) for e in events))

    with running_service(ingest_service(settings)), running_service(score_service(settings)) as scorer:
        read_topic(settings, settings.topics.user_state, until=lambda rs: applied_events(rs) >= len(events),
                   idle_s=0.0)
        # The scorer follows user-state a little behind ingest: wait until it has the user.
        deadline = time.monotonic() + 60
        while scorer.processor.state_of(victim) is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.2)
        assert scorer.processor.state_of(victim) is not None  # type: ignore[attr-defined]
        forget = subprocess.run([sys.executable, "-m", "streamrec.app.cli", "forget", victim,
                                 "--bootstrap-servers", settings.bootstrap_servers,
                                 "--topic-prefix", settings.topic_prefix],
                                capture_output=True, text=True, timeout=60)
        assert forget.returncode == 0, forget.stderr
        read_topic(settings, settings.topics.user_state,
                   until=lambda rs: latest_by_key(rs).get(victim.encode()) is not None
                   and latest_by_key(rs)[victim.encode()].value is None, idle_s=1.0)

    # Restart both services: they restore from user-state only.
    with running_service(ingest_service(settings, "after-restart")) as ingest, \
            running_service(score_service(settings, "after-restart")) as scorer:
        newcomer = ClickEvent(event_id="late-1", user_id="newcomer", item_id="i1", type="click",
                              ts=events[-1].ts + 1)
        produce_raw(settings, settings.topics.clicks, [(b"newcomer", encode_click(newcomer))])
        read_topic(settings, settings.topics.user_state, until=lambda rs: applied_events(rs) > len(events) - sum(
            e.user_id == victim for e in events), idle_s=1.0)
        assert victim not in ingest.processor.all_states()  # type: ignore[attr-defined]
        assert scorer.processor.state_of(victim) is None  # type: ignore[attr-defined]
        for partition in range(settings.partitions):
            models = ingest.processor.models(partition)  # type: ignore[attr-defined]
            assert not models.blend.knows_user(victim)

    # Both services have stopped: everything is committed, so a bounded read gets it all
    # (read_topic with no target reads until its timeout, 90 s by default).
    records = read_topic(settings, settings.topics.user_state, idle_s=1.0, timeout_s=15)
    latest = latest_by_key(records)
    assert latest[victim.encode()].value is None, "the last word on the user is a tombstone"
    newest_per_partition = {r.partition: snapshot for r, snapshot in published_snapshots(records)}
    assert newest_per_partition, "snapshots were written"
    for snapshot in newest_per_partition.values():
        assert not snapshot.blend.knows_user(victim)
    tombstone_ms = latest[victim.encode()].timestamp_ms
    recommendations = read_topic(settings, settings.topics.recommendations, idle_s=1.0,
                                 timeout_s=15)
    assert any(r.key == victim.encode() for r in recommendations)
    assert not [r for r in recommendations if r.key == victim.encode() and r.timestamp_ms > tombstone_ms]
