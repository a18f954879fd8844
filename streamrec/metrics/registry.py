"""Metric families (counter, gauge, histogram) and the registry that renders them.

Why our own: the services need a dozen series and a ``/healthz``; ``prometheus_client``
would be one more dependency in the serving image for that. The hot path binds a child
once (``counter.labels(reason="schema")``) and then only pays a lock and an add per call.
The text is exposition format 0.0.4. Never put a user id in a label: one series per user
would grow without bound.

>>> registry = MetricsRegistry()
>>> hits = registry.counter("demo_hits_total", "Hits.", ["kind"]).labels(kind="a")
>>> hits.inc()
>>> print(registry.render().splitlines()[-1])
demo_hits_total{kind="a"} 1.0
"""

from __future__ import annotations

import bisect
import contextlib
import math
import re
import threading
import time
from typing import Callable, Iterator, Sequence, Union

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# 0.1 ms to 10 s: a decode is sub-millisecond, a batch commit can take seconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _fmt(value: float) -> str:
    """Format a sample value or bucket bound the way Prometheus parses it."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "NaN" if math.isnan(value) else repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


class _ValueChild:
    """One series holding a single number, guarded by its own lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0.0

    @property
    def value(self) -> float:
        return self._value

    def _samples(self, name: str, labels: list[tuple[str, str]]) -> Iterator[str]:
        yield f"{name}{_label_text(labels)} {_fmt(self._value)}"


class CounterChild(_ValueChild):
    """One counter series; only goes up."""

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up; use a Gauge")
        with self._lock:  # += is read-modify-write: without the lock threads lose counts
            self._value += amount


class GaugeChild(_ValueChild):
    """One gauge series: a value that goes up and down (lag, queue depth).

    ``set_function`` makes it read a callable at every scrape instead, for a value that
    changes by itself (seconds since something happened).
    """

    _function: Callable[[], float] | None = None

    @property
    def value(self) -> float:
        return float(self._function()) if self._function is not None else self._value

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function

    def _samples(self, name: str, labels: list[tuple[str, str]]) -> Iterator[str]:
        yield f"{name}{_label_text(labels)} {_fmt(self.value)}"

    def set(self, value: float) -> None:
        self._value = float(value)  # a single store is atomic; no lock needed

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)


class HistogramChild:
    """One histogram series; ``observe`` is a bisect, a lock and two adds."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self._counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; last is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self._bounds, value)  # first bound >= value: `le` semantics
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        """Observe the elapsed wall time of the ``with`` block, in seconds."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)

    @property
    def count(self) -> int:
        return sum(self._counts)

    @property
    def sum(self) -> float:
        return self._sum

    def _samples(self, name: str, labels: list[tuple[str, str]]) -> Iterator[str]:
        with self._lock:  # one consistent snapshot: buckets, sum and count agree
            counts, total = list(self._counts), self._sum
        cumulative = 0
        for bound, count in zip(self._bounds + (math.inf,), counts):
            cumulative += count
            yield f"{name}_bucket{_label_text(labels + [('le', _fmt(bound))])} {cumulative}"
        yield f"{name}_sum{_label_text(labels)} {_fmt(total)}"
        yield f"{name}_count{_label_text(labels)} {cumulative}"


Child = Union[CounterChild, GaugeChild, HistogramChild]


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
        if not self.labelnames:
            self._children[()] = self._new_child()

    def _new_child(self) -> Child:
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
                child = self._children.setdefault(key, self._new_child())
        return child

    def remove(self, *values: object) -> None:
        """Drop one series, e.g. the lag of a partition this instance no longer owns."""
        with self._lock:
            self._children.pop(tuple(str(v) for v in values), None)

    def _only(self) -> Child:
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {self.labelnames}: call .labels() first")
        return self._children[()]

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} " + self.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        yield f"# TYPE {self.name} {self.kind}"
        with self._lock:
            children = sorted(self._children.items())
        for key, child in children:
            yield from child._samples(self.name, list(zip(self.labelnames, key)))


class Counter(MetricFamily):
    """A monotonically increasing count; name it ``..._total``."""

    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def labels(self, *values: object, **by_name: object) -> CounterChild:
        return super().labels(*values, **by_name)  # type: ignore[return-value]

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)  # type: ignore[union-attr]


class Gauge(MetricFamily):
    """A value that goes up and down."""

    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

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

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.buckets)

    def labels(self, *values: object, **by_name: object) -> HistogramChild:
        return super().labels(*values, **by_name)  # type: ignore[return-value]

    def observe(self, value: float) -> None:
        self._only().observe(value)  # type: ignore[union-attr]

    def time(self) -> contextlib.AbstractContextManager[None]:
        return self._only().time()  # type: ignore[union-attr]


class MetricsRegistry:
    """The set of metric families one process exposes; get-or-create by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, MetricFamily] = {}

    def register(self, metric: MetricFamily) -> MetricFamily:
        """Add ``metric``, or return the one already registered under its name if identical.

        Re-registering the same shape is allowed so two services (``demo`` runs ingest and
        score in one process) can share a registry; a different shape is a bug and raises.
        """
        with self._lock:
            existing = self._metrics.get(metric.name)
            if existing is None:
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
        """The whole registry in text exposition format 0.0.4, families sorted by name."""
        with self._lock:
            metrics = sorted(self._metrics.items())
        return "".join(line + "\n" for _, metric in metrics for line in metric.render())
