"""streamrec.metrics: exposition text, thread safety, the standard set, the HTTP endpoint."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import urllib.error
import urllib.request

import pytest

from streamrec.metrics import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    MetricsRegistry,
    MetricsServer,
    service_metrics,
)

# One sample line of format 0.0.4: name, optional {label="value",...}, a float.
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf'^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{{{_LABEL}(?:,{_LABEL})*\}})? '
                     r'(?:[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|Inf)|NaN)$')


def assert_valid_exposition(text: str) -> None:
    """Every line is a HELP, a TYPE or a sample; each family's HELP/TYPE precede its samples."""
    assert text.endswith("\n")
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram"}
            typed.add(name)
            continue
        assert _SAMPLE.match(line), f"not a valid sample line: {line!r}"
        base = re.sub(r"_(bucket|sum|count)$", "", line.split("{")[0].split(" ")[0])
        assert base in typed or line.split("{")[0].split(" ")[0] in typed, line


def test_counter_and_gauge_render_exactly() -> None:
    registry = MetricsRegistry()
    registry.counter("app_events_total", "Events seen.").inc(3)
    gauge = registry.gauge("app_queue_depth", "Queued items.", ["queue"])
    gauge.labels(queue="b").set(2)
    gauge.labels("a").inc(5)
    gauge.labels("a").dec(1.5)
    assert registry.render() == (
        "# HELP app_events_total Events seen.\n"
        "# TYPE app_events_total counter\n"
        "app_events_total 3.0\n"
        "# HELP app_queue_depth Queued items.\n"
        "# TYPE app_queue_depth gauge\n"
        'app_queue_depth{queue="a"} 3.5\n'
        'app_queue_depth{queue="b"} 2.0\n'
    )


def test_label_values_and_help_are_escaped() -> None:
    registry = MetricsRegistry()
    counter = registry.counter("app_odd_total", 'Help with \\ and\nnewline "quoted".', ["v"])
    counter.labels(v='back\\slash "quote"\nnewline').inc()
    text = registry.render()
    assert '# HELP app_odd_total Help with \\\\ and\\nnewline "quoted".\n' in text
    assert 'app_odd_total{v="back\\\\slash \\"quote\\"\\nnewline"} 1.0\n' in text
    assert_valid_exposition(text)


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count() -> None:
    registry = MetricsRegistry()
    histogram = registry.histogram("app_latency_seconds", "Latency.", ["stage"],
                                   buckets=[0.125, 1.0, 0.0625])  # exact in binary
    child = histogram.labels(stage="decode")
    for value in (0.03125, 0.0625, 0.5, 1.0, 3.0):  # a value equal to a bound counts as `le`
        child.observe(value)
    lines = [line for line in registry.render().splitlines() if not line.startswith("#")]
    assert lines == [
        # prometheus_client's generate_latest: labels sorted by name, counts as floats,
        # _count before _sum (the values are what this test pins).
        'app_latency_seconds_bucket{le="0.0625",stage="decode"} 2.0',
        'app_latency_seconds_bucket{le="0.125",stage="decode"} 2.0',
        'app_latency_seconds_bucket{le="1.0",stage="decode"} 4.0',
        'app_latency_seconds_bucket{le="+Inf",stage="decode"} 5.0',
        'app_latency_seconds_count{stage="decode"} 5.0',
        'app_latency_seconds_sum{stage="decode"} 4.59375',
    ]
    assert child.count == 5 and child.sum == 4.59375
    assert "# TYPE app_latency_seconds histogram" in registry.render()


def test_histogram_timer_observes_elapsed_seconds() -> None:
    histogram = Histogram("app_block_seconds", "Block time.")
    with histogram.time():
        pass
    child = histogram.labels()
    assert child.count == 1 and 0 <= child.sum < 1


