"""The factory's login check, without a broker: what it does when it cannot decide.

The refusals themselves need a SASL broker: tests/integration/test_secure_broker.py and
tests/integration/test_wrong_password_cli.py.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.connection import KafkaSecurity


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens here once the socket is closed


def _sasl(bootstrap: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap, kafka_security=KafkaSecurity(
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "ingest", "pw-never-shown"))


def test_an_unreachable_broker_is_inconclusive_and_quick() -> None:
    settings = _sasl(f"127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    kafka_clients.check_credentials(settings)  # no raise: the client's bootstrap will say why
    assert time.monotonic() - started < 2
    assert (settings.bootstrap_servers, settings.kafka_security) not in kafka_clients._logged_in


def test_plaintext_and_tls_only_configurations_are_not_checked(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("no login to check without SASL")

    monkeypatch.setattr(kafka_clients, "_log_in_once", fail)
    kafka_clients.check_credentials(Settings(bootstrap_servers="127.0.0.1:1"))


def test_a_configuration_that_logged_in_is_not_checked_again(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(kafka_clients, "_logged_in", set())
    monkeypatch.setattr(kafka_clients, "_log_in_once", lambda config, timeout: calls.append(1))
    settings = _sasl("127.0.0.1:1")
    kafka_clients.check_credentials(settings)
    kafka_clients.check_credentials(settings)
    assert calls == [1]


def test_a_refusal_raises_the_one_line_error_with_the_kafka_error_as_context(monkeypatch) -> None:
    from kafka import errors as kafka_errors
    refusal = kafka_errors.SaslAuthenticationFailedError("invalid credentials")
    monkeypatch.setattr(kafka_clients, "_log_in_once", lambda config, timeout: refusal)
    with pytest.raises(kafka_clients.KafkaAccessError) as caught:
        kafka_clients.check_credentials(_sasl("127.0.0.1:1"))
    assert str(caught.value) == ("Kafka authentication failed at 127.0.0.1:1 "
                                 "(SASL_PLAINTEXT, SCRAM-SHA-512, user 'ingest')")
    # A recovery loop that walks causes (not only kafka_clients.is_fatal) sees it as fatal.
    assert caught.value.__context__ is refusal and caught.value.__suppress_context__


def test_the_check_silences_only_its_own_thread(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="kafka")
    log = logging.getLogger("kafka.net.manager")
    other_logged = threading.Event()

    def other_client() -> None:
        log.warning("another client's line")
        other_logged.set()

    kafka_clients._quiet.active = True
    try:
        log.warning("the check's own line")
        worker = threading.Thread(target=other_client)
        worker.start()
        worker.join(5)
    finally:
        kafka_clients._quiet.active = False
    log.warning("after the check")
    assert other_logged.is_set()
    assert [r.getMessage() for r in caplog.records] == ["another client's line", "after the check"]
