"""The app principal is refused what the services own: one clear line, exit 2, nothing written.

With the app's own credentials (SASL_SSL, SCRAM-SHA-512, ACLs on): ``streamrec produce
synthetic --topic`` aimed at ``user-state`` or ``models`` (a process, as an app team would
run it), the ``ClickPublisher`` SDK aimed at them, and a read of ``user-state``. Afterwards
``admin`` reads the target topic: nothing from the attempt is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamrec.producers.publisher import ClickPublisher
from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.connection import KafkaAccessError
from streamrec.app.kafka_secure import SecureBroker, write_client_properties
from support import read_topic, start_service_process


def _refusal_line(broker: SecureBroker, topic: str) -> str:
    return (f"Kafka authorization failed at {broker.bootstrap} (SASL_SSL, SCRAM-SHA-512, "
            f"user 'app'): TopicAuthorizationFailed")


def _nothing_in(admin: Settings, topic: str) -> None:
    probe = kafka_clients.consumer(admin)
    try:  # an empty read proves something only if the reader sees the topic's partitions
        assert probe.partitions_for_topic(topic), f"admin does not see {topic}"
    finally:
        probe.close()
    assert read_topic(admin, topic, timeout_s=3, idle_s=0) == [], f"{topic} holds records"


@pytest.mark.parametrize("target", ["user_state", "models"])
def test_produce_cli_as_app_is_refused_with_one_line_and_writes_nothing(
        kafka_secure: SecureBroker, secure_settings: Settings, tmp_path: Path,
        target: str) -> None:
    topic = getattr(secure_settings.topics, target)
    config = write_client_properties(kafka_secure, tmp_path / "clients")["app"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STREAMREC_", "KAFKA_BOOTSTRAP"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamrec.app.cli", "produce", "synthetic", "--users", "5",
         "--items", "5", "--events", "50", "--quiet", "--topic", topic,
         "--bootstrap-servers", kafka_secure.bootstrap, "--kafka-config", str(config)],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # no traceback, no retries
    assert lines[0].startswith("streamrec: error: " + _refusal_line(kafka_secure, topic))
    assert topic in lines[0] and lines[0].endswith("(check the principal's ACLs)")
    assert time.monotonic() - started < 30, "an ACL refusal must not wait for a timeout"
    assert kafka_secure.passwords["app"] not in done.stdout + done.stderr
    _nothing_in(secure_settings, topic)


@pytest.mark.parametrize("target", ["user_state", "models"])
def test_the_publisher_sdk_as_app_raises_kafka_access_error(
        kafka_secure: SecureBroker, secure_settings: Settings, target: str) -> None:
    topic = getattr(secure_settings.topics, target)
    as_app = kafka_secure.settings_for("app", secure_settings)
    events = list(SyntheticStream(n_users=5, n_items=5, n_events=20, seed=1).events())
    with pytest.raises(KafkaAccessError) as caught:
        with ClickPublisher.from_settings(as_app, topic) as publisher:
            for event in events:
                publisher.publish(event)
    message = str(caught.value)
    assert message.startswith(_refusal_line(kafka_secure, topic)) and "\n" not in message
    assert topic in message and kafka_secure.passwords["app"] not in message
    _nothing_in(secure_settings, topic)


def test_reading_user_state_as_app_is_refused_in_one_line(
        kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    as_app = kafka_secure.settings_for("app", secure_settings)
    topic = secure_settings.topics.user_state
    with pytest.raises(Exception) as caught:
        from streamrec.transport.changelog import read_changelog  # how a service restores its state
        read_changelog(as_app, topic, [0])
    refused = kafka_clients.access_error(caught.value, as_app)
    assert refused is not None, f"not an authorization error: {caught.value!r}"
    assert str(refused).startswith(_refusal_line(kafka_secure, topic)) and topic in str(refused)
    assert kafka_clients.is_fatal(caught.value)


def test_the_scorer_started_as_app_ends_at_once_with_one_line(
        kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    """A service run with the app's credentials (reading user-state is the scorer's right,
    not the app's) is refused and exits: one line, exit 2, no retry loop, no traceback."""
    as_app = kafka_secure.settings_for("app", secure_settings)
    started = time.monotonic()
    process = start_service_process(as_app, "score", "as-app-0")
    try:
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, output
    lines = [line for line in output.splitlines() if line.startswith("streamrec: error:")]
    assert len(lines) == 1, output
    assert lines[0].startswith("streamrec: error: Kafka authorization failed at "
                               f"{kafka_secure.bootstrap} (SASL_SSL, SCRAM-SHA-512, user 'app')")
    assert "Traceback" not in output and kafka_secure.passwords["app"] not in output
    # Fatal on the first refusal: no session restarts with growing backoff.
    assert time.monotonic() - started < 60
    _nothing_in(secure_settings, secure_settings.topics.recommendations)
