"""The trainer's loops retry transient failures but stop on refused credentials or ACLs."""

from __future__ import annotations

import pytest
from kafka import errors as kafka_errors

from streamrec.consumers.drift_trigger import DriftTrigger
from streamrec.consumers.train_service import TrainerService

pytestmark = pytest.mark.kafka


def _raise(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc
    return fail


def test_drift_trigger_retries_a_hiccup_but_raises_an_acl_refusal(kafka_settings):
    trigger = DriftTrigger(kafka_settings)
    try:
        trigger.read_new = _raise(kafka_errors.KafkaTimeoutError("slow"))  # type: ignore[method-assign]
        assert trigger() is False
        trigger.read_new = _raise(kafka_errors.TopicAuthorizationFailedError({"models"}))  # type: ignore[method-assign]
        with pytest.raises(kafka_errors.TopicAuthorizationFailedError):
            trigger()
    finally:
        trigger.close()


@pytest.mark.parametrize("failure, fatal", [
    (kafka_errors.TransactionalIdAuthorizationFailedError(), True),
    (RuntimeError("one bad run"), False),
])
def test_trainer_loop_ends_on_a_refusal_and_keeps_going_otherwise(kafka_settings, failure, fatal):
    service = TrainerService(kafka_settings, trainer=None, interval_s=3600, every_events=1,  # type: ignore[arg-type]
                             poll_s=0.01)
    runs: list[int] = []

    def run_once(ends):
        runs.append(1)
        if len(runs) >= 3:
            service.stop()
        raise failure

    service.end_offsets = lambda: {0: len(runs) + 1}  # type: ignore[method-assign]
    service.run_once = run_once  # type: ignore[method-assign]
    try:
        if fatal:
            with pytest.raises(type(failure)):
                service.run()
            assert runs == [1]
        else:
            service.run()
            assert len(runs) == 3
    finally:
        service.close()
