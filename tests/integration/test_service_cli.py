"""The services as users run them: `streamrec topics create`, `streamrec ingest` with metrics."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from support import produce_raw

pytestmark = pytest.mark.kafka


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_topics_create_command_makes_every_topic(kafka_bootstrap):
    prefix = f"cli{uuid.uuid4().hex[:8]}-"
    run = subprocess.run([sys.executable, "-m", "streamrec.app.cli", "topics", "create", "--partitions", "3",
                          "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", prefix],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    admin = kafka_clients.admin(Settings(bootstrap_servers=kafka_bootstrap))
    try:
        names = {f"{prefix}{n}" for n in ("clicks", "clicks.dlq", "user-state", "requests",
                                           "recommendations", "models", "scorer-state")}
        assert names <= set(admin.list_topics())
        again = subprocess.run(run.args, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, "creating topics twice must be harmless"
    finally:
        admin.delete_topics(sorted(names))
        admin.close()


def test_ingest_serves_metrics_health_and_stops_on_sigterm(kafka_settings):
    settings = kafka_settings
    port = _free_port()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
               STREAMREC_TOPIC_PREFIX=settings.topic_prefix, STREAMREC_INGEST_GROUP=settings.ingest_group)
    service = subprocess.Popen([sys.executable, "-m", "streamrec.app.cli", "ingest", "--metrics-port",
                                str(port), "--instance-id", "metrics-test"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        payloads = list(SyntheticStream(n_users=20, n_items=30, n_events=300, seed=2,
                                        malformed_rate=0.1).raw_payloads())
        produce_raw(settings, settings.topics.clicks, ((k, v) for k, v, _ in payloads))
        bad = sum(not ok for _, _, ok in payloads)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            status, text = _get(f"{base}/metrics")
            match = re.search(r'^streamrec_events_in_total\{service="ingest"\} (\S+)$', text, re.M)
            if status == 200 and match and float(match.group(1)) >= len(payloads):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"ingest metrics never counted {len(payloads)} events:\n{text[-2000:]}")
        rejected = sum(float(v) for v in re.findall(
            r'^streamrec_events_rejected_total\{[^}]*service="ingest"[^}]*\} (\S+)$', text, re.M))
        assert rejected == bad
        assert "streamrec_consumer_lag{" in text and "streamrec_processing_latency_seconds_bucket" in text
        assert _get(f"{base}/healthz")[0] == 200 and _get(f"{base}/readyz")[0] == 200
    finally:
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=60)
    assert service.returncode == 0, output
    assert '"msg": "ingest stopped"' in output
