"""On the real broker: the connection config's failure paths, --replication-factor, and the
app-side round trip ClickPublisher -> ingest -> score -> RecommendationReader."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest

from streamrec.producers.publisher import ClickPublisher
from streamrec.producers.reader import RecommendationReader
from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.connection import KafkaHandshakeError, KafkaSecurity
from support import ingest_service, produce_raw, running_service, score_service

pytestmark = pytest.mark.kafka


def _cli(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamrec.app.cli", *argv],
                          capture_output=True, text=True, timeout=timeout)


def test_tls_against_a_plaintext_listener_is_a_fatal_one_line_error(kafka_bootstrap):
    settings = Settings(bootstrap_servers=kafka_bootstrap, kafka_security=KafkaSecurity("SSL"))
    started = time.monotonic()
    with pytest.raises(KafkaHandshakeError) as caught:
        kafka_clients.admin(settings, bootstrap_timeout_ms=3000)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(f"cannot connect to Kafka at {kafka_bootstrap} (SSL): ")
    assert "Handshake failed" in message and "\n" not in message
    assert kafka_clients.is_fatal(caught.value)


def test_cli_with_the_wrong_protocol_exits_2_with_one_line_not_a_traceback(kafka_bootstrap):
    run = _cli("topics", "create", "--bootstrap-servers", kafka_bootstrap,
               "--topic-prefix", f"wrongproto{uuid.uuid4().hex[:6]}-", "--security-protocol", "SSL")
    assert run.returncode == 2
    assert run.stderr.startswith(f"streamrec: error: cannot connect to Kafka at {kafka_bootstrap} "
                                 "(SSL): KafkaConnectionError: Handshake failed")
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1


def test_replication_factor_flag_reaches_every_topic(kafka_bootstrap, kafka_admin):
    prefix = f"rf{uuid.uuid4().hex[:8]}-"
    run = _cli("topics", "create", "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", prefix,
               "--replication-factor", "1", "--partitions", "2")
    assert run.returncode == 0, run.stderr
    names = [n for n in kafka_admin.list_topics() if n.startswith(prefix)]
    try:
        assert len(names) == 7  # every topic of streamrec.transport.topics
        for topic in kafka_admin.describe_topics(names):
            assert topic["partitions"], topic
            assert {len(p["replica_nodes"]) for p in topic["partitions"]} == {1}, topic
    finally:
        kafka_admin.delete_topics(names)


def test_replication_factor_above_the_brokers_is_one_line_and_creates_nothing(kafka_bootstrap,
                                                                              kafka_admin):
    brokers = len(kafka_admin.describe_cluster()["brokers"])
    prefix = f"rfbad{uuid.uuid4().hex[:8]}-"
    run = _cli("topics", "create", "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", prefix,
               "--replication-factor", str(brokers + 2))
    assert run.returncode == 2
    assert run.stderr == (f"streamrec: error: replication factor {brokers + 2} exceeds the "
                          f"{brokers} broker(s) of the cluster at {kafka_bootstrap}: use "
                          f"--replication-factor {brokers} or less\n")
    assert not [n for n in kafka_admin.list_topics() if n.startswith(prefix)]


def test_clicks_published_come_back_through_the_reader(kafka_settings):
    settings = kafka_settings
    events = list(SyntheticStream(n_users=80, n_items=150, n_events=1_500, seed=5).events())
    users = {e.user_id for e in events}
    reader = RecommendationReader(settings)  # from now on: nothing older than this test
    received: list = []
    done = threading.Event()

    def follow() -> None:
        reader.run(received.append, until=lambda: {r.user_id for r in received} >= users,
                   timeout_s=120)
        done.set()

    with running_service(ingest_service(settings)), running_service(score_service(settings)):
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        # A foreign message on recommendations is skipped and counted, never raised.
        produce_raw(settings, settings.topics.recommendations, [(b"u-x", b"\xff not json")])
        with ClickPublisher.from_settings(settings) as publisher:
            for event in events:
                publisher.publish(event)
        assert done.wait(150), f"{len(users - {r.user_id for r in received})} users got nothing"
    reader.close()

    assert {r.user_id for r in received} == users
    assert reader.skipped == 1 and reader.received == len(received)
    for user in users:
        latest = reader.latest(user)
        mine = [r for r in received if r.user_id == user]
        assert latest is mine[-1] and latest.items  # the newest one, with items
        assert len(latest.items) <= settings.top_k
    assert reader.latest("nobody") is None and reader.users() == len(users)
