"""The connection config: validation, kafka-python kwargs, env/flag/file precedence, secrets."""

from __future__ import annotations

import argparse
import logging

import pytest

from streamrec.app.cli import build_parser
from streamrec.app.commands.core import settings_from_args
from streamrec.config import ConfigError, Settings
from streamrec.connection import KafkaSecurity, load_token_provider
from streamrec.kafka_properties import load_properties, parse_properties, security_from_properties

PASSWORD = "pa55-w0rd-xyz"
SCRAM = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ingest", PASSWORD)


def test_defaults_are_plaintext_and_give_one_kwarg():
    assert KafkaSecurity().client_kwargs() == {"security_protocol": "PLAINTEXT"}
    KafkaSecurity().validate()


def test_sasl_ssl_kwargs_are_kafka_python_names(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "app", PASSWORD, ssl_cafile=str(ca),
                             ssl_check_hostname=False)
    security.validate()
    assert security.client_kwargs() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "app", "sasl_plain_password": PASSWORD,
        "ssl_check_hostname": False, "ssl_cafile": str(ca)}


@pytest.mark.parametrize("security, words", [
    (KafkaSecurity("TLS"), "security protocol must be one of"),
    (KafkaSecurity("SASL_SSL"), "needs a SASL mechanism"),
    (KafkaSecurity("SASL_SSL", "GSSAPI", "u", PASSWORD), "needs a SASL mechanism"),
    (KafkaSecurity("PLAINTEXT", "PLAIN", "u", PASSWORD), "needs security protocol SASL_"),
    (KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "u"), "needs a username and a password"),
    (KafkaSecurity("SASL_PLAINTEXT", "OAUTHBEARER"), "needs a token provider"),
    (KafkaSecurity("PLAINTEXT", ssl_cafile="/etc/hosts"), "does not use TLS"),
    (KafkaSecurity("SSL", ssl_cafile="/nonexistent/ca.pem"), "/nonexistent/ca.pem"),
    (KafkaSecurity("SSL", ssl_keyfile="/etc/hosts", ssl_password=PASSWORD), "needs ssl_certfile"),
])
def test_nonsense_is_one_line_config_error_without_secrets(security, words):
    with pytest.raises(ConfigError) as caught:
        security.validate()
    message = str(caught.value)
    assert words in message and "\n" not in message and PASSWORD not in message


def test_repr_and_describe_hide_secrets():
    settings = Settings(kafka_security=KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ingest",
                                                     PASSWORD, ssl_password="key-secret-9"))
    assert PASSWORD not in repr(settings) and "key-secret-9" not in repr(settings)
    assert SCRAM.describe() == "SASL_SSL, SCRAM-SHA-512, user 'ingest'"
    assert settings.kafka_security.secrets() == [PASSWORD, "key-secret-9"]


def test_every_env_variable_is_read(tmp_path):
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("pem")
    env = {
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "STREAMREC_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "STREAMREC_KAFKA_SASL_USERNAME": "ingest",
        "STREAMREC_KAFKA_SASL_PASSWORD": PASSWORD,
        "STREAMREC_KAFKA_SSL_CAFILE": str(files["ca"]),
        "STREAMREC_KAFKA_SSL_CERTFILE": str(files["cert"]),
        "STREAMREC_KAFKA_SSL_KEYFILE": str(files["key"]),
        "STREAMREC_KAFKA_SSL_PASSWORD": "key-secret",
        "STREAMREC_KAFKA_SSL_CHECK_HOSTNAME": "false",
        "STREAMREC_KAFKA_OAUTH_TOKEN_PROVIDER": "mod:attr",
    }
    security = Settings.from_env(env).kafka_security
    assert security == KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ingest", PASSWORD,
                                     str(files["ca"]), str(files["cert"]), str(files["key"]),
                                     "key-secret", False, "mod:attr")


