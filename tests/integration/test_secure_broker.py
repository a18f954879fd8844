"""The least-privilege ACLs on a real secured broker (SASL_SSL, SCRAM-SHA-512, authorizer on).

Every client comes from ``streamrec.transport.kafka_clients`` with one principal's settings
(``SecureBroker.settings_for``); the ACLs are the ones ``streamrec.transport.acls.apply_acls`` creates
as ``admin``. Each principal does what its service
does (transactions and group commits included) and is refused what it must not do.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, OffsetAndMetadata
from kafka import errors as kafka_errors
from kafka.structs import TopicPartition

from streamrec.transport import kafka_clients
from streamrec.transport.acls import acl_bindings, apply_acls, transactional_id_prefix
from streamrec.config import Settings
from streamrec.connection import KafkaAccessError, KafkaUnreachableError
from streamrec.app.kafka_secure import SecureBroker
from streamrec.transport.topics import create_topics


# Every helper below reads partition 0 only (the conftest fixture ``secure_settings`` makes
# this test's topics, groups and transactional ids, and applies the ACLs as admin).
SECURE_PARTITIONS = 1


def produce(broker: SecureBroker, principal: str, topic: str, **extra: object) -> None:
    producer = kafka_clients.producer(broker.settings_for(principal), **extra)
    try:
        producer.send(topic, key=b"u1", value=b"v").get(timeout=20)
    finally:
        producer.close(timeout=5)


def read_all(broker: SecureBroker, principal: str, topic: str, group: str | None = None,
             expect: int = 1) -> list[bytes]:
    """Values read from partition 0 (by assignment, or by subscribing in ``group``)."""
    consumer = kafka_clients.consumer(broker.settings_for(principal), group_id=group,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      isolation_level="read_committed")
    try:
        if group is None:
            # As streamrec.transport.changelog reads: end offsets first. A refused fetch by assignment
            # is only retried by kafka-python; ListOffsets is where the refusal surfaces.
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.end_offsets([tp])
            consumer.seek_to_beginning()
        else:
            consumer.subscribe([topic])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(values) < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in records]
        return values
    finally:
        consumer.close()


def refused(call: object, *args: object, **kwargs: object) -> BaseException:
    """The authorization error ``call`` raises (it must raise one, and quickly)."""
    started = time.monotonic()
    with pytest.raises(kafka_errors.AuthorizationError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert time.monotonic() - started < 20, "an authorization error must not wait for a timeout"
    return caught.value


def transactional_round(broker: SecureBroker, principal: str, settings: Settings, group: str,
                        source: str, sinks: list[str]) -> None:
    """What ``ProcessorService`` does: consume in ``group``, produce to ``sinks`` and commit
    the consumed offsets in one transaction under the service's transactional-id prefix."""
    consumer = kafka_clients.consumer(broker.settings_for(principal), group_id=group,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      isolation_level="read_committed")
    producer = kafka_clients.producer(
        broker.settings_for(principal),
        transactional_id=f"{transactional_id_prefix(settings, group)}i1")
    try:
        consumer.subscribe([source])
        polled: dict = {}
        deadline = time.monotonic() + 30
        while not polled and time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=500)
        assert polled, f"{principal} read nothing from {source} in group {group}"
        producer.init_transactions()
        producer.begin_transaction()
        for sink in sinks:
            producer.send(sink, key=b"u1", value=f"from {principal}".encode())
        offsets = {tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)
                   for tp, records in polled.items()}
        producer.send_offsets_to_transaction(offsets, group)
        producer.commit_transaction()
        committed = consumer.committed(TopicPartition(source, 0))
        assert committed == offsets[TopicPartition(source, 0)].offset
    finally:
        producer.close(timeout=5)
        consumer.close()
    for sink in sinks:
        assert f"from {principal}".encode() in read_all(broker, "admin", sink)


