"""The recovery budget: consecutive failures, reset by progress; fatal errors end at once."""

from __future__ import annotations

import pytest
from kafka import errors as kafka_errors

from streamrec.config import ConfigError
from streamrec.transport.recovery_budget import RecoveryBudget, is_fatal


def test_spread_out_failures_never_exhaust_the_budget():
    budget = RecoveryBudget(max_consecutive=10, base_delay_s=0.5, max_delay_s=30.0)
    for _ in range(100):  # 100 transient failures over a long life, progress in between
        assert budget.next_delay(TimeoutError("commit timed out")) == 0.5
        budget.progressed()
    assert budget.total == 100 and budget.consecutive == 0


def test_the_failure_after_max_consecutive_in_a_row_ends_the_service():
    budget = RecoveryBudget(max_consecutive=10, base_delay_s=0.5, max_delay_s=30.0)
    delays = [budget.next_delay(ConnectionError("broker gone")) for _ in range(10)]
    assert None not in delays
    assert budget.next_delay(ConnectionError("broker gone")) is None  # the 11th in a row


def test_backoff_doubles_and_stays_bounded():
    budget = RecoveryBudget(max_consecutive=1_000, base_delay_s=1.0, max_delay_s=30.0)
    delays = [budget.next_delay(OSError()) for _ in range(1_000)]
    assert delays[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert max(delays) == 30.0  # type: ignore[type-var]
    budget.progressed()
    assert budget.next_delay(OSError()) == 1.0


@pytest.mark.parametrize("error", [
    kafka_errors.KafkaConfigurationError("Unrecognized configs"),
    kafka_errors.TopicAuthorizationFailedError(),
    kafka_errors.GroupAuthorizationFailedError(),
    kafka_errors.TransactionalIdAuthorizationFailedError(),
    kafka_errors.SaslAuthenticationFailedError(),
    ConfigError("batch_size must be positive"),
])
def test_configuration_and_authorization_errors_end_the_service_at_once(error):
    budget = RecoveryBudget(max_consecutive=10)
    assert is_fatal(error)
    assert budget.next_delay(error) is None


def test_a_fatal_error_is_found_behind_a_wrapper():
    try:
        try:
            raise kafka_errors.GroupAuthorizationFailedError()
        except Exception as inner:
            raise RuntimeError("session setup failed") from inner
    except RuntimeError as outer:
        assert is_fatal(outer)


def test_transient_errors_are_not_fatal():
    for error in (kafka_errors.KafkaTimeoutError("Unable to bootstrap"), ConnectionError(),
                  kafka_errors.CommitFailedError(), kafka_errors.ProducerFencedError()):
        assert not is_fatal(error)


def test_a_first_session_that_never_reached_the_broker_ends_the_service():
    budget = RecoveryBudget(max_consecutive=10)
    timeout = kafka_errors.KafkaTimeoutError("Unable to bootstrap from 10.0.0.1:9092")
    assert budget.next_delay(timeout, ever_connected=False) is None
    assert RecoveryBudget().next_delay(timeout, ever_connected=True) is not None


def test_invalid_budgets_are_refused():
    with pytest.raises(ValueError):
        RecoveryBudget(max_consecutive=-1)
    with pytest.raises(ValueError):
        RecoveryBudget(base_delay_s=5.0, max_delay_s=1.0)
