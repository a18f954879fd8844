"""Follow the ``models`` topic and hand each new, verified, warmed-up model to the server.

A scorer must never load a model on its hot path, nor serve one that fails its checks.
``ModelFollower`` runs a daemon thread with its own consumer (no group: every instance
reads the whole, single-partition topic from the beginning). For each ``current`` message
it verifies the version (``load_verified``: checksums and the stored parity fixture),
builds an ``OnnxSequenceModel``, warms it up, and only then calls ``on_model(model,
message)``; the caller swaps a reference. A model that fails goes to ``on_reject(version,
reason)`` with one clear log line, and whatever served before keeps serving.

Messages are taken newest first within what one poll returns, stopping at the first that
loads: a restarted scorer starts from the newest good model instead of loading history,
and if the newest is corrupt it falls back to the one before it. The serving version is
never reloaded, and a rejected (version, manifest) is never retried; re-publishing an
older version as ``current`` (a rollback) loads it again. No torch here.

>>> # follower = ModelFollower(settings, on_model=swap, on_reject=alert).start()
>>> # follower.wait_for_version("v000003", timeout=30); follower.close()
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterable

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from export.serving import OnnxSequenceModel
from export.store import ModelRejected
from streamrec import kafka_clients
from streamrec.config import Settings

log = logging.getLogger(__name__)

CURRENT_KEY = b"current"


def current_values(messages: Iterable[Any]) -> list[bytes]:
    """Values of the ``current`` messages among consumed ``models`` records, in order.

    ``models`` carries other keys too (``drift`` from the scorers): they are not models,
    and a drift message taken for one would be rejected as a bad model on every restart.
    """
    return [m.value for m in messages if m.key == CURRENT_KEY and m.value is not None]


class ModelFollower:
    """Loads each new ``current`` model off the hot path; see the module docstring."""

    def __init__(self, settings: Settings,
                 on_model: Callable[[OnnxSequenceModel, dict[str, Any]], None],
                 on_reject: Callable[[str, str], None], *, threads: int = 2,
                 warmup: int = 3, poll_timeout_ms: int = 500) -> None:
        self.settings = settings
        self.on_model = on_model
        self.on_reject = on_reject
        self.threads = threads
        self.warmup = warmup
        self.poll_timeout_ms = poll_timeout_ms
        self.current_version: str | None = None
        self.rejected: dict[tuple[str, str], str] = {}  # (version, manifest sha) -> reason
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="model-follower")
        self._consumer: KafkaConsumer | None = None

    def start(self) -> "ModelFollower":
        """Connect (errors surface here, in the caller) and start following."""
        self._consumer = kafka_clients.consumer(self.settings, group_id=None,
                                                enable_auto_commit=False,
                                                isolation_level="read_committed")
        tp = KafkaTopicPartition(self.settings.topics.models, 0)
        self._consumer.assign([tp])
        self._consumer.seek_to_beginning(tp)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop following; a model being loaded finishes first (at most one load)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._consumer is not None:
            self._consumer.close()

    def __enter__(self) -> "ModelFollower":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_for_version(self, version: str, timeout: float) -> bool:
        """Block until ``version`` serves (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.current_version == version, timeout)

    def wait_for_rejection(self, version: str, timeout: float) -> bool:
        """Block until ``version`` has been rejected (True) or ``timeout`` passes."""
        with self._changed:
            return self._changed.wait_for(
                lambda: any(v == version for v, _ in self.rejected), timeout)

    def _run(self) -> None:
        assert self._consumer is not None
        while not self._stop.is_set():
            try:
                batches = self._consumer.poll(timeout_ms=self.poll_timeout_ms)
            except Exception:  # noqa: BLE001 - a broker hiccup must not end following
                log.exception("polling the models topic failed; retrying")
                self._stop.wait(1.0)
                continue
            values = current_values(m for records in batches.values() for m in records)
            if values:
                self.handle(values)

    def handle(self, values: list[bytes]) -> str | None:
        """Try ``current`` message values newest first; the version now serving, if new.

        Public so the loading rules are testable without a broker.
        """
        for value in reversed(values):
            if self._stop.is_set():
                return None
            try:
                message = json.loads(value)
                version, sha = str(message["version"]), str(message["manifest_sha256"])
            except (ValueError, KeyError, TypeError) as exc:
                self._reject("unknown", f"bad_message: {exc!r}", ("unknown", repr(value[:64])))
                continue
            if version == self.current_version or (version, sha) in self.rejected:
                return None  # newer than anything we could still load: nothing to do
            if self._load(message, version, sha):
                return version
        return None

    def _load(self, message: dict[str, Any], version: str, sha: str) -> bool:
        try:
            model = OnnxSequenceModel(message, threads=self.threads, warmup=self.warmup)
            probe = [model.vocab.ids[:1]]  # a real item: exercises scoring and top-K too
            for _ in range(self.warmup):
                model.recommend(probe, k=10)
        except ModelRejected as exc:
            self._reject(version, f"{exc.reason}: {exc.detail}", (version, sha))
            return False
        except Exception as exc:  # noqa: BLE001 - any failure means "do not serve it"
            self._reject(version, f"load_failed: {type(exc).__name__}: {exc}", (version, sha))
            return False
        try:
            self.on_model(model, message)
        except Exception as exc:  # noqa: BLE001 - the server refused it; keep the old one
            self._reject(version, f"on_model_failed: {type(exc).__name__}: {exc}",
                         (version, sha))
            return False
        log.info("model %s serving (was %s)", version, self.current_version,
                 extra={"model_version": version, "path": message.get("path")})
        with self._changed:
            self.current_version = version
            self._changed.notify_all()
        return True

    def _reject(self, version: str, reason: str, key: tuple[str, str]) -> None:
        log.error("model %s rejected, still serving %s: %s", version,
                  self.current_version or "no model", reason)
        with self._changed:
            self.rejected[key] = reason
            self._changed.notify_all()
        try:
            self.on_reject(version, reason)
        except Exception:  # noqa: BLE001 - a failing callback must not stop following
            log.exception("on_reject callback failed for model %s", version)
