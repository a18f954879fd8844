"""Prometheus metrics for the streamrec services, on prometheus_client (the serve extra).

- ``registry``: ``Counter``, ``Gauge``, ``Histogram`` and ``MetricsRegistry`` (text format 0.0.4);
- ``server``: ``MetricsServer`` serving ``/metrics``, ``/healthz`` and ``/readyz``;
- ``service``: ``service_metrics`` — the standard set every consumer exposes;
- ``model_info``: ``ModelInfo`` — ``streamrec_model_info{version,kind}``, the current model.

Typical wiring at a service's edge::

    registry = MetricsRegistry()
    metrics = service_metrics(registry, "ingest")
    server = MetricsServer(registry, settings.metrics_port, health=loop.health)
    ...
    metrics.events_in.inc(len(batch))
    with metrics.processing_latency.time():
        processor.process(batch)
"""

from streamrec.metrics.registry import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    Counter,
    CounterChild,
    Gauge,
    GaugeChild,
    Histogram,
    HistogramChild,
    MetricFamily,
    MetricsRegistry,
)
from streamrec.metrics.model_info import ModelInfo
from streamrec.metrics.server import HealthCheck, HealthResult, MetricsServer
from streamrec.metrics.service import (
    KNOWN_REJECT_REASONS,
    BoundFamily,
    ServiceMetrics,
    service_metrics,
)

__all__ = [
    "CONTENT_TYPE", "LATENCY_BUCKETS", "KNOWN_REJECT_REASONS",
    "Counter", "CounterChild", "Gauge", "GaugeChild", "Histogram", "HistogramChild",
    "MetricFamily", "MetricsRegistry", "ModelInfo", "MetricsServer", "HealthCheck", "HealthResult",
    "BoundFamily", "ServiceMetrics", "service_metrics",
]