def test_bad_boolean_env_is_named_without_other_values():
    with pytest.raises(ConfigError, match="STREAMREC_KAFKA_SSL_CHECK_HOSTNAME"):
        Settings.from_env({"STREAMREC_KAFKA_SSL_CHECK_HOSTNAME": "maybe"})


def test_password_file_from_env_drops_one_newline(tmp_path):
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    env = {"STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "STREAMREC_KAFKA_SASL_MECHANISM": "PLAIN", "STREAMREC_KAFKA_SASL_USERNAME": "u",
           "STREAMREC_KAFKA_SASL_PASSWORD_FILE": str(secret)}
    assert Settings.from_env(env).kafka_security.sasl_password == PASSWORD


def _write_properties(tmp_path, text: str) -> str:
    path = tmp_path / "client.properties"
    path.write_text(text)
    return str(path)


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path):
    path = _write_properties(tmp_path, "\n".join([
        "bootstrap.servers=file:9094",
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=SCRAM-SHA-256",
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="file-user" password="file-pass";',
    ]))
    only_file = Settings.from_env({}, kafka_config=path)
    assert only_file.bootstrap_servers == "file:9094"
    assert only_file.kafka_security == KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-256",
                                                     "file-user", "file-pass")
    env = {"STREAMREC_KAFKA_CONFIG": path, "KAFKA_BOOTSTRAP_SERVERS": "env:9094",
           "STREAMREC_KAFKA_SASL_USERNAME": "env-user"}
    from_env = Settings.from_env(env)
    assert (from_env.bootstrap_servers, from_env.kafka_security.sasl_username) == (
        "env:9094", "env-user")
    assert from_env.kafka_security.sasl_password == "file-pass"  # not overridden: kept
    flagged = Settings.from_env(env, security_flags={"sasl_username": "flag-user",
                                                     "sasl_mechanism": None},
                                bootstrap_servers="flag:9094")
    assert (flagged.bootstrap_servers, flagged.kafka_security.sasl_username,
            flagged.kafka_security.sasl_mechanism) == ("flag:9094", "flag-user", "SCRAM-SHA-256")


def test_cli_flags_reach_the_settings(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    args = build_parser().parse_args([
        "topics", "create", "--bootstrap-servers", "b:9094", "--replication-factor", "3",
        "--security-protocol", "sasl_ssl", "--sasl-mechanism", "SCRAM-SHA-512",
        "--sasl-username", "ops", "--sasl-password-file", str(secret),
        "--ssl-cafile", str(ca), "--no-ssl-check-hostname"])
    settings = settings_from_args(args)
    assert settings.replication_factor == 3
    assert settings.kafka_security == KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "ops", PASSWORD,
                                                    ssl_cafile=str(ca), ssl_check_hostname=False)
    from streamrec.transport.topics import topic_specs
    assert {spec.replication_factor for spec in topic_specs(settings)} == {3}


@pytest.mark.parametrize("command", [
    ["ingest"], ["score"], ["forget", "u1"], ["topics", "create"], ["train"],
    ["produce", "synthetic", "--users", "1", "--items", "1", "--events", "1"],
])
def test_every_kafka_facing_subcommand_takes_the_connection_flags(command, tmp_path):
    args = build_parser().parse_args(command + ["--kafka-config", "x.properties",
                                                "--security-protocol", "SSL",
                                                "--ssl-cafile", "ca.pem"])
    assert (args.kafka_config, args.security_protocol, args.ssl_cafile) == (
        "x.properties", "SSL", "ca.pem")


def test_no_password_flag_exists():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "--sasl-password", PASSWORD])


