"""``streamrec produce``: argument errors exit 2 with one line; --stdout works offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from producers import cli as produce_cli


def parse(argv: list[str]) -> argparse.Namespace:
    from streamrec.cli import _OneLineErrorParser

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
    from streamrec.cli import main

    code = main(["produce", "synthetic", "--users", "2", "--items", "3", "--events", "4",
                 "--stdout", "--quiet"])
    assert code == 0 and len(capsys.readouterr().out.splitlines()) == 4
