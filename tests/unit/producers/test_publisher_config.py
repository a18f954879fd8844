"""Publisher settings: idempotence cannot be switched off by an override (no broker needed)."""

from __future__ import annotations

import pytest

from streamrec.producers.publisher import producer_config


def test_defaults_are_idempotent_and_batched() -> None:
    config = producer_config()
    assert config["enable_idempotence"] is True and config["acks"] == "all"
    assert 5 <= config["linger_ms"] <= 20 and config["batch_size"] == 256 * 1024
    assert config["max_in_flight_requests_per_connection"] <= 5


@pytest.mark.parametrize("override", [{"acks": 1}, {"acks": 0}, {"retries": 0},
                                      {"max_in_flight_requests_per_connection": 6}])
def test_overrides_that_break_idempotence_are_refused(override: dict) -> None:
    with pytest.raises(ValueError):
        producer_config(**override)


def test_harmless_overrides_pass() -> None:
    assert producer_config(linger_ms=1, client_id="app")["linger_ms"] == 1


def test_reconnects_come_quickly_after_an_outage() -> None:
    # kafka-python's 30 s reconnect backoff would eat into the delivery timeout.
    assert producer_config()["reconnect_backoff_max_ms"] <= 1000