def test_properties_format_comments_separators_continuations_escapes():
    text = "\n".join([
        "# a comment",
        "! another comment",
        "   ",
        "a=1",
        "b : two",
        "c three",
        "d = multi\\",
        "    line\\",
        "  value",
        "e=tab\\there\\u0041",
        "key\\=with\\:seps=ok",
        "f=",
        "a=last wins",
        "g=ends with backslash \\\\",
    ])
    props = parse_properties(text)
    assert props == {"a": "last wins", "b": "two", "c": "three", "d": "multilinevalue",
                     "e": "tab\thereA", "key=with:seps": "ok", "f": "",
                     "g": "ends with backslash \\"}


def test_plain_jaas_and_librdkafka_keys(tmp_path):
    props = parse_properties("\n".join([
        "security.protocol=SASL_SSL",
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\",
        "    username='app' password=\"p\\\\\\\"q\";",
        "ssl.ca.location=/ca.pem", "ssl.certificate.location=/c.pem",
        "ssl.key.location=/k.pem", "ssl.key.password=kp",
        "ssl.endpoint.identification.algorithm=",
        "client.id=ignored", "acks=all",
    ]))
    security = security_from_properties(props).security
    assert security == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
                        "sasl_username": "app", "sasl_password": 'p"q', "ssl_cafile": "/ca.pem",
                        "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem", "ssl_password": "kp",
                        "ssl_check_hostname": False}


def test_unknown_keys_are_logged_at_debug(caplog):
    with caplog.at_level(logging.DEBUG, logger="streamrec.kafka_properties"):
        security_from_properties({"linger.ms": "5"})
    assert any(getattr(r, "key", None) == "linger.ms" for r in caplog.records)


def test_pem_truststore_is_the_ca_file():
    props = {"ssl.truststore.location": "/t.pem", "ssl.truststore.type": "PEM"}
    assert security_from_properties(props).security == {"ssl_cafile": "/t.pem"}


@pytest.mark.parametrize("store_type", [None, "JKS", "PKCS12"])
def test_jks_or_pkcs12_truststore_is_one_line_error_pointing_to_pem(store_type, tmp_path):
    lines = ["ssl.truststore.location=/t.jks", f"ssl.truststore.password={PASSWORD}"]
    if store_type:
        lines.append(f"ssl.truststore.type={store_type}")
    with pytest.raises(ConfigError) as caught:
        load_properties(_write_properties(tmp_path, "\n".join(lines)))
    message = str(caught.value)
    assert "PEM" in message and "ssl.ca.location" in message
    assert PASSWORD not in message and "\n" not in message


def test_bad_jaas_never_echoes_the_password(tmp_path):
    bad_module = ("sasl.jaas.config=com.example.Custom required username=\"u\" "
                  f"password=\"{PASSWORD}\";")
    no_password = ("sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                   f"required username=\"{PASSWORD}\";")
    for line in (bad_module, no_password):
        with pytest.raises(ConfigError) as caught:
            load_properties(_write_properties(tmp_path, line))
        assert PASSWORD not in str(caught.value)


def test_missing_properties_file_names_it():
    with pytest.raises(ConfigError, match="/no/such/client.properties"):
        Settings.from_env({}, kafka_config="/no/such/client.properties")


class _Provider:
    def token(self) -> str:
        return "t"


def test_oauth_token_provider_is_loaded_from_module_attribute():
    provider = load_token_provider(f"{__name__}:_Provider")
    assert isinstance(provider, _Provider)
    security = KafkaSecurity("SASL_SSL", "OAUTHBEARER", oauth_token_provider=f"{__name__}:_Provider")
    security.validate()
    assert isinstance(security.client_kwargs()["sasl_oauth_token_provider"], _Provider)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_token_provider("no_such_module_x:make")


def test_namespace_without_kafka_flags_still_builds_settings():
    settings = settings_from_args(argparse.Namespace())
    assert settings.kafka_security == KafkaSecurity()


def test_password_typed_as_the_file_path_is_not_echoed(capsys):
    from streamrec.app.cli import main
    assert main(["forget", "u1", "--sasl-password-file", PASSWORD]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamrec: error: --sasl-password-file") and PASSWORD not in err