def test_app_writes_clicks_and_requests_and_reads_recommendations(
        kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    t = secure_settings.topics
    produce(kafka_secure, "app", t.clicks)
    produce(kafka_secure, "app", t.requests)
    produce(kafka_secure, "score", t.recommendations)
    assert read_all(kafka_secure, "app", t.recommendations) == [b"v"]  # no group needed


@pytest.mark.parametrize("topic", ["user_state", "models", "recommendations", "dlq",
                                   "scorer_state"])
def test_app_cannot_write_what_services_own(kafka_secure: SecureBroker, secure_settings: Settings,
                                           topic: str) -> None:
    error = refused(produce, kafka_secure, "app", getattr(secure_settings.topics, topic))
    assert isinstance(error, kafka_errors.TopicAuthorizationFailedError)


def test_app_cannot_read_user_state(kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    produce(kafka_secure, "ingest", secure_settings.topics.user_state)  # something to steal
    error = refused(read_all, kafka_secure, "app", secure_settings.topics.user_state)
    assert isinstance(error, kafka_errors.TopicAuthorizationFailedError)


def test_ingest_consumes_clicks_and_commits_state_in_a_transaction(
        kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    t = secure_settings.topics
    produce(kafka_secure, "app", t.clicks)
    transactional_round(kafka_secure, "ingest", secure_settings, secure_settings.ingest_group_id,
                        t.clicks, [t.user_state, t.dlq])
    assert read_all(kafka_secure, "ingest", t.user_state) == [b"from ingest"]  # restore path


def test_ingest_is_refused_what_the_scorer_owns(kafka_secure: SecureBroker,
                                               secure_settings: Settings) -> None:
    t = secure_settings.topics
    refused(produce, kafka_secure, "ingest", t.recommendations)
    refused(produce, kafka_secure, "ingest", t.models)
    refused(produce, kafka_secure, "ingest", t.scorer_state)
    produce(kafka_secure, "app", t.requests)
    error = refused(read_all, kafka_secure, "ingest", t.requests, secure_settings.score_group_id)
    assert isinstance(error, (kafka_errors.GroupAuthorizationFailedError,
                              kafka_errors.TopicAuthorizationFailedError))
    # Another service's transactional ids are fenced off too.
    producer = kafka_clients.producer(kafka_secure.settings_for("ingest"), transactional_id=(
        f"{transactional_id_prefix(secure_settings, secure_settings.score_group_id)}i1"))
    try:
        error = refused(producer.init_transactions)
        assert isinstance(error, kafka_errors.TransactionalIdAuthorizationFailedError)
    finally:
        producer.close(timeout=5)


def test_score_consumes_state_and_requests_and_commits_in_a_transaction(
        kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    t = secure_settings.topics
    produce(kafka_secure, "app", t.requests)
    transactional_round(kafka_secure, "score", secure_settings, secure_settings.score_group_id,
                        t.requests, [t.recommendations, t.dlq, t.models, t.scorer_state])
    produce(kafka_secure, "ingest", t.user_state)
    assert read_all(kafka_secure, "score", t.user_state) == [b"v"]
    assert read_all(kafka_secure, "score", t.models) == [b"from score"]  # the model follower
    assert read_all(kafka_secure, "score", t.scorer_state) == [b"from score"]  # its restore
    refused(produce, kafka_secure, "score", t.user_state)
    refused(produce, kafka_secure, "score", t.clicks)


def test_train_reads_clicks_and_publishes_models_without_idempotent_write(
        kafka_secure: SecureBroker, secure_settings: Settings) -> None:
    t = secure_settings.topics
    produce(kafka_secure, "app", t.clicks)
    # kafka-python 3 producers are idempotent by default: InitProducerId passes with WRITE
    # on a topic alone (KIP-679), no IDEMPOTENT_WRITE on the cluster.
    produce(kafka_secure, "train", t.models, enable_idempotence=True)
    produce(kafka_secure, "train", t.clicks, enable_idempotence=True)  # adopt-model
    assert read_all(kafka_secure, "train", t.clicks, expect=2) == [b"v", b"v"]
    assert read_all(kafka_secure, "train", t.models) == [b"v"]
    refused(produce, kafka_secure, "train", t.user_state)
    refused(read_all, kafka_secure, "train", t.user_state)


def test_a_user_without_acls_may_do_nothing(kafka_secure: SecureBroker,
                                            secure_settings: Settings) -> None:
    t = secure_settings.topics
    for topic in t.all().values():
        refused(produce, kafka_secure, "nobody", topic)
    refused(read_all, kafka_secure, "nobody", t.clicks)
    consumer = kafka_clients.consumer(kafka_secure.settings_for("nobody"))
    try:  # metadata lists only what the principal may describe
        assert not set(t.all().values()) & consumer.topics()
    finally:
        consumer.close()


def test_every_acl_is_in_place_and_applying_twice_changes_nothing(
        kafka_secure: SecureBroker, kafka_secure_admin: KafkaAdminClient,
        secure_settings: Settings) -> None:
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             ResourcePatternFilter, ResourceType)
    apply_acls(kafka_secure_admin, secure_settings)
    found, error = kafka_secure_admin.describe_acls(ACLFilter(
        principal=None, host="*", operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY, resource_pattern=ResourcePatternFilter(
            ResourceType.ANY, None, ACLResourcePatternType.ANY)))
    assert error is kafka_errors.NoError
    ours = {(a.principal, a.resource_pattern.resource_name, a.operation.name.lower())
            for a in found if a.resource_pattern.resource_name.startswith(
                (secure_settings.topic_prefix, secure_settings.transactional_id_prefix))}
    expected = {(r.kafka_principal, r.resource_name, r.operation)
                for r in acl_bindings(secure_settings)}
    assert ours == expected


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
@pytest.mark.parametrize("kind", ["producer", "consumer", "admin"])
def test_a_wrong_password_fails_fast_with_one_line(
        kafka_secure: SecureBroker, caplog: pytest.LogCaptureFixture, mechanism: str,
        kind: str) -> None:
    """kafka-python alone retries a refused SASL login until ``bootstrap_timeout_ms`` (30 s
    by default) and then raises ``KafkaTimeoutError("Unable to bootstrap from ...")``; the
    factory's login check raises ``KafkaAccessError`` from the first refusals instead.
    Measured: 0.3-1 s here."""
    caplog.set_level(logging.WARNING, logger="kafka")
    settings = kafka_secure.settings_for("app", password="wrong", mechanism=mechanism)
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as caught:
        getattr(kafka_clients, kind)(settings)  # the default 30 s bootstrap timeout
    assert time.monotonic() - started < 6, "a refused login must not wait for the timeout"
    assert str(caught.value) == (f"Kafka authentication failed at {kafka_secure.bootstrap} "
                                 f"(SASL_SSL, {mechanism}, user 'app')")
    assert kafka_clients.is_fatal(caught.value)
    assert kafka_secure.passwords["app"] not in caplog.text


def test_the_right_password_under_scram_sha_256_works_too(kafka_secure: SecureBroker,
                                                          secure_settings: Settings) -> None:
    consumer = kafka_clients.consumer(kafka_secure.settings_for("app", mechanism="SCRAM-SHA-256"))
    try:
        assert secure_settings.topics.recommendations in consumer.topics()
    finally:
        consumer.close()


def test_plaintext_clients_cannot_reach_the_secure_listener(kafka_secure: SecureBroker) -> None:
    started = time.monotonic()
    with pytest.raises(KafkaUnreachableError):
        kafka_clients.producer(Settings(bootstrap_servers=kafka_secure.bootstrap),
                               bootstrap_timeout_ms=3000)
    assert time.monotonic() - started < 10


def test_acls_apply_cli_grants_what_the_services_need(
        kafka_secure: SecureBroker, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``streamrec acls apply`` authenticated as admin over SASL_SSL by a client properties
    file, as an operator runs it against a production cluster."""
    from streamrec.app.cli import main
    from streamrec.app.kafka_secure import write_client_properties
    prefix = f"c{uuid.uuid4().hex[:10]}-"
    for name in [n for n in os.environ if n.startswith(("STREAMREC_", "KAFKA_BOOTSTRAP"))]:
        monkeypatch.delenv(name)
    settings = kafka_secure.settings_for("admin", Settings(topic_prefix=prefix, partitions=1))
    create_topics(settings)
    refused(produce, kafka_secure, "app", settings.topics.clicks)  # before: nothing allowed
    admin_config = write_client_properties(kafka_secure, tmp_path / "clients")["admin"]
    assert main(["acls", "apply", "--prefix", prefix, "--bootstrap-servers",
                 kafka_secure.bootstrap, "--kafka-config", str(admin_config)]) == 0
    out = capsys.readouterr().out
    assert f"{len(acl_bindings(settings))} ACLs in force" in out and "user 'admin'" in out
    assert kafka_secure.admin_password not in out
    produce(kafka_secure, "app", settings.topics.clicks)  # right after: already enforced


def test_no_password_reaches_the_broker_logs(kafka_secure: SecureBroker,
                                             secure_settings: Settings) -> None:
    """Run last in this module: by now every principal has connected, and wrong passwords
    were tried; the broker's logs (and the launcher's stdout log) hold no secret."""
    if not kafka_secure.data_dir:
        pytest.skip("a broker given by KAFKA_SECURE_BOOTSTRAP_SERVERS: its logs are not ours")
    produce(kafka_secure, "app", secure_settings.topics.clicks)
    logs = "".join(path.read_text(errors="replace")
                   for path in Path(kafka_secure.data_dir).glob("*.log"))
    assert "SASL_SSL" in logs  # the log is the real one, listing the secure listener
    config = (Path(kafka_secure.data_dir) / "server.properties").read_text()
    store_password = next(line.split("=", 1)[1] for line in config.splitlines()
                          if line.startswith("ssl.keystore.password="))
    for secret in [*kafka_secure.passwords.values(), store_password]:
        assert secret not in logs
