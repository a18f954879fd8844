"""``streamrec produce``: argument errors exit 2 with one line; --stdout works offline."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from streamrec.producers import cli as produce_cli
from streamrec.producers import publisher as publisher_module
from streamrec.app.kafka_broker_config import pick_free_ports


def parse(argv: list[str]) -> argparse.Namespace:
    from streamrec.app.cli import _OneLineErrorParser

    parser = _OneLineErrorParser(prog="streamrec")
    sub = parser.add_subparsers(dest="command", parser_class=_OneLineErrorParser)
    produce_cli.register(sub)
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    args = parse(argv)
    return args.func(args)


@pytest.mark.parametrize("argv, message", [
    (["produce", "replay", "/no/such/file"], "no such file"),
    (["produce", "replay", "{log}", "--speed", "fast"], "'fast' is not a speed"),
    (["produce", "replay", "{log}", "--speed", "0"], "positive"),
    (["produce", "replay", "{log}", "--speed", "-2"], "positive"),
    (["produce", "replay", "{log}", "--limit", "-1"], "negative"),
    (["produce", "replay", "{log}", "--format", "xml"], "invalid choice"),
    (["produce", "synthetic", "--users", "-3", "--items", "5", "--events", "5"], "negative"),
    (["produce", "synthetic", "--users", "3", "--items", "x", "--events", "5"], "whole number"),
    (["produce", "synthetic", "--users", "3", "--items", "5"], "required"),
    (["produce", "synthetic", "--users", "3", "--items", "5", "--events", "5",
      "--malformed-rate", "1.5"], "[0, 1)"),
    (["produce", "replay", "{log}", "--delivery-timeout", "0"], "positive"),
    (["produce", "replay", "{log}", "--delivery-timeout", "-5"], "positive"),
    (["produce", "replay", "{log}", "--delivery-timeout", "soon"], "not a number"),
    (["produce", "replay", "{log}", "--delivery-timeout", "nan"], "finite"),
    (["produce", "synthetic", "--users", "3", "--items", "5", "--events", "5",
      "--delivery-timeout", "0.5"], "between 1 and 86400 seconds"),
    (["produce", "synthetic", "--users", "3", "--items", "5", "--events", "5",
      "--delivery-timeout", "1e9"], "between 1 and 86400 seconds"),
])
def test_bad_arguments_exit_2_with_one_line(argv: list[str], message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "u.data"
    log.write_text("1\t2\t3\t4\n")
    with pytest.raises(SystemExit) as info:
        parse([a.replace("{log}", str(log)) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamrec: error: ") and message in err[0]


def test_replay_to_stdout_in_event_time_order(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "u.data"
    log.write_text("1\t10\t4\t300\n2\t20\t5\t100\n3\t30\t1\t200\n")
    assert run(["produce", "replay", str(log), "--stdout", "--quiet", "--limit", "2"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["user_id"] for line in out.splitlines()] == ["2", "3"]
    assert "sent 2 events" in err and "events/s" in err


def test_replay_bad_line_is_one_clear_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("{oops\n")
    assert run(["produce", "replay", str(log), "--format", "jsonl", "--stdout"]) == 1
    assert "log.jsonl:1:" in capsys.readouterr().err


def test_synthetic_to_stdout_with_malformed(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["produce", "synthetic", "--users", "5", "--items", "9", "--events", "200",
            "--malformed-rate", "0.1", "--stdout", "--quiet"]
    assert run(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 222  # 200 valid + round(200 * 0.1 / 0.9) bad


def test_top_level_cli_has_produce(capsys: pytest.CaptureFixture[str]) -> None:
    from streamrec.app.cli import main

    code = main(["produce", "synthetic", "--users", "2", "--items", "3", "--events", "4",
                 "--stdout", "--quiet"])
    assert code == 0 and len(capsys.readouterr().out.splitlines()) == 4


def test_unreachable_broker_exits_1_with_one_exact_line(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{pick_free_ports(1)[0]}"  # nothing listens there
    started = time.monotonic()
    code = run(["produce", "synthetic", "--users", "3", "--items", "5", "--events", "40",
                "--quiet", "--delivery-timeout", "1", "--bootstrap-servers", address])
    assert code == 1 and time.monotonic() - started < 60  # the 1 s bootstrap bound, not 30 s
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"streamrec produce: 40 of 40 events not delivered to topic 'clicks' "
                             f"at {address} (0 delivered, 0 failed, 40 never sent); first error: "
                             f"KafkaUnreachableError: cannot connect to Kafka at {address}")


class _HalfBrokenProducer:
    """Acknowledges the first three sends, fails the fourth, never answers the rest."""

    def __init__(self) -> None:
        self.sent = 0
        self._transaction_manager = None
        self._sender = None

    def send(self, topic: str, **record: Any) -> Future:
        self.sent += 1
        future = Future()
        if self.sent <= 3:
            return future.success(None)
        if self.sent == 4:
            return future.failure(KafkaTimeoutError("Expiring 1 record(s)"))
        return future

    def close(self, timeout: float | None = None) -> None:
        pass


def test_a_run_that_loses_events_counts_them_all_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    producer = _HalfBrokenProducer()
    monkeypatch.setattr(publisher_module.kafka_clients, "producer",
                        lambda settings, **config: producer)
    code = run(["produce", "synthetic", "--users", "3", "--items", "5", "--events", "10",
                "--quiet", "--bootstrap-servers", "127.0.0.1:9", "--topic", "t"])
    assert code == 1 and producer.sent == 4  # the fifth publish raised: nothing more was sent
    assert capsys.readouterr().err == (
        "streamrec produce: 7 of 10 events not delivered to topic 't' at 127.0.0.1:9 "
        "(3 delivered, 1 failed, 6 never sent); first error: KafkaTimeoutError: Expiring 1 "
        "record(s)\n")
