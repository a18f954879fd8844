"""``streamrec_model_info``: which model a service is serving (or the trainer last published).

An info metric in the Prometheus style: value 1 on exactly one series, labelled with the
version and kind of the current model; the previous series is removed at a swap, so
``streamrec_model_info == 1`` never shows two versions for one service and a dashboard
can join it (``* on(service) group_left(version)``) onto any other series. Labels are
model versions (a handful per day), never anything per user.

>>> from streamrec.metrics.registry import MetricsRegistry
>>> registry = MetricsRegistry()
>>> info = ModelInfo(registry, "score")
>>> info.set("v000002", "deep_onnx")
>>> [l for l in registry.render().splitlines() if not l.startswith("#")]
['streamrec_model_info{kind="deep_onnx",service="score",version="v000002"} 1.0']
"""

from __future__ import annotations

import threading

from streamrec.metrics.registry import MetricsRegistry

# A version comes from a verified announcement, but a label is still bounded text.
_MAX_LABEL_CHARS = 64


class ModelInfo:
    """Holds the one ``streamrec_model_info`` series of one service."""

    def __init__(self, registry: MetricsRegistry, service: str) -> None:
        self.service = service
        self._family = registry.gauge(
            "streamrec_model_info",
            "The model this service serves (score) or last published (train): 1 on the "
            "current version and kind only.", ("service", "version", "kind"))
        self._lock = threading.Lock()
        self._current: tuple[str, str] | None = None

    @property
    def current(self) -> tuple[str, str] | None:
        return self._current

    def set(self, version: str, kind: str) -> None:
        """Label the current model; the previous one's series disappears."""
        labels = (str(version)[:_MAX_LABEL_CHARS], str(kind)[:_MAX_LABEL_CHARS])
        with self._lock:  # the follower thread swaps while a scrape may read
            if self._current is not None and self._current != labels:
                self._family.remove(self.service, *self._current)
            self._family.labels(self.service, *labels).set(1)
            self._current = labels
