"""Pure parts of the secured local broker: config, SCRAM arguments, client files, redaction.
One test runs keytool (about 2 s, no broker) when the JDK is there."""

from __future__ import annotations

import shutil
import ssl
import stat
from pathlib import Path

import pytest

from streamrec.app.kafka_broker_config import BrokerState, render_server_properties
from streamrec.app.kafka_secure import (PRINCIPALS, SCRAM_MECHANISMS, SecureBroker,
                                    add_scram_arguments, client_properties, make_tls_files,
                                    random_passwords, redact, secure_properties, tls_files,
                                    write_client_properties)


def _parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_secure_port_adds_a_sasl_ssl_listener_next_to_plaintext(tmp_path: Path) -> None:
    tls = tls_files(tmp_path / "tls", "store-secret")
    props = _parse(render_server_properties(tmp_path, 41001, 41002, extra=secure_properties(tls),
                                            secure_port=41003))
    assert props["listeners"] == ("PLAINTEXT://127.0.0.1:41001,CONTROLLER://127.0.0.1:41002,"
                                  "SASL_SSL://127.0.0.1:41003")
    assert props["advertised.listeners"].split(",") == ["PLAINTEXT://127.0.0.1:41001",
                                                        "SASL_SSL://127.0.0.1:41003"]
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"].split(",")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"  # the broker needs no password
    assert props["authorizer.class.name"] == \
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert set(props["super.users"].split(";")) == {"User:admin", "User:ANONYMOUS"}
    assert props["sasl.enabled.mechanisms"].split(",") == list(SCRAM_MECHANISMS)
    for mechanism in SCRAM_MECHANISMS:
        assert "ScramLoginModule required" in \
            props[f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config"]
    assert props["ssl.keystore.location"] == str(tls.keystore)
    assert props["ssl.keystore.password"] == "store-secret"


def test_plaintext_config_is_unchanged_without_a_secure_port(tmp_path: Path) -> None:
    props = _parse(render_server_properties(tmp_path, 41001, 41002))
    assert "SASL_SSL" not in props["listeners"] + props["listener.security.protocol.map"]
    assert "authorizer.class.name" not in props


def test_every_principal_gets_a_scram_user_under_both_mechanisms() -> None:
    passwords = random_passwords()
    assert set(passwords) == set(PRINCIPALS) >= {"admin", "app", "ingest", "score", "train"}
    assert len(set(passwords.values())) == len(passwords)  # random, none shared
    args = add_scram_arguments(passwords)
    assert args[::2] == ["--add-scram"] * (len(PRINCIPALS) * len(SCRAM_MECHANISMS))
    assert set(args[1::2]) == {f"{m}=[name={n},password={p}]" for m in SCRAM_MECHANISMS
                               for n, p in passwords.items()}
    # StorageTool splits on these: a password must never contain one.
    assert not any(ch in p for p in passwords.values() for ch in ",[]=\"' ")


def test_secure_broker_never_shows_passwords() -> None:
    broker = SecureBroker("127.0.0.1:1", "/ca.pem", {"app": "s3cret-app"})
    assert "s3cret-app" not in repr(broker) and "s3cret-app" not in str(broker)
    kwargs = broker.client_kwargs("app")
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("app", "s3cret-app")
    assert kwargs["ssl_cafile"] == "/ca.pem"


def test_client_properties_files_are_owner_only(tmp_path: Path) -> None:
    broker = SecureBroker("127.0.0.1:1", "/ca.pem", {"app": "pw-a", "admin": "pw-b"})
    written = write_client_properties(broker, tmp_path / "clients")
    assert set(written) == {"app", "admin"}
    for path in written.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    props = _parse(written["app"].read_text())
    assert props["security.protocol"] == "SASL_SSL"
    assert props["ssl.truststore.type"] == "PEM"
    assert props["sasl.jaas.config"].endswith('username="app" password="pw-a";')
    assert client_properties(broker, "admin") == written["admin"].read_text()


def test_redact_hides_every_secret() -> None:
    text = redact("bad password=abc for admin, xyz too", {"admin": "abc", "app": "xyz"})
    assert "abc" not in text and "xyz" not in text and text.count("***") == 2


def test_broker_state_files_without_the_secure_field_still_read(tmp_path: Path) -> None:
    path = tmp_path / "broker.json"
    path.write_text('{"pid": 1, "bootstrap": "b:1", "data_dir": "/d", "started_at": 0.0}')
    state = BrokerState.read(path)
    assert state is not None and state.secure_bootstrap == ""


@pytest.mark.skipif(shutil.which("keytool") is None, reason="needs the JDK's keytool")
def test_keytool_makes_a_ca_that_python_trusts_for_the_broker_cert(tmp_path: Path) -> None:
    tls = make_tls_files(tls_files(tmp_path / "tls"))
    assert tls.keystore.exists() and tls.truststore.exists()
    assert not (tmp_path / "tls" / "ca.p12").exists()  # the CA key is gone after signing
    context = ssl.create_default_context(cafile=str(tls.ca_pem))  # loads: a valid PEM CA
    assert any("streamrec local CA" in str(ca["subject"]) for ca in context.get_ca_certs())
    chain = (tmp_path / "tls" / "broker-chain.pem").read_text()
    assert chain.count("BEGIN CERTIFICATE") == 2
