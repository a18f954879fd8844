"""OS-level helpers of the launcher's kill and restart: no JVM, no broker."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamrec.app.kafka_broker_config import pick_free_ports
from streamrec.app.kafka_broker_process import (KafkaLaunchError, LogMark, busy_ports, kill_group,
                                            wait_until_bindable)


def _listener(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def test_a_listening_port_is_busy_and_a_closed_one_is_not() -> None:
    taken, free = pick_free_ports(2)
    with _listener(taken):
        assert [port for port, _ in busy_ports("127.0.0.1", [taken, free])] == [taken]
    assert busy_ports("127.0.0.1", [taken, free]) == []


def test_time_wait_leftovers_do_not_count_as_busy() -> None:
    port = pick_free_ports(1)[0]
    server = _listener(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: it is the side left in TIME_WAIT
    client.close()
    server.close()
    assert busy_ports("127.0.0.1", [port]) == []


def test_waiting_for_ports_returns_once_freed_and_names_them_when_not() -> None:
    port = pick_free_ports(1)[0]
    squatter = _listener(port)
    with pytest.raises(KafkaLaunchError, match=rf"127.0.0.1:{port} \(EADDRINUSE\) still taken after 0.5 s"):
        wait_until_bindable("127.0.0.1", [port], time.monotonic() + 0.5, 0.5)
    threading.Timer(0.5, squatter.close).start()
    wait_until_bindable("127.0.0.1", [port], time.monotonic() + 30, 30)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie lingers until whoever adopted it reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs procfs")
def test_kill_group_ends_the_child_and_its_children() -> None:
    leader = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; "
                               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                               "print(child.pid, flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout is not None
    grandchild = int(leader.stdout.readline())
    assert _running(grandchild)
    kill_group(leader)
    assert leader.returncode == -9
    deadline = time.monotonic() + 10
    while _running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(grandchild), "the group's other processes die too"


def test_log_mark_reads_only_what_was_appended_since(tmp_path: Path) -> None:
    (tmp_path / "server.log").write_text("old: Address already in use\n")
    mark = LogMark.now(tmp_path)
    with open(tmp_path / "server.log", "a") as log:
        log.write("new line\n")
    (tmp_path / "stdout.log").write_text("fresh stdout\n")
    assert "Address already in use" not in mark.since()
    assert "new line" in mark.since() and "fresh stdout" in mark.since()
