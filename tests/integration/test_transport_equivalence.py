"""Transport equivalence: the in-process bus and a real broker publish the same recommendations.

For the same 5,000-event log, one ingest and one scorer on the ``InProcessBus``
(``streamrec.transport.bus_runner``) and one of each as ``ProcessorService`` on Kafka, with the same
batch size, publish identical recommendations, message for message: user, trigger, kind,
model version, items in order, scores and component scores (to 1e-9). Latencies
(``end_to_end_ms``, ``score_ms``, ``scored_at_ms``) are the only fields left out.

Why this holds, and what the test pins down:

- The scorer is batch-invariant (each trigger is ranked at its own position in the stream),
  so Kafka's varying ``read_committed`` polls of ``user-state`` cannot change what it says.
- Ingest is not: its state messages and snapshots are per poll batch (a user clicking twice
  in one batch gets one state message, in two batches two triggers). So ingest must poll the
  same batches on both sides. ``clicks`` has one partition and the whole log is written
  before ingest starts: every kafka-python poll then returns ``batch_size`` records, as the
  bus's does. The test records the batches ingest processed on each side and checks them.
  With several partitions the two cut the log differently: kafka-python drains one
  partition's fetched records before the next (measured: partition 0's 0-199, 200-399, ...
  first), the bus starts each poll at the next partition; and the scorer's popularity and
  co-visitation would learn from the interleaving of ``user-state`` partitions its polls
  happen to return, which on Kafka depends on fetch timing.
- Clicks carry their event time as record timestamp on both sides (ingest's ``ts`` bound
  reads it). The bus stamps ingest's outputs 0 and Kafka with the wall clock; the scorer's
  bound on a state's event times reads that stamp but only refuses times ahead of it, and
  this log is in the past. ``trigger_produced_ms`` feeds only ``end_to_end_ms``.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.events import ClickEvent
from streamrec.messages import Recommendation
from streamrec.transport.runtime import ProcessorService
from streamrec.transport.topics import topic_specs
from support import (RecordingIngest, assert_same_recommendations, equivalence_log, on_the_bus,
                     read_topic, running_service, settings_with_topics, write_clicks)

pytestmark = pytest.mark.kafka

EVENTS = 5_000
BATCH = 200


def on_kafka(settings: Settings, events: list[ClickEvent], expected: int
             ) -> tuple[list[Recommendation], list[tuple[int, int, int]]]:
    """The whole log on ``clicks`` first, then one ingest and one scorer service."""
    write_clicks(settings, events)
    ingest = RecordingIngest(settings)
    ingest_service = ProcessorService(ingest, settings, input_topics=[settings.topics.clicks],
                                      group_id=settings.ingest_group_id, instance_id="eq-0")
    score_service = ProcessorService(ScoreProcessor(settings), settings,
                                     input_topics=[settings.topics.user_state,
                                                   settings.topics.requests],
                                     group_id=settings.score_group_id, instance_id="eq-0",
                                     restore_to_committed=True)
    with running_service(ingest_service), running_service(score_service):
        # read_committed, until as many answers as the bus gave (then 2 s more for extras).
        records = read_topic(settings, settings.topics.recommendations,
                             until=lambda rs: len(rs) >= expected, timeout_s=120, idle_s=2.0)
    return [recommendation_decoder.decode(r.value) for r in records], ingest.batches


def test_the_bus_and_kafka_publish_identical_recommendations(kafka_bootstrap):
    started = time.monotonic()
    settings = settings_with_topics(kafka_bootstrap, partitions=1, batch_size=BATCH,
                                    snapshot_every=500)
    try:
        events = equivalence_log(EVENTS)
        bus_messages, bus_batches = on_the_bus(settings, events)
        # Every poll of the whole log is full but the last: the batching Kafka must match.
        assert bus_batches == [(0, start, min(start + BATCH, EVENTS) - 1)
                               for start in range(0, EVENTS, BATCH)]
        kafka_messages, kafka_batches = on_kafka(settings, events, len(bus_messages))
        assert kafka_batches == bus_batches, "ingest polled other batches on Kafka"
        # What is compared is substantial: both trigger sources, online models in use.
        assert len(bus_messages) > EVENTS // 2
        versions = {m.model_version for m in bus_messages}
        assert versions == {"popularity", "online-blend"}, versions

        # Per user, in order (the single partition also fixes the global order: checked last).
        assert_same_recommendations(kafka_messages, bus_messages)
    finally:
        admin = kafka_clients.admin(settings)
        with contextlib.suppress(Exception):
            admin.delete_topics([spec.name for spec in topic_specs(settings)])
        admin.close()
    print(f"transport equivalence: {len(bus_messages)} recommendations compared in "
          f"{time.monotonic() - started:.1f} s")
