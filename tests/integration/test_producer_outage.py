"""Producers through a broker outage, on a private broker these tests kill.

An outage shorter than the delivery timeout loses nothing and duplicates nothing; a longer
one ends ``streamrec produce`` with exit 1 and one line that counts every event, within a
bound, instead of the endless final flush kafka-python 3.0.12 falls into.

Restarting the broker on the same port and data dir needs ``KafkaLauncher.kill()`` and
``restart()``; without them the survival test is skipped and the kill test only checks the
producer's side.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from kafka.structs import TopicPartition

from streamrec.producers.publisher import ClickPublisher
from streamrec.producers.synthetic import SyntheticStream
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.events import decode_click
from streamrec.app.kafka_launcher import DEFAULT_HOME, KafkaLauncher
from support import new_topic, read_topic

pytestmark = pytest.mark.kafka

CAN_RESTART = hasattr(KafkaLauncher, "restart") and hasattr(KafkaLauncher, "kill")
ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^streamrec produce: (?P<lost>\d+) of (?P<total>\d+) events not delivered to "
                  r"topic '(?P<topic>[^']+)' at (?P<at>\S+) \((?P<delivered>\d+) delivered, "
                  r"(?P<failed>\d+) failed(?:, (?P<unacked>\d+) unacknowledged)?"
                  r"(?:, (?P<unsent>\d+) never sent)?\); first error: \w+")


@dataclass
class OwnBroker:
    launcher: KafkaLauncher
    bootstrap: str
    pid: int

    def kill(self) -> None:
        """SIGKILL, keeping the data (``launcher.kill()`` where it exists)."""
        if CAN_RESTART:
            self.launcher.kill()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnBroker]:
    """A broker of our own, in a home of its own.

    The shared broker must never be killed: a launcher that lost track of its broker falls
    back to the state file in its home for ``status`` and ``stop``, so this one's home only
    borrows the jar cache (a symlink) and has no state file of the shared broker to find.
    """
    cache = KafkaLauncher(os.environ.get("STREAMREC_KAFKA_HOME") or DEFAULT_HOME)
    jars = cache.resolve_jars().parent
    home = tmp_path_factory.mktemp("kafka-home")
    (home / jars.name).symlink_to(jars, target_is_directory=True)
    launcher = KafkaLauncher(home, record_state=False, die_with_parent=True, log=io.StringIO())
    bootstrap = launcher.start()
    state = launcher.status()
    assert state is not None and state.bootstrap == bootstrap
    try:
        yield OwnBroker(launcher, bootstrap, state.pid)
    finally:
        launcher.stop()


class EndOffsets:
    """How many records a topic holds (the sum of its partitions' end offsets)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = kafka_clients.consumer(Settings(bootstrap_servers=bootstrap))

    def records_in(self, topic: str) -> int:
        parts = [TopicPartition(topic, p)
                 for p in sorted(self._consumer.partitions_for_topic(topic) or ())]
        return sum(self._consumer.end_offsets(parts).values()) if parts else 0

    def close(self) -> None:
        self._consumer.close()


def records_in(bootstrap: str, topic: str) -> int:
    offsets = EndOffsets(bootstrap)
    try:
        return offsets.records_in(topic)
    finally:
        offsets.close()


@pytest.mark.skipif(not CAN_RESTART, reason="needs KafkaLauncher.kill() and restart(): the "
                                            "broker must come back on the same port and data")
def test_an_outage_shorter_than_the_delivery_timeout_loses_nothing(
        own_broker: OwnBroker) -> None:
    bootstrap = own_broker.bootstrap
    topic = new_topic(bootstrap, prefix="outage")
    events = list(SyntheticStream(40, 200, 3_000, seed=5).events())
    # 90 s: far more than the outage (the kill, a JVM start, a reconnect) on a slow machine.
    publisher = ClickPublisher(bootstrap, topic, delivery_timeout_s=90)
    for event in events[:1_000]:
        publisher.publish(event)
    publisher.flush()  # connected, producer id known: the outage hits a producer in flight
    own_broker.kill()
    for event in events[1_000:2_000]:  # queued while the broker is down
        publisher.publish(event)
    assert own_broker.launcher.restart(down_s=1.0) == bootstrap
    for event in events[2_000:]:
        publisher.publish(event)
    publisher.close()
    counts = publisher.counts()
    assert (counts.published, counts.delivered, counts.failed, counts.unacknowledged) == (
        3_000, 3_000, 0, 0)

    records = read_topic(Settings(bootstrap_servers=bootstrap), topic, expect=3_000)
    ids = [decode_click(r.value).event_id for r in records]
    assert len(ids) == 3_000 and set(ids) == {e.event_id for e in events}  # no loss, no dup


def test_produce_exits_1_with_the_exact_count_when_its_broker_dies(
        own_broker: OwnBroker) -> None:
    bootstrap = own_broker.bootstrap
    topic = new_topic(bootstrap, prefix="outage")
    total, delivery_timeout_s = 20_000, 3
    # Paced (about 5 s of wall time at least) so the kill lands mid-run on any machine.
    produce = subprocess.Popen(
        [sys.executable, "-m", "streamrec.app.cli", "produce", "synthetic", "--users", "50",
         "--items", "200", "--events", str(total), "--mean-gap", "1", "--speed", "4000",
         "--quiet", "--delivery-timeout", str(delivery_timeout_s), "--bootstrap-servers",
         bootstrap, "--topic", topic],
        cwd=ROOT, env={k: v for k, v in os.environ.items()
                       if not k.startswith(("STREAMREC_", "KAFKA_BOOTSTRAP"))},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    offsets = EndOffsets(bootstrap)
    try:
        deadline = time.monotonic() + 60
        while offsets.records_in(topic) == 0:  # killed only once events are flowing
            assert produce.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        offsets.close()
        own_broker.kill()
        killed = time.monotonic()
        # Unfixed, this waited forever; fixed, the delivery timeout + 5 s (+ a slow machine).
        _, err = produce.communicate(timeout=90)
        waited = time.monotonic() - killed
    finally:
        if produce.poll() is None:
            produce.kill()
    assert produce.returncode == 1, err
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line: no traceback, no kafka-python log records
    match = LINE.match(lines[0])
    assert match, lines[0]
    n = {k: int(v or 0) for k, v in match.groupdict().items() if k not in ("topic", "at")}
    assert (match["topic"], match["at"], n["total"]) == (topic, bootstrap, total)
    assert n["lost"] == total - n["delivered"] > 0
    assert n["delivered"] + n["failed"] + n["unacked"] + n["unsent"] == total
    # It retried, about a delivery timeout (a slow machine only makes this longer).
    assert waited >= delivery_timeout_s * 0.5

    if CAN_RESTART:  # what was acknowledged is on the broker; nothing more than was sent
        own_broker.launcher.restart()
        on_broker = records_in(bootstrap, topic)
        assert n["delivered"] <= on_broker <= total - n["unsent"]
