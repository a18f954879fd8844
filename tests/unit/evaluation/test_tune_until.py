"""``--tune-until``: parsing, the split index, held-out metrics = the replay restricted to them."""

from __future__ import annotations

import json

import pytest

from streamrec.app.cli import main
from streamrec.app.evaluation import PrequentialEvaluator
from streamrec.app.evaluation.split import TuneUntil, parse_tune_until, split_index
from streamrec.events import ClickEvent
from streamrec.online_models.baselines import MostPopular


def click(n: int, user: str, item: str, ts: float | None = None) -> ClickEvent:
    return ClickEvent(event_id=f"e{n}", user_id=user, item_id=item, type="click",
                      ts=float(n if ts is None else ts))


def stream(count: int = 200) -> list[ClickEvent]:
    return [click(n, f"u{n % 7}", f"i{(n * 3) % 11}", ts=1e9 + n) for n in range(count)]


def test_parse_fraction_and_timestamp():
    assert parse_tune_until("0.5") == TuneUntil(fraction=0.5)
    assert parse_tune_until("880000000") == TuneUntil(timestamp=880000000.0)


@pytest.mark.parametrize("text", ["0", "1", "-0.2", "nan", "inf", "half", "50", "", "1e5"])
def test_nonsense_is_rejected(text):
    with pytest.raises(ValueError, match="--tune-until"):
        parse_tune_until(text)


def test_split_index_by_fraction_and_by_time():
    events = stream(200)
    assert split_index(events, TuneUntil(fraction=0.25)) == 50
    # The first event at or after the timestamp is held out.
    assert split_index(events, TuneUntil(timestamp=1e9 + 120)) == 120
    assert split_index(events, TuneUntil(timestamp=1e9 + 119.5)) == 120


@pytest.mark.parametrize("until", [TuneUntil(timestamp=1e6), TuneUntil(timestamp=2e9),
                                   TuneUntil(fraction=0.001)])
def test_split_that_empties_a_side_is_an_error(until):
    with pytest.raises(ValueError, match="no events on one side"):
        split_index(stream(200), until)


def test_held_out_metrics_equal_the_replay_restricted_to_post_split_events():
    events = stream(300)
    split = 180
    result = PrequentialEvaluator({"pop": MostPopular()}, (5, 10), window=50).run(
        events, held_out_from=split)
    assert result.held_out is not None and result.held_out_from == split
    whole, held = result.metrics["pop"], result.held_out["pop"]
    assert held.ranks == whole.ranks[split:]
    assert held.cold == whole.cold[split:] and held.repeat == whole.repeat[split:]
    assert len(held.learn_s) == len(events) - split
    # Summaries differ from the whole log's on this stream (the popular items shift).
    assert result.held_out_summary()["pop"]["overall"] != result.summary()["pop"]["overall"]


def test_without_a_split_there_is_no_held_out_part():
    result = PrequentialEvaluator({"pop": MostPopular()}, (10,)).run(stream(50))
    assert result.held_out is None and result.held_out_summary() is None


@pytest.fixture
def log(tmp_path):
    lines = [f"{1 + n % 7}\t{1 + (n * 3) % 11}\t{1 + n % 5}\t{1000000 + n // 2}"
             for n in range(120)]
    path = tmp_path / "u.data"
    path.write_text("\n".join(lines) + "\n")
    return path


def replay(log, tmp_path, *extra: str) -> int:
    return main(["replay", str(log), "--format", "movielens", "--out", str(tmp_path / "out"),
                 "--no-progress", "--systems", "most-popular,markov", *extra])


def test_replay_reports_held_out_and_whole_log(log, tmp_path, capsys):
    assert replay(log, tmp_path, "--tune-until", "0.5") == 0
    out = capsys.readouterr().out
    assert "held-out (events 60 onwards)" in out and "whole log" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["tune_until"] == "fraction 0.5"
    assert report["held_out"]["from_event"] == 60 and report["held_out"]["events"] == 60
    assert set(report["held_out"]["systems"]) == {"most-popular", "markov"}
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Held-out: events 60 onwards" in markdown and "## Whole log" in markdown


@pytest.mark.parametrize("value", ["0", "1.5", "abc", "-3"])
def test_bad_tune_until_exits_2_with_one_line(log, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        replay(log, tmp_path, "--tune-until", value)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamrec: error:") and "\n" not in err


def test_a_timestamp_past_the_log_exits_2(log, tmp_path, capsys):
    assert replay(log, tmp_path, "--tune-until", "2000000000") == 2
    assert "no events on one side" in capsys.readouterr().err
