"""A service started with a wrong password fails fast, with one line naming broker and mechanism.

Each command runs as its own process, as an operator starts it, against the secured broker
(SASL_SSL, SCRAM): not a traceback, not a retry loop, not the 30 s kafka-python takes to give
up, and neither the wrong password nor the right one in anything it prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamrec.app.kafka_secure import SecureBroker
from support import security_env

WRONG = "not-the-ingest-password-7f3a"


def _run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamrec.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - started


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("STREAMREC_", "KAFKA_BOOTSTRAP"))}


@pytest.mark.parametrize("command", [["ingest", "--instance-id", "wrong-pw"],
                                     ["score", "--instance-id", "wrong-pw"],
                                     ["topics", "create"]])
def test_a_wrong_password_ends_the_command_at_once_with_one_line(
        kafka_secure: SecureBroker, command: list[str]) -> None:
    settings = kafka_secure.settings_for("ingest", password=WRONG)
    env = dict(_clean_env(), **security_env(settings),
               KAFKA_BOOTSTRAP_SERVERS=kafka_secure.bootstrap, STREAMREC_TOPIC_PREFIX="wrongpw-")
    done, seconds = _run(command, env)
    expected = (f"streamrec: error: Kafka authentication failed at {kafka_secure.bootstrap} "
                "(SASL_SSL, SCRAM-SHA-512, user 'ingest')")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == expected
    assert done.stderr == expected + "\n", "nothing else: no traceback, no retried attempts"
    assert seconds < 15, f"took {seconds:.1f} s: a refused login must not wait for a timeout"
    for secret in (WRONG, *kafka_secure.passwords.values()):
        assert secret not in done.stdout + done.stderr


def test_a_wrong_password_in_a_properties_file_fails_the_same_way(
        kafka_secure: SecureBroker, tmp_path: Path) -> None:
    """The ``--kafka-config`` route (Kafka's own client.properties, JAAS line and all)."""
    config = tmp_path / "ingest.properties"
    config.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="ingest" password="{WRONG}";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={kafka_secure.ca_file}\n")
    done, seconds = _run(["ingest", "--bootstrap-servers", kafka_secure.bootstrap,
                          "--kafka-config", str(config)], _clean_env())
    assert done.returncode == 2
    assert done.stderr == (f"streamrec: error: Kafka authentication failed at "
                           f"{kafka_secure.bootstrap} (SASL_SSL, SCRAM-SHA-256, user 'ingest')\n")
    assert seconds < 15 and WRONG not in done.stdout + done.stderr


@pytest.mark.parametrize("sdk", ["ClickPublisher", "RecommendationReader"])
def test_the_app_sdk_raises_kafka_access_error_at_once(kafka_secure: SecureBroker,
                                                       sdk: str) -> None:
    from streamrec.producers.publisher import ClickPublisher
    from streamrec.producers.reader import RecommendationReader
    from streamrec.connection import KafkaAccessError
    settings = kafka_secure.settings_for("app", password=WRONG)
    build = {"ClickPublisher": ClickPublisher.from_settings,
             "RecommendationReader": RecommendationReader}[sdk]
    started = time.monotonic()
    with pytest.raises(KafkaAccessError, match=r"^Kafka authentication failed at .* user 'app'\)$"):
        build(settings)
    assert time.monotonic() - started < 6
