"""``RetrainOnDrift``: which ``models`` records make the trainer retrain, without a broker."""

from __future__ import annotations

import logging

import pytest

from streamrec.consumers.drift_signal import DRIFT_KEY, HitRateDrift, encode_drift
from streamrec.consumers.model_follower import CURRENT_KEY
from streamrec.consumers.drift_trigger import RetrainOnDrift
from streamrec.app.cli import build_parser


def drift_value(detected_at_ms: int, direction: str = "drop") -> bytes:
    drift = HitRateDrift(direction, 0.3, 0.1, 512, 64, 576)
    return encode_drift(drift, detected_at_ms=detected_at_ms, scorer_group="score",
                        partitions=[0, 1])


def test_a_drop_fires_once_and_logs_that_it_triggered_the_run(caplog) -> None:
    rule = RetrainOnDrift()
    assert not rule.due(None)  # nothing on models yet
    rule.offer(DRIFT_KEY, drift_value(5_000))
    with caplog.at_level(logging.INFO, logger="streamrec.consumers.drift_trigger"):
        assert rule.due(None)
    assert not rule.due(None)  # the same message never fires twice
    assert [r.message for r in caplog.records if "drift triggers" in r.message] == [
        "drift triggers this training run: scorer score (partitions [0, 1]) hit rate "
        "0.300 -> 0.100 over 64 events"]


def test_a_drop_the_last_run_covered_does_not_fire() -> None:
    rule = RetrainOnDrift()
    rule.offer(DRIFT_KEY, drift_value(5_000))
    assert not rule.due(last_run_started_s=6.0)  # detected before that run started
    rule.offer(DRIFT_KEY, drift_value(7_000))
    assert rule.due(last_run_started_s=6.0)


def test_a_newer_model_rises_and_malformed_messages_do_not_fire() -> None:
    rule = RetrainOnDrift()
    rule.offer(DRIFT_KEY, drift_value(5_000))
    rule.offer(CURRENT_KEY, b'{"version": "v000002"}')  # promoted after the drop
    assert not rule.due(None)
    rule.offer(DRIFT_KEY, drift_value(6_000, direction="rise"))
    rule.offer(DRIFT_KEY, b"{not json")
    rule.offer(DRIFT_KEY, None)  # a tombstone
    rule.offer(b"other", drift_value(6_000))
    assert not rule.due(None) and rule.fired == 0


@pytest.mark.parametrize("argv, expected", [(["train"], False), (["train", "--no-drift"], True)])
def test_no_drift_flag(argv: list[str], expected: bool) -> None:
    assert build_parser().parse_args(argv).no_drift is expected
