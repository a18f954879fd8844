"""Shared fixtures: a real Kafka broker for tests marked ``kafka``, never a mock.

The broker comes from, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; an ``apache/kafka``
container where a Docker engine answers; else ``KafkaLauncher`` running Kafka from its jars.
It is started at most once per session. Each test gets its own topic prefix, so tests never
see each other's records and need no cleanup between them.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import Iterator
from urllib.parse import urlparse

import pytest
from kafka import KafkaAdminClient

from streamrec import kafka_clients
from streamrec.config import Settings
from streamrec.kafka_broker_config import pick_free_ports
from streamrec.kafka_launcher import DEFAULT_HOME, KafkaLauncher, probe
from streamrec.topics import create_topics

KAFKA_IMAGE = "apache/kafka:4.1.1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the broker ``kafka``, so ``-m 'not kafka'`` skips them."""
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


def _docker_answers() -> bool:
    """Cheap check (a ping, 3 s at most): is there a Docker engine to run a container on?"""
    try:
        import docker
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no package, no socket, no engine: all mean "no"
        return False


@contextlib.contextmanager
def _kafka_container() -> Iterator[str]:
    """An ``apache/kafka`` KRaft container; testcontainers' KafkaContainer drives Confluent's."""
    from testcontainers.core.container import DockerContainer

    host = urlparse(os.environ.get("DOCKER_HOST", "")).hostname or "127.0.0.1"
    # The advertised address must be the one clients dial, so the host port is fixed upfront.
    port = pick_free_ports(1)[0]
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port)
    for key, value in env.items():
        container = container.with_env(key, value)
    container.start()
    try:
        bootstrap = f"{host}:{port}"
        deadline = time.monotonic() + 90
        while (error := probe(bootstrap)) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka container did not answer at {bootstrap}: {error!r}")
            time.sleep(0.3)
        yield bootstrap
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker shared by the whole session."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_answers():
        with _kafka_container() as bootstrap:
            yield bootstrap
        return
    home = os.environ.get("STREAMREC_KAFKA_HOME") or DEFAULT_HOME
    # Private broker (no state file), killed by the kernel if pytest itself is killed.
    with KafkaLauncher(home, record_state=False, die_with_parent=True) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """One admin client for the session (creating one costs a metadata round trip)."""
    admin = kafka_clients.admin(Settings(bootstrap_servers=kafka_bootstrap),
                                client_id="streamrec-tests")
    yield admin
    admin.close()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, kafka_admin: KafkaAdminClient) -> Iterator[Settings]:
    """Settings with a unique topic prefix and all of streamrec's topics already created."""
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    # Groups and transactional ids are per test too: no test joins another test's group.
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix,
                        ingest_group=f"{prefix}ingest", score_group=f"{prefix}score",
                        transactional_id_prefix=prefix.rstrip("-"))
    names = create_topics(settings, admin=kafka_admin)
    yield settings
    # A shared broker (KAFKA_BOOTSTRAP_SERVERS) should not fill up with test topics.
    with contextlib.suppress(Exception):
        kafka_admin.delete_topics(names)
