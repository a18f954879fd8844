"""Metric families (counter, gauge, histogram) and the registry that renders them.

Backed by ``prometheus_client``: the standard text exposition (``generate_latest``) and,
per registry, the process and platform collectors (CPU seconds, resident memory, open
file descriptors, start time, Python version) for free. This module keeps the small API
the services were written against (``registry.counter(...).labels(reason=...).inc()``,
``child.value``, get-or-create by name), so no service changed. Every ``MetricsRegistry``
owns its own ``CollectorRegistry``, never the global one: tests and the in-process demo
build many registries in one process and must not collide. Never put a user id in a
label: one series per user would grow without bound.

>>> registry = MetricsRegistry()
>>> hits = registry.counter("demo_hits_total", "Hits.", ["kind"]).labels(kind="a")
>>> hits.inc()
>>> print(registry.render().splitlines()[-1])
demo_hits_total{kind="a"} 1.0
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from typing import Callable, Iterable, Iterator, Sequence, Union

import prometheus_client
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

# ``generate_latest`` writes text format 0.0.4 (prometheus_client's CONTENT_TYPE_LATEST
# names 1.0.0, which is not what the body is).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# 0.1 ms to 10 s: a decode is sub-millisecond, a batch commit can take seconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# ``*_created`` series double the series count for a timestamp no dashboard of ours reads.
# A process-wide switch of prometheus_client; streamrec owns its processes.
prometheus_client.disable_created_metrics()

PromCounter = prometheus_client.Counter
PromGauge = prometheus_client.Gauge
PromHistogram = prometheus_client.Histogram


class CounterChild:
    """One counter series; only goes up (prometheus_client raises on a negative inc)."""

    def __init__(self, child: PromCounter) -> None:
        self._child = child

    @property
    def value(self) -> float:
        return float(self._child._value.get())  # the running total, for set_rejected()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up; use a Gauge")
        self._child.inc(amount)


class GaugeChild:
    """One gauge series: a value that goes up and down (lag, queue depth).

    ``set_function`` makes it read a callable at every scrape instead, for a value that
    changes by itself (seconds since something happened).
    """

    def __init__(self, child: PromGauge) -> None:
        self._child = child
        self._function: Callable[[], float] | None = None

    @property
    def value(self) -> float:
        if self._function is not None:
            return float(self._function())
        return float(self._child._value.get())

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function
        self._child.set_function(function)

    def set(self, value: float) -> None:
        self._child.set(float(value))

    def inc(self, amount: float = 1.0) -> None:
        self._child.inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._child.dec(amount)


class HistogramChild:
    """One histogram series; ``observe`` is prometheus_client's (``le`` semantics)."""

    def __init__(self, child: PromHistogram) -> None:
        self._child = child

    def observe(self, value: float) -> None:
        self._child.observe(value)

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        """Observe the elapsed wall time of the ``with`` block, in seconds."""
        with self._child.time():
            yield

    @property
    def count(self) -> int:
        return int(sum(bucket.get() for bucket in self._child._buckets))

    @property
    def sum(self) -> float:
        return float(self._child._sum.get())


Child = Union[CounterChild, GaugeChild, HistogramChild]
_PromMetric = Union[PromCounter, PromGauge, PromHistogram]