@pytest.mark.parametrize("make", [
    lambda: Counter("bad-name", "x"),
    lambda: Counter("ok_total", "x", ["bad-label"]),
    lambda: Counter("ok_total", "x", ["__reserved"]),
    lambda: Histogram("ok_seconds", "x", ["le"]),
    lambda: Histogram("ok_seconds", "x", buckets=[1.0, 1.0]),
])
def test_invalid_definitions_are_rejected(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        make()


def test_misuse_raises() -> None:
    counter = Counter("app_total", "x", ["kind"])
    with pytest.raises(ValueError):
        counter.inc()  # labelled family: bind a child first
    with pytest.raises(ValueError):
        counter.labels("a", "b")
    with pytest.raises(ValueError):
        counter.labels(other="a")
    with pytest.raises(ValueError):
        counter.labels("a").inc(-1)
    assert counter.labels("a") is counter.labels(kind="a")


def test_registry_reuses_same_shape_and_rejects_another() -> None:
    registry = MetricsRegistry()
    first = registry.counter("app_total", "x", ["kind"])
    assert registry.counter("app_total", "x", ["kind"]) is first
    with pytest.raises(ValueError):
        registry.counter("app_total", "x", ["other"])
    with pytest.raises(ValueError):
        registry.gauge("app_total", "x", ["kind"])


def test_counts_add_up_exactly_across_threads() -> None:
    registry = MetricsRegistry()
    counter = registry.counter("app_hits_total", "Hits.", ["kind"])
    histogram = registry.histogram("app_seconds", "Time.", buckets=[0.5])
    gauge = registry.gauge("app_level", "Level.")
    threads, per_thread = 8, 20_000
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()  # start together to maximise contention
        child = counter.labels(kind="shared")  # concurrent first binding must not split
        for i in range(per_thread):
            child.inc()
            histogram.observe(0.25 if i % 2 else 0.75)
            gauge.inc()
            registry.render() if i % 5000 == 0 else None  # scrapes while writing

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    total = threads * per_thread
    assert counter.labels(kind="shared").value == total
    assert histogram.labels().count == total
    assert histogram.labels().sum == pytest.approx(total * 0.5)
    assert gauge.labels().value == total
    assert f'app_seconds_bucket{{le="0.5"}} {float(total // 2)}' in registry.render()


def test_service_metrics_standard_set() -> None:
    registry = MetricsRegistry()
    ingest = service_metrics(registry, "ingest")
    score = service_metrics(registry, "score")  # two services share one registry (demo)
    ingest.events_in.inc(10)
    score.events_in.inc(2)
    ingest.rejected("schema").inc()
    ingest.set_rejected("bad_json", 4)  # a processor's running tally...
    ingest.set_rejected("bad_json", 6)  # ...adds only what is new
    ingest.set_rejected("bad_json", 1)  # ...and never goes down (tally restarted)
    ingest.set_adoptions("adopted", 2)  # the same running-tally rule as set_rejected
    ingest.set_adoptions("adopted", 1)
    ingest.lag("clicks", 3).set(42)
    ingest.consumer_lag.labels("clicks", "7").set(1)  # the runtime binds positionally
    assert ingest.events_rejected.labels(reason="schema") is ingest.rejected("schema")
    with ingest.processing_latency.time():
        pass
    text = registry.render()
    assert_valid_exposition(text)
    for name, kind in [
        ("streamrec_events_in_total", "counter"), ("streamrec_events_out_total", "counter"),
        ("streamrec_events_rejected_total", "counter"), ("streamrec_batches_total", "counter"),
        ("streamrec_commits_total", "counter"), ("streamrec_commit_failures_total", "counter"),
        ("streamrec_processing_latency_seconds", "histogram"),
        ("streamrec_consumer_lag", "gauge"), ("streamrec_model_adoptions_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
    assert 'streamrec_events_in_total{service="ingest"} 10.0' in text
    assert 'streamrec_events_in_total{service="score"} 2.0' in text
    assert 'streamrec_events_rejected_total{reason="schema",service="ingest"} 1.0' in text
    assert 'streamrec_events_rejected_total{reason="bad_json",service="ingest"} 6.0' in text
    assert 'streamrec_events_rejected_total{reason="empty",service="score"} 0.0' in text
    assert 'streamrec_model_adoptions_total{outcome="adopted",service="ingest"} 2.0' in text
    assert 'streamrec_consumer_lag{partition="7",service="ingest",topic="clicks"} 1.0' in text
    assert 'streamrec_consumer_lag{partition="3",service="ingest",topic="clicks"} 42.0' in text
    for name in ("streamrec_events_rejected_total", "streamrec_consumer_lag",
                 "streamrec_processing_latency_seconds"):
        metric = registry.get(name)
        assert metric is not None and not any("user" in label for label in metric.labelnames)
    latency = registry.get("streamrec_processing_latency_seconds")
    assert isinstance(latency, Histogram)
    assert latency.buckets[0] == pytest.approx(0.0001) and latency.buckets[-1] == 10.0
    assert latency.buckets == tuple(LATENCY_BUCKETS)
    ingest.forget_partition("clicks", 3)
    assert 'partition="3"' not in registry.render()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ingest.service = "other"  # type: ignore[misc]


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_server_serves_metrics_and_health_on_a_free_port() -> None:
    registry = MetricsRegistry()
    service_metrics(registry, "ingest").events_in.inc(7)
    with MetricsServer(registry, port=0, host="127.0.0.1",
                       health=lambda: {"status": "ok", "partitions": 4}) as server:
        assert server.port > 0
        status, content_type, body = _get(f"{server.url}/metrics")
        assert status == 200 and content_type == CONTENT_TYPE
        assert 'streamrec_events_in_total{service="ingest"} 7.0' in body
        assert_valid_exposition(body)
        status, content_type, body = _get(f"{server.url}/healthz")
        assert status == 200 and content_type == "application/json"
        health = json.loads(body)
        assert health["status"] == "ok" and health["partitions"] == 4
        assert _get(f"{server.url}/readyz")[0] == 200  # readiness defaults to health
        assert _get(f"{server.url}/nope")[0] == 404


@pytest.mark.parametrize("check", [
    lambda: False,
    lambda: {"status": "degraded", "reason": "no partitions"},
    lambda: 1 / 0,
])
def test_server_reports_503_when_unhealthy(check) -> None:  # type: ignore[no-untyped-def]
    with MetricsServer(MetricsRegistry(), port=0, host="127.0.0.1", health=check) as server:
        status, content_type, body = _get(f"{server.url}/healthz")
        assert status == 503 and content_type == "application/json"
        assert json.loads(body)["status"] != "ok"
        assert _get(f"{server.url}/metrics")[0] == 200  # metrics stay scrapeable


def test_server_readiness_is_separate_from_liveness() -> None:
    ready = threading.Event()
    with MetricsServer(MetricsRegistry(), port=0, host="127.0.0.1",
                       health=lambda: True, ready=ready.is_set) as server:
        assert _get(f"{server.url}/healthz")[0] == 200
        assert _get(f"{server.url}/readyz")[0] == 503
        ready.set()
        assert _get(f"{server.url}/readyz")[0] == 200


def test_server_close_releases_the_port() -> None:
    server = MetricsServer(MetricsRegistry(), port=0, host="127.0.0.1")
    url = server.url
    server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/metrics", timeout=2)


def test_service_registries_have_process_metrics_and_never_collide() -> None:
    # Two registries in one process (the demo, the tests) hold the same names apart, and
    # neither writes into prometheus_client's global REGISTRY.
    import prometheus_client

    first, second = MetricsRegistry(process_metrics=True), MetricsRegistry(process_metrics=True)
    service_metrics(first, "ingest").events_in.inc(3)
    service_metrics(second, "ingest").events_in.inc(5)
    text = first.render()
    assert 'streamrec_events_in_total{service="ingest"} 3.0' in text
    assert 'streamrec_events_in_total{service="ingest"} 5.0' in second.render()
    assert "python_info{" in text and "_created" not in text
    if "linux" in __import__("sys").platform:  # ProcessCollector reads /proc
        assert "process_resident_memory_bytes " in text
    assert prometheus_client.REGISTRY.get_sample_value(
        "streamrec_events_in_total", {"service": "ingest"}) is None
    assert "process_" not in MetricsRegistry().render()  # off unless a service asks


def test_a_counter_must_be_named_total() -> None:
    # prometheus_client would otherwise expose it as <name>_total: a silent rename.
    with pytest.raises(ValueError):
        Counter("app_events", "x")
