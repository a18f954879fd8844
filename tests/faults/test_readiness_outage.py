"""``/readyz`` tells the truth through a broker outage: unhealthy while the broker is gone,
healthy again once it is back and the service commits again.

On a private broker this module starts, kills (SIGKILL) and restarts on the same port and
data dir (never the shared one of KAFKA_BOOTSTRAP_SERVERS).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest

from streamrec.producers.synthetic import SyntheticStream
from streamrec.events import encode_click
from streamrec.app.kafka_broker_config import pick_free_ports
from streamrec.app.kafka_launcher import DEFAULT_HOME, KafkaLauncher
from support import (applied_events, produce_raw, read_topic, settings_with_topics,
                     start_service_process)

pytestmark = pytest.mark.kafka

BROKER_SILENCE_S = 6.0


@pytest.fixture(scope="module")
def launcher() -> Iterator[KafkaLauncher]:
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: the launcher cannot run a broker")
    launcher = KafkaLauncher(os.environ.get("STREAMREC_KAFKA_HOME") or DEFAULT_HOME,
                             record_state=False, die_with_parent=True)
    with launcher:
        yield launcher


def _probe(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except OSError:
        return 0, {}  # not listening (yet), or busy


def _wait_for(port: int, status: int, timeout_s: float) -> tuple[float, dict]:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        code, body = _probe(port, "/readyz")
        if code == status:
            return time.monotonic() - started, body
        time.sleep(0.25)
    raise AssertionError(f"/readyz did not answer {status} within {timeout_s:.0f} s "
                         f"(last: {code} {body})")


def _since_commit(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as page:
        line = next(x for x in page.read().decode().splitlines()
                    if x.startswith("streamrec_seconds_since_last_commit{"))
    return float(line.rsplit(" ", 1)[1])


def test_readyz_is_unhealthy_during_a_broker_outage_and_healthy_after(launcher):
    settings = settings_with_topics(launcher.status().bootstrap,  # type: ignore[union-attr]
                                    broker_silence_s=BROKER_SILENCE_S, stall_after_s=20.0)
    events = list(SyntheticStream(n_users=200, n_items=100, n_events=2_000, seed=5).events())
    (port,) = pick_free_ports(1)
    ingest = start_service_process(settings, "ingest", "ready-0", metrics_port=port)
    try:
        produce_raw(settings, settings.topics.clicks,
                    [(e.user_id.encode(), encode_click(e)) for e in events[:1_000]])
        read_topic(settings, settings.topics.user_state, timeout_s=120,
                   until=lambda rs: applied_events(rs) >= 1_000)
        _wait_for(port, 200, 60)

        launcher.kill()
        killed = time.monotonic()
        took, body = _wait_for(port, 503, 60)
        print(f"/readyz 503 {took:.1f} s after the broker was killed: {body}")
        assert "broker" in str(body.get("reason")), body
        assert _probe(port, "/healthz")[0] == 200  # alive all along: nothing to restart
        assert _since_commit(port) >= BROKER_SILENCE_S
        time.sleep(max(0.0, 15.0 - (time.monotonic() - killed)))  # a 15 s outage
        assert _probe(port, "/readyz")[0] == 503

        launcher.restart()
        took, body = _wait_for(port, 200, 120)
        print(f"/readyz 200 again {took:.1f} s after the broker restarted: {body}")
        produce_raw(settings, settings.topics.clicks,
                    [(e.user_id.encode(), encode_click(e)) for e in events[1_000:]])
        read_topic(settings, settings.topics.user_state, timeout_s=120,
                   until=lambda rs: applied_events(rs) >= len(events))
        assert _probe(port, "/readyz")[0] == 200
        assert _since_commit(port) < 20.0
    finally:
        if ingest.poll() is None:
            ingest.send_signal(signal.SIGTERM)
        output, _ = ingest.communicate(timeout=90)
    assert ingest.returncode == 0, output[-3000:]
