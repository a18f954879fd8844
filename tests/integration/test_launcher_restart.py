"""The launcher crashes and revives a broker: ``kill()`` then ``restart()`` on the same data
dir and port, and ``stop(keep_data=True)`` then ``restart()``. Data survives, and the broker
takes new transactional producers under the ids it knew.

On a private broker this module starts (never the shared one of KAFKA_BOOTSTRAP_SERVERS).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.app.kafka_launcher import DEFAULT_HOME, KafkaLauncher, KafkaLaunchError, probe
from support import produce_raw, read_topic, settings_with_topics

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def launcher() -> Iterator[KafkaLauncher]:
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: the launcher cannot run a broker")
    home = os.environ.get("STREAMREC_KAFKA_HOME") or DEFAULT_HOME
    launcher = KafkaLauncher(home, record_state=False, die_with_parent=True)
    with launcher:
        yield launcher


@pytest.fixture
def broker(launcher: KafkaLauncher) -> KafkaLauncher:
    """The module's broker, running: revived first if an earlier test left it down."""
    if launcher.status() is None:
        launcher.restart()
    return launcher


def _transactional_writes(settings: Settings, txn_id: str) -> None:
    """One committed and one aborted transaction, then one left open (as a crash leaves it)."""
    producer = kafka_clients.producer(settings, transactional_id=txn_id)
    producer.init_transactions()
    for value, commit in ((b"txn-committed", True), (b"txn-aborted", False)):
        producer.begin_transaction()
        producer.send(settings.topics.clicks, key=b"u-txn", value=value)
        producer.commit_transaction() if commit else producer.abort_transaction()
    producer.begin_transaction()
    producer.send(settings.topics.clicks, key=b"u-txn", value=b"txn-open").get(timeout=30)
    producer._sender.force_close()  # noqa: SLF001 - gone without ending the transaction


def _values(settings: Settings, expect: int) -> list[bytes]:
    return sorted(r.value for r in read_topic(settings, settings.topics.clicks, expect=expect,
                                              timeout_s=60) if r.value is not None)


def _still_writable_under(settings: Settings, txn_id: str) -> None:
    """A new producer with the old transactional id fences the open transaction and commits."""
    producer = kafka_clients.producer(settings, transactional_id=txn_id)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(settings.topics.clicks, key=b"u-txn", value=b"txn-after-restart")
        producer.commit_transaction()
    finally:
        producer.close(timeout=10)


def test_kill_then_restart_keeps_data_port_and_transactional_ids(broker: KafkaLauncher) -> None:
    settings = settings_with_topics(broker.status().bootstrap)  # type: ignore[union-attr]
    plain = [(f"u{i}".encode(), f"plain-{i}".encode()) for i in range(500)]
    produce_raw(settings, settings.topics.clicks, plain)
    txn_id = f"restart-{uuid.uuid4().hex[:8]}"
    _transactional_writes(settings, txn_id)
    before = broker.status()
    assert before is not None

    assert broker.kill() is True
    assert broker.status() is None and broker.kill() is False
    assert probe(before.bootstrap) is not None, "a killed broker must not answer"
    assert Path(before.data_dir, "logs").is_dir(), "kill keeps the data dir"

    assert broker.restart() == before.bootstrap
    after = broker.status()
    assert after is not None and after.pid != before.pid
    assert (after.bootstrap, after.data_dir) == (before.bootstrap, before.data_dir)
    # The open transaction blocks read_committed readers until the new producer fences it.
    _still_writable_under(settings, txn_id)
    expected = sorted([v for _, v in plain] + [b"txn-committed", b"txn-after-restart"])
    assert _values(settings, len(expected)) == expected


def test_stop_keeping_data_then_restart_serves_the_same_topics(broker: KafkaLauncher) -> None:
    settings = settings_with_topics(broker.status().bootstrap)  # type: ignore[union-attr]
    produce_raw(settings, settings.topics.clicks, [(b"u1", b"before-stop")])
    txn_id = f"stop-{uuid.uuid4().hex[:8]}"
    _still_writable_under(settings, txn_id)

    assert broker.stop(keep_data=True) is True
    assert broker.status() is None
    assert broker.restart(down_s=1.0) == settings.bootstrap_servers
    _still_writable_under(settings, txn_id)
    assert _values(settings, 3) == [b"before-stop", b"txn-after-restart", b"txn-after-restart"]


def _squat(host: str, port: int) -> socket.socket:
    """A listener on the broker's port, as a process that grabbed it while the broker was down."""
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((host, port))
    squatter.listen(1)
    return squatter


def test_restart_waits_for_a_taken_port_then_says_which(broker: KafkaLauncher) -> None:
    bootstrap = broker.status().bootstrap  # type: ignore[union-attr]
    host, port = bootstrap.rsplit(":", 1)
    broker.kill()
    squatter = _squat(host, int(port))
    try:
        with pytest.raises(KafkaLaunchError, match=f"{host}:{port} .*still taken after 2 s"):
            broker.restart(bind_timeout_s=2.0)
    finally:
        squatter.close()
    assert broker.status() is None

    # Freed while restart() waits: the broker comes back on its own port.
    squatter = _squat(host, int(port))
    threading.Timer(2.0, squatter.close).start()
    assert broker.restart(bind_timeout_s=60.0) == bootstrap
    assert probe(bootstrap) is None


def test_restart_without_a_kept_broker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KafkaLaunchError, match="nothing to restart"):
        KafkaLauncher(tmp_path, record_state=False).restart()
