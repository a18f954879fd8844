"""Pure parts of the local-Kafka launcher: no JVM, no broker, no Maven."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.app.cli import build_parser
from streamrec.app.kafka_broker_config import (BrokerState, pick_free_ports, pid_alive,
                                           random_cluster_id, render_server_properties, tail)
from streamrec.app.kafka_launcher import KafkaLauncher


def _parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_server_properties_describe_a_single_kraft_node(tmp_path: Path) -> None:
    props = _parse(render_server_properties(tmp_path, 41001, 41002))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"{props['node.id']}@127.0.0.1:41002"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:41001,CONTROLLER://127.0.0.1:41002"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:41001"
    assert props["log.dirs"] == str(tmp_path / "logs")
    # DESIGN.md pitfalls: one broker cannot hold 3 replicas of the internal topics.
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr"):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props.get("auto.create.topics.enable", "true") == "true"


def test_extra_properties_override_defaults(tmp_path: Path) -> None:
    props = _parse(render_server_properties(tmp_path, 1, 2, extra={"num.partitions": "3",
                                                                   "log.segment.bytes": "1024"}))
    assert props["num.partitions"] == "3"
    assert props["log.segment.bytes"] == "1024"


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = pick_free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_cluster_id_is_kafka_shaped() -> None:
    for _ in range(200):
        cid = random_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = BrokerState(pid=123, bootstrap="127.0.0.1:5", data_dir="/tmp/x", started_at=1.5)
    path = tmp_path / "broker.json"
    state.write(path)
    assert BrokerState.read(path) == state
    assert BrokerState.read(tmp_path / "missing.json") is None
    path.write_text("{not json")
    assert BrokerState.read(path) is None


def test_a_pid_that_is_not_kafka_counts_as_stopped(tmp_path: Path) -> None:
    assert not pid_alive(os.getpid())  # alive, but not a broker: a recycled pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


def test_stop_and_status_without_a_broker_clean_a_stale_state_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    launcher = KafkaLauncher(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs: the broker died without `kafka stop`
    BrokerState(gone.pid, "127.0.0.1:1", str(data), 0.0).write(launcher.state_path)
    assert launcher.status() is None
    assert launcher.stop() is False
    assert not launcher.state_path.exists() and not data.exists()
    assert KafkaLauncher(tmp_path).stop() is False


def test_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == "line 97\nline 98\nline 99"
    assert "no" in tail(tmp_path / "absent.log")


@pytest.mark.parametrize("action", ["start", "stop", "status"])
def test_cli_registers_kafka_actions(action: str, tmp_path: Path) -> None:
    args = build_parser().parse_args(["kafka", action, "--home", str(tmp_path)])
    assert callable(args.func) and args.home == tmp_path


def test_cli_status_exits_1_when_nothing_runs(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["kafka", "status", "--home", str(tmp_path)])
    assert args.func(args) == 1
    assert "not running" in capsys.readouterr().out
