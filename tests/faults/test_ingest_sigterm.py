"""SIGTERM to a running ingest mid-stream, then restart: nothing lost, nothing applied twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from consumers.ingest import IngestProcessor
from online_models.user_state import decode_state
from producers.synthetic import SyntheticStream
from streamrec.bus import partition_for
from streamrec.events import encode_click
from streamrec.records import Record
from support import latest_by_key, produce_raw, read_topic

pytestmark = pytest.mark.kafka

N_EVENTS = 20_000


def _start_ingest(settings, instance: str) -> subprocess.Popen:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
               STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
               STREAMREC_INGEST_GROUP=settings.ingest_group,
               STREAMREC_PARTITIONS=str(settings.partitions), STREAMREC_BATCH_SIZE="200")
    return subprocess.Popen([sys.executable, "-m", "streamrec.cli", "ingest", "--instance-id",
                             instance, "--log-format", "text"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _applied(records: list[Record]) -> int:
    return sum(decode_state(r.value).event_count for r in latest_by_key(records).values())


def test_sigterm_mid_stream_then_restart_equals_uninterrupted_run(kafka_settings):
    settings = kafka_settings
    events = list(SyntheticStream(n_users=500, n_items=300, n_events=N_EVENTS, seed=3).events())

    # The uninterrupted run: the same processor fed every event once, in partition order.
    reference = IngestProcessor(settings)
    offsets: dict[int, int] = {}
    for event in events:
        partition = partition_for(event.user_id.encode(), settings.partitions)
        reference.apply(event, partition, offsets.get(partition, 0))
        offsets[partition] = offsets.get(partition, 0) + 1
    expected = {u: s.learned_view() for u, s in reference.all_states().items()}

    first = _start_ingest(settings, "sigterm-a")
    # The stream keeps flowing while ingest runs, in slices, so SIGTERM lands mid-stream.
    producer = threading.Thread(target=lambda: [
        produce_raw(settings, settings.topics.clicks,
                    ((e.user_id.encode(), encode_click(e)) for e in events[i:i + 2_000]))
        or time.sleep(0.3) for i in range(0, N_EVENTS, 2_000)])
    producer.start()
    partial = read_topic(settings, settings.topics.user_state, until=lambda rs: _applied(rs) >= 4_000,
                         idle_s=0.0, timeout_s=120)
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 0, output
    applied_at_stop = _applied(read_topic(settings, settings.topics.user_state, idle_s=1.0, timeout_s=10))
    producer.join(120)
    assert len(partial) > 0
    assert applied_at_stop < N_EVENTS, "SIGTERM should land before the stream is consumed"

    second = _start_ingest(settings, "sigterm-a")
    try:
        records = read_topic(settings, settings.topics.user_state,
                             until=lambda rs: _applied(rs) >= N_EVENTS, timeout_s=180)
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output

    final = {r.key.decode(): decode_state(r.value).learned_view() for r in latest_by_key(records).values()}
    assert final == expected
    # No event applied twice: per user, the source offsets in the changelog only grow.
    last_offset: dict[bytes, int] = {}
    for record in records:
        offset = decode_state(record.value).source_offset
        assert offset > last_offset.get(record.key, -1), "a source offset was applied twice"
        last_offset[record.key] = offset
