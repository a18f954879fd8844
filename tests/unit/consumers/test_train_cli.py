"""``streamrec train`` argument handling: bad input is one line on stderr and exit 2."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import pytest

from streamrec.app.cli import build_parser, main


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The command configures logging onto this test's captured stderr: undo it after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("args", [
    ["--epochs", "0"], ["--window-events", "-5"], ["--interval-s", "0"],
    ["--every-events", "ten"], ["--tolerance", "nan"], ["--tolerance", "x"],
    ["--holdout", "1.5"], ["--exporter", "tf"], ["--since", "-1"], ["--unknown"],
])
def test_bad_arguments_exit_2_with_one_line(args, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamrec: error:") and "\n" not in err


def test_defaults() -> None:
    args = build_parser().parse_args(["train"])
    assert (args.once, args.store, args.window_events, args.tolerance, args.epochs) == (
        False, None, 100_000, 0.0, 10)
    # No --store: the model_store setting every service shares decides.
    from streamrec.app.commands.core import settings_from_args
    assert settings_from_args(args, model_store=args.store).model_store == "./model-store"
    assert build_parser().parse_args(["train", "--tolerance", "-0.01"]).tolerance == -0.01


def test_a_store_that_is_a_file_exits_2(tmp_path: Path, capsys) -> None:
    store = tmp_path / "store"
    store.write_text("not a folder")
    assert main(["train", "--once", "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamrec: error:") and "not a folder" in err


def test_an_unreachable_broker_exits_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("STREAMREC_CONNECT_TIMEOUT_S", "1")  # nothing listens: no need to wait 10 s
    assert main(["train", "--once", "--store", str(tmp_path), "--bootstrap-servers",
                 "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamrec: error: cannot reach Kafka at 127.0.0.1:1") and err.count("\n") == 1
