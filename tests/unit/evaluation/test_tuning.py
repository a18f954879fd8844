"""The tuning search looks only at the prefix and climbs to the best grid point."""

from __future__ import annotations

from typing import Sequence

import pytest

from streamrec.app.evaluation.tuning import coordinate_descent
from streamrec.config import Settings
from streamrec.events import ClickEvent


def stream(count: int) -> list[ClickEvent]:
    return [ClickEvent(event_id=f"e{n}", user_id=f"u{n % 5}", item_id=f"i{n % 9}",
                       type="click", ts=1e9 + n) for n in range(count)]


class FakeScorer:
    """Peaks at covisit_weight 3.0, online_weight 0.25; records every event it was shown."""

    def __init__(self) -> None:
        self.max_ts_seen = 0.0
        self.calls = 0

    def __call__(self, settings: Settings, prefix: Sequence[ClickEvent]) -> float:
        self.calls += 1
        self.max_ts_seen = max([self.max_ts_seen, *(event.ts for event in prefix)])
        return -abs(settings.covisit_weight - 3.0) - abs(settings.online_weight - 0.25)


def test_the_tuner_never_sees_an_event_after_the_split():
    events, split = stream(100), 60
    scorer = FakeScorer()
    coordinate_descent(events, split, Settings(), scorer)
    assert scorer.max_ts_seen == events[split - 1].ts


def test_coordinate_descent_finds_the_peak_within_the_bounded_budget():
    scorer = FakeScorer()
    grid = {"covisit_weight": (0.75, 1.5, 3.0), "online_weight": (0.25, 0.5, 1.0)}
    result = coordinate_descent(stream(20), 10, Settings(), scorer, grid)
    assert result.chosen == {"covisit_weight": 3.0, "online_weight": 0.25}
    assert result.score == 0.0
    assert scorer.calls <= 1 + sum(len(values) for values in grid.values())
    assert result.as_env() == ["STREAMREC_COVISIT_WEIGHT=3.0", "STREAMREC_ONLINE_WEIGHT=0.25"]


def test_tune_command_writes_json_and_env(tmp_path, monkeypatch, capsys):
    import json

    from streamrec.app.cli import main
    from streamrec.app.evaluation import tuning

    scorer = FakeScorer()
    monkeypatch.setattr(tuning, "replay_scorer", lambda *args, **kwargs: scorer)
    log = tmp_path / "u.data"
    log.write_text("".join(f"{1 + n % 5}\t{1 + n % 9}\t3\t{1000000 + n}\n" for n in range(40)))
    assert main(["tune", str(log), "--format", "movielens", "--until", "0.5",
                 "--out", str(tmp_path / "t")]) == 0
    assert scorer.max_ts_seen == 1000000 + 19
    record = json.loads((tmp_path / "t" / "tuned.json").read_text())
    assert record["split"] == 20 and record["chosen"]["covisit_weight"] == 3.0
    assert "STREAMREC_COVISIT_WEIGHT=3.0" in (tmp_path / "t" / "tuned.env").read_text()


def test_tune_only_searches_the_named_settings(tmp_path, monkeypatch, capsys):
    import json

    from streamrec.app.cli import main
    from streamrec.app.evaluation import tuning

    scorer = FakeScorer()
    monkeypatch.setattr(tuning, "replay_scorer", lambda *args, **kwargs: scorer)
    log = tmp_path / "u.data"
    log.write_text("".join(f"{1 + n % 5}\t{1 + n % 9}\t3\t{1000000 + n}\n" for n in range(40)))
    assert main(["tune", str(log), "--format", "movielens", "--until", "0.5", "--only",
                 "online_weight", "--out", str(tmp_path / "t")]) == 0
    record = json.loads((tmp_path / "t" / "tuned.json").read_text())
    assert list(record["chosen"]) == ["online_weight"]
    assert all(list(trial["settings"]) == ["online_weight"] for trial in record["trials"])
    assert len(record["trials"]) == len(tuning.DEFAULT_GRID["online_weight"])


def _tune_with_only(tmp_path, only: str) -> int:
    from streamrec.app.cli import main

    log = tmp_path / "u.data"
    log.write_text("".join(f"{1 + n % 5}\t{1 + n % 9}\t3\t{1000000 + n}\n" for n in range(40)))
    return main(["tune", str(log), "--format", "movielens", "--until", "0.5", "--only", only,
                 "--system", "streamrec", "--out", str(tmp_path / "t")])


def test_tune_only_refuses_an_unknown_setting_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        _tune_with_only(tmp_path, "nonsense")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "unknown setting nonsense" in err and err.count("\n") == 1


def test_tune_only_refuses_a_setting_the_system_never_reads(tmp_path, capsys):
    assert _tune_with_only(tmp_path, "deep_weight") == 2
    err = capsys.readouterr().err
    assert "does not read it" in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()


def test_a_value_must_beat_the_held_one_by_the_margin_to_replace_it():
    grid = {"fusion_depth": (25, 50, 100)}
    # 100 is 0.1% better than the held 50: noise on one prefix, so 50 stays; 25 never wins.
    table = {25: 0.0910, 50: 0.0913, 100: 0.0914}

    def scorer(settings: Settings, prefix: Sequence[ClickEvent]) -> float:
        return table[settings.fusion_depth]

    assert coordinate_descent(stream(20), 10, Settings(), scorer, grid).chosen == {
        "fusion_depth": 50}
    assert coordinate_descent(stream(20), 10, Settings(), scorer, grid,
                              min_gain=0.0).chosen == {"fusion_depth": 100}
    table[100] = 0.0930  # +1.9%: a real gain is taken
    assert coordinate_descent(stream(20), 10, Settings(), scorer, grid).chosen == {
        "fusion_depth": 100}
