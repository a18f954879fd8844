"""Drift messages on ``models`` with a control secret: the scorer signs, the trainer checks."""

from __future__ import annotations

import pytest

from streamrec.consumers.drift_signal import DRIFT_KEY, HitRateDrift, decode_drift, encode_drift
from streamrec.consumers.drift_trigger import RetrainOnDrift
from streamrec.consumers.model_follower import CURRENT_KEY
from streamrec.consumers.score_drift import ScoreDriftReporter
from streamrec.config import Settings
from streamrec.signing import MODELS_KIND, sign_headers

SECRET = "drift-secret"


def drift_value(detected_at_ms: int = 5_000) -> bytes:
    return encode_drift(HitRateDrift("drop", 0.3, 0.1, 512, 64, 576),
                        detected_at_ms=detected_at_ms, scorer_group="score", partitions=[0])


def signed(key: bytes, value: bytes, secret: str = SECRET) -> tuple:
    return sign_headers((), secret, MODELS_KIND, key, value)


def test_the_scorers_drift_message_is_signed_and_the_trainer_accepts_it() -> None:
    reporter = ScoreDriftReporter(Settings(control_secret=SECRET), clock=lambda: 9.0)
    reporter._drop = HitRateDrift("drop", 0.3, 0.1, 512, 64, 576)
    (output,) = reporter.take_outputs([0])
    rule = RetrainOnDrift(SECRET)
    rule.offer(output.key, output.value, output.headers)
    assert rule.due(None) and rule.unsigned == 0


def test_with_a_secret_unsigned_or_forged_records_neither_trigger_nor_cancel() -> None:
    rule = RetrainOnDrift(SECRET)
    value = drift_value()
    rule.offer(DRIFT_KEY, value)  # unsigned
    rule.offer(DRIFT_KEY, value, signed(DRIFT_KEY, value, "wrong"))
    rule.offer(DRIFT_KEY, value, signed(CURRENT_KEY, value))  # signed for another key
    assert not rule.due(None) and rule.unsigned == 3
    rule.offer(DRIFT_KEY, value, signed(DRIFT_KEY, value))
    fake_current = b'{"version": "v000009"}'
    rule.offer(CURRENT_KEY, fake_current)  # an unsigned "newer model" must not cancel it
    assert rule.due(None) and rule.unsigned == 4


def test_without_a_secret_nothing_changes() -> None:
    rule = RetrainOnDrift()
    rule.offer(DRIFT_KEY, drift_value())
    assert rule.due(None) and rule.unsigned == 0
    assert ScoreDriftReporter(Settings(), clock=lambda: 1.0).take_outputs([0]) == []


@pytest.mark.parametrize("value", [b"[" * 1000 + b"]" * 1000,
                                   b'{"x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
                                   b"\xff", b" " * (64 * 1024 + 1)])
def test_a_hostile_drift_value_is_a_value_error_only(value: bytes) -> None:
    with pytest.raises(ValueError):
        decode_drift(value)
    rule = RetrainOnDrift()
    rule.offer(DRIFT_KEY, value)  # logged and ignored
    assert not rule.due(None)
