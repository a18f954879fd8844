"""The readiness verdict of a consumer loop (streamrec.transport.service_health), on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

from streamrec.metrics import MetricsRegistry, service_metrics
from streamrec.transport.service_health import ServiceProgress, heartbeat_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(clock: Clock) -> ServiceProgress:
    return ServiceProgress(stall_after_s=60, broker_silence_s=30, clock=clock)


def consumer_with_heartbeat(last_receive: float) -> SimpleNamespace:
    return SimpleNamespace(_coordinator=SimpleNamespace(heartbeat=SimpleNamespace(
        last_receive=last_receive)))


def test_idle_with_heartbeats_stays_ready_however_long() -> None:
    clock = Clock()
    watch = progress(clock)
    consumer = consumer_with_heartbeat(clock.now)
    watch.session_began(consumer)
    for _ in range(10):  # an hour without a single record
        clock.now += 360
        consumer._coordinator.heartbeat.last_receive = clock.now - 2
        watch.observed_lag(0)
        assert watch.verdict()["status"] == "ok"
    assert watch.seconds_since_commit() == 3600


def test_no_heartbeat_answer_means_the_broker_is_unreachable() -> None:
    clock = Clock()
    watch = progress(clock)
    consumer = consumer_with_heartbeat(clock.now)
    watch.session_began(consumer)
    clock.now += 29
    assert watch.verdict()["status"] == "ok"
    clock.now += 2
    verdict = watch.verdict()
    assert verdict["status"] == "unhealthy" and "broker" in str(verdict["reason"])
    consumer._coordinator.heartbeat.last_receive = clock.now  # the broker is back
    assert watch.verdict()["status"] == "ok"


def test_a_commit_counts_as_contact_without_heartbeats() -> None:
    clock = Clock()
    watch = progress(clock)
    watch.session_began(object())  # no kafka-python heartbeat to read
    assert heartbeat_of(object()) is None
    clock.now += 25
    watch.batch_began()
    watch.batch_ended(committed=True)
    clock.now += 25
    assert watch.verdict()["status"] == "ok"
    clock.now += 10
    assert watch.verdict()["status"] == "unhealthy"


def test_lag_without_commits_is_a_stall_counted_from_when_the_work_appeared() -> None:
    clock = Clock()
    watch = progress(clock)
    consumer = consumer_with_heartbeat(clock.now)
    watch.session_began(consumer)
    clock.now += 3000  # idle for long: that is not a stall
    consumer._coordinator.heartbeat.last_receive = clock.now
    watch.observed_lag(500)
    clock.now += 59
    consumer._coordinator.heartbeat.last_receive = clock.now
    assert watch.verdict()["status"] == "ok"
    clock.now += 2
    consumer._coordinator.heartbeat.last_receive = clock.now
    verdict = watch.verdict()
    assert verdict["status"] == "unhealthy" and "pending" in str(verdict["reason"])
    assert verdict["lag"] == 500


def test_a_batch_stuck_in_its_commit_is_a_stall() -> None:
    clock = Clock()
    watch = progress(clock)
    consumer = consumer_with_heartbeat(clock.now)
    watch.session_began(consumer)
    watch.batch_began()
    clock.now += 61
    consumer._coordinator.heartbeat.last_receive = clock.now
    assert watch.verdict()["status"] == "unhealthy"
    watch.batch_ended(committed=True)
    watch.observed_lag(0)
    assert watch.verdict()["status"] == "ok"


def test_commits_that_keep_up_with_lag_are_progress() -> None:
    clock = Clock()
    watch = progress(clock)
    watch.session_began(consumer_with_heartbeat(clock.now))
    for _ in range(20):
        watch.observed_lag(10_000)
        watch.batch_began()
        clock.now += 20
        watch.batch_ended(committed=True)
        assert watch.verdict()["status"] == "ok"


def test_seconds_since_last_commit_is_read_at_scrape_time() -> None:
    clock = Clock()
    watch = progress(clock)
    metrics = service_metrics(registry := MetricsRegistry(), "ingest")
    assert metrics.seconds_since_commit is not None
    metrics.seconds_since_commit.set_function(watch.seconds_since_commit)
    clock.now += 12.5
    line = [x for x in registry.render().splitlines()
            if x.startswith("streamrec_seconds_since_last_commit{")]
    assert line == ['streamrec_seconds_since_last_commit{service="ingest"} 12.5']
