"""No password or key material in anything a secured run produces.

A short secured run, every program a process of its own as an operator runs it: topics
created and ACLs applied by ``admin`` (``--kafka-config``), ``ingest`` and ``score`` serving
with JSON logs and ``/metrics``, ``app`` publishing with ``streamrec produce synthetic``
(password from a file) and reading recommendations back. Every line they print, both metrics
pages and the SDK's error text are searched for every SCRAM password of the broker, the
key-store password and the broker's private key. (The CA's key is deleted once it signed
the broker certificate: checked too.)
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streamrec.producers.reader import RecommendationReader
from streamrec.app.kafka_broker_config import pick_free_ports
from streamrec.app.kafka_secure import SecureBroker, write_client_properties
from support import applied_events, read_topic, service_env, start_service_process

N_EVENTS = 500


def _broker_key_material(broker: SecureBroker, store_password: str) -> list[str]:
    """The base64 lines of the broker's private key (PKCS#8 PEM), from its key store."""
    keystore = Path(broker.data_dir) / "tls" / "broker.p12"
    done = subprocess.run(["openssl", "pkcs12", "-in", str(keystore), "-nocerts", "-nodes",
                           "-passin", "stdin"], input=store_password.encode(),
                          capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"openssl cannot read the key store: {done.stderr.decode()[:200]}")
    pem = done.stdout.decode()
    body = pem[pem.index("-----BEGIN PRIVATE KEY-----"):pem.index("-----END PRIVATE KEY-----")]
    lines = [line for line in body.splitlines()[1:] if len(line) >= 16]
    assert lines, "the key store must hold the broker's key"
    return lines


def _secrets(broker: SecureBroker) -> list[str]:
    secrets = list(broker.passwords.values())
    if broker.data_dir:  # the launcher's broker: its TLS material is ours to check too
        config = (Path(broker.data_dir) / "server.properties").read_text()
        store_password = re.search(r"^ssl\.keystore\.password=(.+)$", config, re.M).group(1)
        secrets += [store_password, *_broker_key_material(broker, store_password)]
        assert not (Path(broker.data_dir) / "tls" / "ca.p12").exists(), "the CA key must be gone"
    assert all(len(s) >= 16 for s in secrets)  # long enough that a hit cannot be chance
    return secrets


def _metrics(port: int, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                return page.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "streamrec.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_no_secret_in_logs_metrics_or_output_of_a_secured_run(
        kafka_secure: SecureBroker, secure_settings, tmp_path: Path) -> None:
    secrets = _secrets(kafka_secure)
    configs = write_client_properties(kafka_secure, tmp_path / "clients")
    password_file = tmp_path / "app.password"
    password_file.write_text(kafka_secure.passwords["app"] + "\n")
    base_env = service_env(secure_settings)
    for name in [n for n in base_env if n.startswith("STREAMREC_KAFKA_")]:
        del base_env[name]  # each program below names its own credentials
    texts: dict[str, str] = {}

    # The operator: topics (they exist: idempotent) and ACLs, as admin by properties file.
    admin_args = ["--bootstrap-servers", kafka_secure.bootstrap, "--kafka-config",
                  str(configs["admin"])]
    texts["topics create"] = _cli(["topics", "create", *admin_args], base_env)
    texts["acls apply"] = _cli(["acls", "apply", "--prefix", secure_settings.topic_prefix,
                                *admin_args], base_env)

    ingest_port, score_port = pick_free_ports(2)
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("ingest", "score")}
    services = {
        "ingest": start_service_process(kafka_secure.settings_for("ingest", secure_settings),
                                        "ingest", "nosecret", log_format="json",
                                        metrics_port=ingest_port, output=logs["ingest"]),
        "score": start_service_process(kafka_secure.settings_for("score", secure_settings),
                                       "score", "nosecret", log_format="json",
                                       metrics_port=score_port, output=logs["score"]),
    }
    try:
        app_env = dict(base_env, STREAMREC_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                       STREAMREC_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                       STREAMREC_KAFKA_SASL_USERNAME="app",
                       STREAMREC_KAFKA_SASL_PASSWORD_FILE=str(password_file),
                       STREAMREC_KAFKA_SSL_CAFILE=kafka_secure.ca_file)
        texts["produce synthetic"] = _cli(["produce", "synthetic", "--users", "50", "--items",
                                           "80", "--events", str(N_EVENTS), "--seed", "3"],
                                          app_env)
        read_topic(secure_settings, secure_settings.topics.user_state,
                   until=lambda rs: applied_events(rs) >= N_EVENTS, timeout_s=120, idle_s=0)
        as_app = kafka_secure.settings_for("app", secure_settings)
        with RecommendationReader(as_app, from_beginning=True) as reader:
            deadline = time.monotonic() + 60
            while reader.received < 50 and time.monotonic() < deadline:
                reader.poll(500)
            assert reader.received >= 50, "the scorer answered the app's clicks"
        texts["ingest /metrics"] = _metrics(ingest_port)
        texts["score /metrics"] = _metrics(score_port)
        assert "streamrec_" in texts["ingest /metrics"] + texts["score /metrics"]
    finally:
        for process in services.values():
            process.send_signal(signal.SIGTERM)
        for name, process in services.items():
            process.wait(60)
            logs[name].close()
    for name, process in services.items():
        texts[f"{name} log"] = (tmp_path / f"{name}.log").read_text()
        assert process.returncode == 0, texts[f"{name} log"][-2000:]
        # The log is the service's real one, JSON lines, naming its principal.
        assert f"user '{name}'" in texts[f"{name} log"] and texts[f"{name} log"].startswith("{")
    # The search finds a secret where one is: the app's own client properties hold its password.
    assert kafka_secure.passwords["app"] in configs["app"].read_text()

    leaks = [(where, secret[:4] + "...") for where, text in texts.items()
             for secret in secrets if secret in text]
    assert leaks == []
