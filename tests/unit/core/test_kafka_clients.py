"""The client factory: the only constructor of kafka-python clients, and its error wording."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from kafka import errors as kafka_errors

from streamrec.app import kafka_args
from streamrec.transport import kafka_clients
from streamrec.app.cli import main
from streamrec.config import ConfigError, Settings
from streamrec.connection import (KafkaAccessError, KafkaHandshakeError, KafkaSecurity,
                                  KafkaUnreachableError)

ROOT = Path(__file__).resolve().parents[3]
CLIENT_CLASSES = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
FACTORY = ROOT / "streamrec" / "transport" / "kafka_clients.py"
SECURE = Settings(bootstrap_servers="127.0.0.1:9094",
                  kafka_security=KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ingest", "hunter2-x"))


def _constructions(path: Path) -> list[str]:
    """``KafkaConsumer(...)``-style calls in a file, as ``path:line``.

    A client class imported under another name counts too: it would escape the name check.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found += [f"{where}:{node.lineno} {a.name} as {a.asname}" for a in node.names
                      if a.name in CLIENT_CLASSES and a.asname not in (None, a.name)]
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) else None)
            if name in CLIENT_CLASSES:
                found.append(f"{where}:{node.lineno} {name}(")
    return found


def test_no_kafka_client_is_constructed_outside_the_factory():
    sources = [p for p in ROOT.rglob("*.py")
               if not any(part.startswith(".") or part in ("node_modules", "build")
                          for part in p.relative_to(ROOT).parts)]
    assert len(sources) > 50  # the scan really walks the tree
    offenders = [hit for path in sources if path != FACTORY for hit in _constructions(path)]
    assert offenders == [], "build clients with streamrec.transport.kafka_clients: " + ", ".join(offenders)
    assert len(_constructions(FACTORY)) == 3  # and the factory does build all three


def test_the_scan_catches_a_construction(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("import kafka\nfrom kafka import KafkaConsumer as C\n"
                      "client = kafka.KafkaProducer(bootstrap_servers='x')\n"
                      "admin = KafkaAdminClient(bootstrap_servers='x')\n")
    assert sorted(_constructions(sneaky)) == ["sneaky.py:2 KafkaConsumer as C",
                                              "sneaky.py:3 KafkaProducer(",
                                              "sneaky.py:4 KafkaAdminClient("]


def test_client_config_layers_address_security_then_overrides():
    config = kafka_clients.client_config(SECURE, client_id="c", security_protocol="SASL_SSL")
    assert config == {"bootstrap_servers": "127.0.0.1:9094", "security_protocol": "SASL_SSL",
                      "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "ingest",
                      "sasl_plain_password": "hunter2-x", "ssl_check_hostname": True,
                      "client_id": "c"}


@pytest.mark.parametrize("exc, fatal", [
    (KafkaAccessError("x"), True),
    (KafkaHandshakeError("x"), True),
    (kafka_errors.SaslAuthenticationFailedError("bad"), True),
    (kafka_errors.TopicAuthorizationFailedError({"user-state"}), True),
    (kafka_errors.TransactionalIdAuthorizationFailedError(), True),
    (kafka_errors.GroupAuthorizationFailedError(), True),
    (kafka_errors.ClusterAuthorizationFailedError(), True),
    (kafka_errors.KafkaConfigurationError("x"), True),
    (KafkaUnreachableError("x"), False),
    (kafka_errors.KafkaTimeoutError(), False),
    (kafka_errors.NotLeaderForPartitionError(), False),
    (kafka_errors.CommitFailedError(), False),
    (ValueError("x"), False),
])
def test_is_fatal_only_for_refusals_and_bad_configs(exc, fatal):
    assert kafka_clients.is_fatal(exc) is fatal


def test_access_error_names_broker_mechanism_and_user_but_no_secret():
    auth = kafka_clients.access_error(kafka_errors.SaslAuthenticationFailedError("x"), SECURE)
    assert str(auth) == ("Kafka authentication failed at 127.0.0.1:9094 "
                         "(SASL_SSL, SCRAM-SHA-512, user 'ingest')")
    acl = kafka_clients.access_error(kafka_errors.TopicAuthorizationFailedError({"user-state"}),
                                     SECURE)
    assert str(acl).startswith("Kafka authorization failed at 127.0.0.1:9094 (SASL_SSL, "
                               "SCRAM-SHA-512, user 'ingest'): TopicAuthorizationFailed")
    assert "user-state" in str(acl) and "hunter2-x" not in str(acl)
    assert kafka_clients.access_error(ValueError("x"), SECURE) is None


def test_construction_refused_by_the_broker_becomes_kafka_access_error(monkeypatch):
    def refuse(*args, **kwargs):
        raise kafka_errors.SaslAuthenticationFailedError("Authentication failed: invalid credentials")

    monkeypatch.setattr(kafka_clients, "KafkaProducer", refuse)
    with pytest.raises(KafkaAccessError, match="authentication failed at 127.0.0.1:9094"):
        kafka_clients.producer(SECURE)


def test_cli_prints_one_line_and_exits_2_on_refused_credentials(monkeypatch, capsys, tmp_path):
    def refuse(*args, **kwargs):
        raise kafka_errors.SaslAuthenticationFailedError("invalid credentials")

    monkeypatch.setattr(kafka_clients, "KafkaProducer", refuse)
    # No broker listens: skip the CLI's reachability probe, this is about the refusal after.
    monkeypatch.setattr(kafka_args, "check_reachable", lambda settings: None)
    password = tmp_path / "pw"
    password.write_text("hunter2-x")
    code = main(["forget", "u1", "--bootstrap-servers", "127.0.0.1:9094",
                 "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512",
                 "--sasl-username", "ingest", "--sasl-password-file", str(password)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("streamrec: error: Kafka authentication failed at 127.0.0.1:9094 "
                   "(SASL_PLAINTEXT, SCRAM-SHA-512, user 'ingest')\n")


def test_cli_words_an_acl_refusal_raised_mid_run(monkeypatch, capsys):
    class _Producer:
        def __init__(self, **kwargs):
            pass

        def send(self, *args, **kwargs):
            raise kafka_errors.TopicAuthorizationFailedError({"clicks"})

    monkeypatch.setattr(kafka_clients, "KafkaProducer", _Producer)
    monkeypatch.setattr(kafka_args, "check_reachable", lambda settings: None)  # no broker
    code = main(["forget", "u1", "--bootstrap-servers", "127.0.0.1:9094"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("streamrec: error: Kafka authorization failed at 127.0.0.1:9094 "
                          "(PLAINTEXT): TopicAuthorizationFailed")


def test_invalid_security_is_refused_before_any_connection(monkeypatch, capsys):
    monkeypatch.setattr(kafka_clients, "KafkaProducer", None)  # must never be reached
    code = main(["forget", "u1", "--security-protocol", "SASL_SSL"])
    assert code == 2
    assert "needs a SASL mechanism" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        Settings.from_env({}, security_flags={"security_protocol": "SASL_SSL"})
