"""The standard metrics every streamrec consumer exposes, under one set of names.

Every series carries a ``service`` label (``ingest``, ``score``, ...) so services sharing a
process and registry (``demo``) stay apart; nothing here is ever labelled by user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar

from streamrec.metrics.registry import (
    LATENCY_BUCKETS,
    CounterChild,
    GaugeChild,
    HistogramChild,
    MetricsRegistry,
    MetricFamily,
)

# The ``BadEvent.reason`` values of ``streamrec.events``; created up front so a dashboard
# shows a 0 line instead of "no data" until the first bad event arrives.
KNOWN_REJECT_REASONS = ("bad_json", "schema", "oversized", "empty", "key_mismatch",
                        "reserved_user_id", "too_deep", "bad_id", "bad_key", "missing_key",
                        "ts_out_of_range", "out_of_bounds", "unknown_control")
# The ``cause`` values of ``streamrec_commit_failures_total`` (``streamrec.transport.verified_commit``,
# which sits above this floor and so is not imported), created up front like the reasons.
KNOWN_COMMIT_FAILURE_CAUSES = ("send_failed", "offsets_failed", "commit_raised", "bad_state")


C = TypeVar("C", CounterChild, GaugeChild)


class BoundFamily(Generic[C]):
    """A labelled family with its ``service`` label already filled in.

    Callers label by what they know (``reason``; ``topic, partition``), exactly as if the
    family had only those labels, and the series stay apart per service.
    """

    def __init__(self, family: MetricFamily, service: str) -> None:
        self.family, self.service = family, service
        self.labelnames = family.labelnames[1:]

    def labels(self, *values: object, **by_name: object) -> C:
        if by_name:
            return self.family.labels(service=self.service, **by_name)  # type: ignore[return-value]
        return self.family.labels(self.service, *values)  # type: ignore[return-value]

    def remove(self, *values: object) -> None:
        self.family.remove(self.service, *values)


@dataclass(frozen=True)
class ServiceMetrics:
    """Children pre-bound to one service, ready for the hot path.

    ``events_rejected`` (labels ``reason``), ``model_adoptions`` (labels ``outcome``),
    ``commit_failures`` (labels ``cause``) and ``consumer_lag`` (labels ``topic``,
    ``partition``) are families: bind a child once per reason / outcome / cause / partition
    and keep it.
    """

    service: str
    events_in: CounterChild
    events_out: CounterChild
    events_rejected: BoundFamily[CounterChild]
    processing_latency: HistogramChild
    consumer_lag: BoundFamily[GaugeChild]
    batches: CounterChild
    commits: CounterChild
    commit_failures: BoundFamily[CounterChild]
    model_adoptions: BoundFamily[CounterChild]
    # Input records skipped and counted, not dead-lettered (bad user states), by
    # (topic, reason). Last with a default: older constructions keep working.
    inputs_skipped: BoundFamily[CounterChild] | None = None
    # Seconds since the loop last committed a batch (read at scrape time).
    seconds_since_commit: GaugeChild | None = None
    # Records of the global topics' partitions not yet handed to ``learn_global``
    # (``streamrec.transport.global_reader``); stays 0 for a service without global topics.
    global_reader_lag: GaugeChild | None = None

    def rejected(self, reason: str) -> CounterChild:
        return self.events_rejected.labels(reason=reason)

    def set_rejected(self, reason: str, total: float) -> None:
        """Bring the counter up to a running total kept elsewhere (a processor's tally).

        A total below the counter (the processor was rebuilt and restarted its tally) adds
        nothing: a counter never goes down, and Prometheus' ``rate`` handles the rest.
        """
        child = self.rejected(reason)
        if total > child.value:
            child.inc(total - child.value)

    def set_adoptions(self, outcome: str, total: float) -> None:
        """Like ``set_rejected``, for ingest's adopt-model messages by outcome."""
        child = self.model_adoptions.labels(outcome=outcome)
        if total > child.value:
            child.inc(total - child.value)

    def set_skipped(self, topic: str, reason: str, total: float) -> None:
        """Like ``set_rejected``, for a processor's ``skipped_by_reason[(topic, reason)]``."""
        if self.inputs_skipped is None:
            return
        child = self.inputs_skipped.labels(topic=topic, reason=reason)
        if total > child.value:
            child.inc(total - child.value)

    def commit_failed(self, cause: str) -> None:
        """Count one batch whose transaction was not committed, by ``cause``."""
        self.commit_failures.labels(cause=cause).inc()

    def lag(self, topic: str, partition: int) -> GaugeChild:
        return self.consumer_lag.labels(topic=topic, partition=partition)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a revoked partition, so it does not freeze at its last value."""
        self.consumer_lag.remove(topic, partition)


def service_metrics(registry: MetricsRegistry, service: str,
                    reject_reasons: Sequence[str] = KNOWN_REJECT_REASONS) -> ServiceMetrics:
    """Create (or reuse) the standard families in ``registry`` and bind them to ``service``."""
    svc = ("service",)

    def count(name: str, doc: str) -> CounterChild:
        return registry.counter(name, doc, svc).labels(service=service)

    rejected = registry.counter("streamrec_events_rejected_total",
                                "Events sent to the dead-letter topic, by reason.",
                                ("service", "reason"))
    for reason in reject_reasons:
        rejected.labels(service=service, reason=reason)
    latency = registry.histogram("streamrec_processing_latency_seconds",
                                 "Time to process one batch, poll to produce, in seconds.",
                                 svc, LATENCY_BUCKETS)
    adoptions = registry.counter("streamrec_model_adoptions_total",
                                 "adopt-model messages handled per partition, by outcome "
                                 "(adopted, already_adopted, or why the model was skipped).",
                                 ("service", "outcome"))
    skipped = registry.counter("streamrec_inputs_skipped_total",
                               "Input records skipped and counted instead of applied "
                               "(a malformed user state, say), by topic and reason.",
                               ("service", "topic", "reason"))
    # Same name as before the cause label: sum(streamrec_commit_failures_total) by (service)
    # still means every failed commit.
    commit_failures = registry.counter("streamrec_commit_failures_total",
                                       "Transactions not committed (the batch is retried "
                                       "from the committed state), by cause.",
                                       ("service", "cause"))
    for cause in KNOWN_COMMIT_FAILURE_CAUSES:
        commit_failures.labels(service=service, cause=cause)
    lag = registry.gauge("streamrec_consumer_lag",
                         "Records between the committed offset and the log end, per partition.",
                         ("service", "topic", "partition"))
    since_commit = registry.gauge("streamrec_seconds_since_last_commit",
                                  "Seconds since the last committed batch (since start before "
                                  "the first); grows while the service makes no progress.", svc)
    return ServiceMetrics(
        service=service,
        events_in=count("streamrec_events_in_total", "Events consumed from input topics."),
        events_out=count("streamrec_events_out_total", "Records produced to output topics."),
        events_rejected=BoundFamily(rejected, service),
        processing_latency=latency.labels(service=service),
        consumer_lag=BoundFamily(lag, service),
        batches=count("streamrec_batches_total", "Batches processed."),
        commits=count("streamrec_commits_total", "Successful offset or transaction commits."),
        commit_failures=BoundFamily(commit_failures, service),
        model_adoptions=BoundFamily(adoptions, service),
        inputs_skipped=BoundFamily(skipped, service),
        seconds_since_commit=since_commit.labels(service=service),
        global_reader_lag=registry.gauge(
            "streamrec_global_reader_lag",
            "Records of the global topics (every partition, owned or not) not yet learned "
            "for item-side knowledge.", svc).labels(service=service),
    )
