"""SIGTERM to a running ingest mid-stream, then restart: nothing lost, nothing applied twice.

Run twice: on the plaintext broker, and over SASL_SSL with the ACLs on, where ingest runs as
principal ``ingest`` while the test writes clicks as ``app`` and reads user-state as ``admin``.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from streamrec.online_models.user_state import decode_state
from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from support import (applied_events, assert_offsets_applied_once, latest_by_key, produce_raw, read_topic,
                     reference_states, start_ingest_process)

pytestmark = pytest.mark.kafka

N_EVENTS = 20_000


@pytest.fixture(params=["plaintext", "sasl_ssl"])
def connections(request):
    """Settings of (the ingest process, the test's click writer, the test's reader)."""
    if request.param == "plaintext":
        settings = request.getfixturevalue("kafka_settings")
        return settings, settings, settings
    broker = request.getfixturevalue("kafka_secure")
    admin = request.getfixturevalue("secure_settings")
    return broker.settings_for("ingest", admin), broker.settings_for("app", admin), admin


def test_sigterm_mid_stream_then_restart_equals_uninterrupted_run(connections):
    settings, writer, reader = connections
    events = list(SyntheticStream(n_users=500, n_items=300, n_events=N_EVENTS, seed=3).events())

    expected = reference_states(settings, events)

    first = start_ingest_process(settings, "sigterm-a")
    # The stream keeps flowing while ingest runs, in slices, so SIGTERM lands mid-stream.
    producer = threading.Thread(target=lambda: [
        produce_raw(writer, settings.topics.clicks,
                    ((e.user_id.encode(), encode_click(e)) for e in events[i:i + 2_000]))
        or time.sleep(0.3) for i in range(0, N_EVENTS, 2_000)])
    producer.start()
    partial = read_topic(reader, settings.topics.user_state, until=lambda rs: applied_events(rs) >= 4_000,
                         idle_s=0.0, timeout_s=120)
    first.send_signal(signal.SIGTERM)
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 0, output
    assert f"security={settings.kafka_security.describe()}" in output  # as its own principal
    applied_at_stop = applied_events(read_topic(reader, settings.topics.user_state, idle_s=1.0, timeout_s=10))
    producer.join(120)
    assert len(partial) > 0
    assert applied_at_stop < N_EVENTS, "SIGTERM should land before the stream is consumed"

    second = start_ingest_process(settings, "sigterm-a")
    try:
        records = read_topic(reader, settings.topics.user_state,
                             until=lambda rs: applied_events(rs) >= N_EVENTS, timeout_s=180)
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output

    final = {r.key.decode(): decode_state(r.value).learned_view() for r in latest_by_key(records).values()}
    assert final == expected
    assert_offsets_applied_once(records)