class MetricFamily:
    """A metric family: a name, help text, label names and one child per label-value tuple.

    Without label names the family forwards ``inc``/``set``/``observe`` to its only child.
    """

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL_RE.match(label) or label.startswith("__") or label == "le":
                raise ValueError(f"invalid label name {label!r} for {name}")
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], Child] = {}
        self._metric = self._new_metric()  # registry=None: MetricsRegistry.register adds it
        if not self.labelnames:
            self._children[()] = self._wrap(self._metric)

    def _new_metric(self) -> _PromMetric:
        raise NotImplementedError

    def _wrap(self, child: _PromMetric) -> Child:
        raise NotImplementedError

    def labels(self, *values: object, **by_name: object) -> Child:
        """The child for these label values, created once; keep it for the hot path."""
        if by_name:
            if values or set(by_name) != set(self.labelnames):
                raise ValueError(
                    f"{self.name} takes labels {self.labelnames}, got {sorted(by_name)}")
            values = tuple(by_name[n] for n in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self._wrap(self._metric.labels(*key))
        return child

    def remove(self, *values: object) -> None:
        """Drop one series, e.g. the lag of a partition this instance no longer owns."""
        key = tuple(str(v) for v in values)
        with self._lock:
            if self._children.pop(key, None) is not None:
                self._metric.remove(*key)

    def _only(self) -> Child:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {self.labelnames}: call .labels() first")
        return self._children[()]


class Counter(MetricFamily):
    """A monotonically increasing count; name it ``..._total``."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            # prometheus_client would expose ``<name>_total``: a silent rename of the series.
            raise ValueError(f"counter {name!r} must end in _total")
        super().__init__(name, documentation, labelnames)

    def _new_metric(self) -> PromCounter:
        return PromCounter(self.name, self.documentation, self.labelnames, registry=None)

    def _wrap(self, child: _PromMetric) -> CounterChild:
        return CounterChild(child)  # type: ignore[arg-type]

    def labels(self, *values: object, **by_name: object) -> CounterChild:
        return super().labels(*values, **by_name)  # type: ignore[return-value]

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)  # type: ignore[union-attr]


class Gauge(MetricFamily):
    """A value that goes up and down."""

    kind = "gauge"

    def _new_metric(self) -> PromGauge:
        return PromGauge(self.name, self.documentation, self.labelnames, registry=None)

    def _wrap(self, child: _PromMetric) -> GaugeChild:
        return GaugeChild(child)  # type: ignore[arg-type]

    def labels(self, *values: object, **by_name: object) -> GaugeChild:
        return super().labels(*values, **by_name)  # type: ignore[return-value]

    def set(self, value: float) -> None:
        self._only().set(value)  # type: ignore[union-attr]

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)  # type: ignore[union-attr]

    def dec(self, amount: float = 1.0) -> None:
        self._only().inc(-amount)  # type: ignore[union-attr]


class Histogram(MetricFamily):
    """Counts of observations in cumulative ``le`` buckets, plus their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: buckets must be distinct and non-empty")
        self.buckets = bounds
        super().__init__(name, documentation, labelnames)

    def _new_metric(self) -> PromHistogram:
        return PromHistogram(self.name, self.documentation, self.labelnames,
                             buckets=self.buckets + (math.inf,), registry=None)

    def _wrap(self, child: _PromMetric) -> HistogramChild:
        return HistogramChild(child)  # type: ignore[arg-type]

    def labels(self, *values: object, **by_name: object) -> HistogramChild:
        return super().labels(*values, **by_name)  # type: ignore[return-value]

    def observe(self, value: float) -> None:
        self._only().observe(value)  # type: ignore[union-attr]

    def time(self) -> contextlib.AbstractContextManager[None]:
        return self._only().time()  # type: ignore[union-attr]


class _SortedView:
    """``collect()`` of a registry, families by name and series by label values.

    A stable order makes scrapes diffable and tests exact; the sort is stable, so a
    histogram's buckets keep their ``le`` order within a series.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in sorted(self._registry.collect(), key=lambda f: f.name):
            family.samples.sort(
                key=lambda s: tuple(v for k, v in s.labels.items() if k != "le"))
            yield family


class MetricsRegistry:
    """The set of metric families one process (or one service) exposes; get-or-create by name.

    ``process_metrics=True`` (what services pass) adds prometheus_client's process and
    platform collectors: ``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
    ``process_open_fds``, ``python_info``... Off by default so a unit test's scrape holds
    only what it registered.
    """

    def __init__(self, process_metrics: bool = False) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, MetricFamily] = {}
        self.collectors = CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.collectors)
            PlatformCollector(registry=self.collectors)

    def register(self, metric: MetricFamily) -> MetricFamily:
        """Add ``metric``, or return the one already registered under its name if identical.

        Re-registering the same shape is allowed so two services (``demo`` runs ingest and
        score in one process) can share a registry; a different shape is a bug and raises.
        """
        with self._lock:
            existing = self._metrics.get(metric.name)
            if existing is None:
                self.collectors.register(metric._metric)
                self._metrics[metric.name] = metric
                return metric
        same = (type(existing) is type(metric) and existing.labelnames == metric.labelnames
                and getattr(existing, "buckets", None) == getattr(metric, "buckets", None))
        if not same:
            raise ValueError(f"metric {metric.name} already registered with another shape")
        return existing

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, documentation, labelnames))  # type: ignore[return-value]

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, documentation, labelnames))  # type: ignore[return-value]

    def histogram(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        metric = Histogram(name, documentation, labelnames, buckets)
        return self.register(metric)  # type: ignore[return-value]

    def get(self, name: str) -> MetricFamily | None:
        return self._metrics.get(name)

    def render(self) -> str:
        """The whole registry in text exposition format 0.0.4 (``generate_latest``)."""
        return generate_latest(_SortedView(self.collectors)).decode()  # type: ignore[arg-type]
