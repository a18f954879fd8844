"""Shared fixtures: a real Kafka broker for tests marked ``kafka``, never a mock.

The broker comes from, in order: ``KAFKA_BOOTSTRAP_SERVERS`` if set; an ``apache/kafka``
container where a Docker engine answers; else ``KafkaLauncher`` running Kafka from its jars.
It is started at most once per session. Each test gets its own topic prefix, so tests never
see each other's records and need no cleanup between them.

Tests that ask for ``kafka_secure`` get a second, secured broker (``SASL_SSL`` with SCRAM,
``StandardAuthorizer``): the one ``KAFKA_SECURE_BOOTSTRAP_SERVERS`` names, else one the
launcher starts for the session (it costs about 1 GB of memory and 7 s, so only on demand).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from typing import Iterator
from urllib.parse import urlparse

import pytest
from kafka import KafkaAdminClient

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.app.kafka_broker_config import pick_free_ports
from streamrec.app.kafka_launcher import DEFAULT_HOME, KafkaLauncher, probe
from streamrec.app.kafka_secure import PRINCIPALS, SecureBroker
from streamrec.transport.topics import create_topics

KAFKA_IMAGE = "apache/kafka:4.1.1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the broker ``kafka``, so ``-m 'not kafka'`` skips them."""
    for item in items:
        if {"kafka_bootstrap", "kafka_secure"} & set(getattr(item, "fixturenames", ())):
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


def _given_secure_broker() -> SecureBroker | None:
    """A secured broker described by the environment, or None if none is named.

    ``KAFKA_SECURE_BOOTSTRAP_SERVERS`` (its SASL_SSL listener), ``KAFKA_SECURE_CAFILE`` (PEM)
    and ``KAFKA_SECURE_PASSWORD_<PRINCIPAL>`` for each of ``PRINCIPALS`` (SCRAM-SHA-512 users
    that exist there; ``admin`` a super user, the others without ACLs of their own).
    """
    bootstrap = os.environ.get("KAFKA_SECURE_BOOTSTRAP_SERVERS")
    if not bootstrap:
        return None
    names = {name: f"KAFKA_SECURE_PASSWORD_{name.upper()}" for name in PRINCIPALS}
    missing = [var for var in ["KAFKA_SECURE_CAFILE", *names.values()] if not os.environ.get(var)]
    if missing:
        pytest.fail(f"KAFKA_SECURE_BOOTSTRAP_SERVERS is set but {', '.join(missing)} not")
    return SecureBroker(bootstrap, os.environ["KAFKA_SECURE_CAFILE"],
                        {name: os.environ[var] for name, var in names.items()})


@pytest.fixture(scope="session")
def kafka_secure() -> Iterator[SecureBroker]:
    """A broker with a SASL_SSL listener, SCRAM users per principal and ACLs enforced."""
    given = _given_secure_broker()
    if given is not None:
        yield given
        return
    missing = [tool for tool in ("java", "keytool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no secured broker: set KAFKA_SECURE_BOOTSTRAP_SERVERS, or put "
                    f"{' and '.join(missing)} on PATH so the launcher can start one")
    home = os.environ.get("STREAMREC_KAFKA_HOME") or DEFAULT_HOME
    launcher = KafkaLauncher(home, record_state=False, die_with_parent=True, secure=True)
    with launcher:
        assert launcher.secured is not None
        yield launcher.secured


@pytest.fixture(scope="session")
def kafka_secure_admin(kafka_secure: SecureBroker) -> Iterator[KafkaAdminClient]:
    """One admin client (the super user, over SASL_SSL) for the session."""
    admin = kafka_clients.admin(kafka_secure.settings_for("admin"), client_id="streamrec-tests")
    yield admin
    admin.close()


@pytest.fixture
def secure_settings(request: pytest.FixtureRequest, kafka_secure: SecureBroker,
                    kafka_secure_admin: KafkaAdminClient) -> Iterator[Settings]:
    """Admin's settings on the secured broker with a per-test prefix, groups and transactional
    ids (as ``kafka_settings``), topics created and the least-privilege ACLs applied for them.

    ``kafka_secure.settings_for(principal, secure_settings)``: the same, as another principal.
    A test module may set ``SECURE_PARTITIONS`` (default 2).
    """
    from streamrec.transport.acls import apply_acls
    prefix = f"s{uuid.uuid4().hex[:12]}-"
    partitions = getattr(request.module, "SECURE_PARTITIONS", 2)
    settings = kafka_secure.settings_for("admin", Settings(
        topic_prefix=prefix, partitions=partitions, ingest_group=f"{prefix}ingest",
        score_group=f"{prefix}score", transactional_id_prefix=prefix.rstrip("-")))
    names = create_topics(settings, admin=kafka_secure_admin)
    # The ACLs name these topics, groups and transactional ids: they follow the settings.
    apply_acls(kafka_secure_admin, settings)
    yield settings
    with contextlib.suppress(Exception):
        kafka_secure_admin.delete_topics(names)
