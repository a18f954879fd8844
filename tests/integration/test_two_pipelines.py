"""Two pipelines on one broker and one host, told apart only by their topic prefix.

Both keep the default group names, transactional-id prefix and the same instance id (what
two teams copying the README onto one machine would run). Their groups and transactional ids
carry the topic prefix, so neither joins the other's group nor fences the other's producers:
both converge to exactly the states of an uninterrupted run, with no failed commit.
"""

from __future__ import annotations

import contextlib
import threading
import uuid

import pytest

from streamrec.online_models.user_state import decode_state
from streamrec.messages import recommendation_decoder
from streamrec.producers.synthetic import SyntheticStream
from streamrec.config import Settings
from streamrec.events import encode_click
from streamrec.metrics import MetricsRegistry, service_metrics
from streamrec.transport.topics import create_topics
from support import (applied_events, ingest_service, latest_by_key, produce_raw, read_topic,
                     reference_states, running_service, score_service, trigger_ids, user_records)

pytestmark = pytest.mark.kafka


def _pipeline_settings(bootstrap: str, prefix: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, batch_size=200)


def test_two_prefixes_side_by_side_never_fence_each_other(kafka_bootstrap, kafka_admin):
    run = uuid.uuid4().hex[:8]
    pipelines = [_pipeline_settings(kafka_bootstrap, f"team{n}-{run}.") for n in (1, 2)]
    a, b = pipelines
    assert a.ingest_group_id != b.ingest_group_id and a.score_group_id != b.score_group_id
    names = [name for settings in pipelines for name in create_topics(settings, admin=kafka_admin)]
    streams = [list(SyntheticStream(n_users=300, n_items=200, n_events=4_000, seed=n).events())
               for n in (11, 12)]
    registries = [MetricsRegistry() for _ in pipelines]
    services = []
    try:
        with contextlib.ExitStack() as stack:
            for settings, registry in zip(pipelines, registries):
                # Same instance id in both: before the prefix was in the group, their
                # transactional ids were equal and each start fenced the other.
                for service in (ingest_service(settings, "node-1",
                                               metrics=service_metrics(registry, "ingest")),
                                score_service(settings, "node-1",
                                              metrics=service_metrics(registry, "score"))):
                    services.append(stack.enter_context(running_service(service)))
            producers = [threading.Thread(target=produce_raw, args=(
                settings, settings.topics.clicks,
                [(e.user_id.encode(), encode_click(e)) for e in events]))
                for settings, events in zip(pipelines, streams)]
            for thread in producers:
                thread.start()
            for thread in producers:
                thread.join(120)
            for settings, events, registry in zip(pipelines, streams, registries):
                states = read_topic(settings, settings.topics.user_state,
                                    until=lambda rs, n=len(events): applied_events(rs) >= n,
                                    timeout_s=180)
                final = {r.key.decode(): decode_state(r.value).learned_view()
                         for r in latest_by_key(user_records(states)).values()
                         if r.value is not None}
                assert final == reference_states(settings, events)
                triggers = trigger_ids(states)
                recommendations = read_topic(
                    settings, settings.topics.recommendations, timeout_s=180,
                    until=lambda rs, want=triggers: {_trigger(r) for r in rs} >= want)
                answered = [_trigger(r) for r in recommendations]
                assert len(answered) == len(set(answered)), "a trigger was answered twice"
                failures = [line for line in registry.render().splitlines()
                            if line.startswith("streamrec_commit_failures_total{")
                            and not line.endswith(" 0.0")]
                assert failures == [], failures
            # No session of any of the four services failed (a fenced producer fails one).
            assert [s.recovery.total for s in services] == [0, 0, 0, 0]
            assert all(s.batches_committed > 0 for s in services)
    finally:
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics(names)


def _trigger(record) -> str:  # type: ignore[no-untyped-def]
    return recommendation_decoder.decode(record.value).trigger_id
