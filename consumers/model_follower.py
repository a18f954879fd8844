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
never reloaded, and a rejected (version, manifest, path) is never retried; re-publishing an
older version as ``current`` (a rollback) loads it again. No torch here.

Hostile input: a message is decoded by ``ModelAnnouncement.decode`` (bounded, typed), its
version must be in the scorer's own store (``Settings.model_store``, see
``streamrec.export.store_root``), and with a control secret set it must carry the trainer's signature
(``streamrec.signing``); anything else is skipped and counted, never served. Every value
handed to ``accept``/``handle`` ends in exactly one ``outcomes`` count.

The follower never dies silently: an exception while handling a message is counted and
logged and the next message is handled; a failing poll or a broken consumer is counted
(``streamrec_model_follower_failures_total{reason}``), the consumer is rebuilt with
exponential backoff, and ``health()`` (the scorer's ``/readyz``) turns unhealthy when the
thread is not running or the last ``unhealthy_after`` polls failed.

>>> # follower = ModelFollower(settings, on_model=swap, on_reject=alert).start()
>>> # follower.wait_for_version("v000003", timeout=30); follower.close()
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterable

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from streamrec.export.serving import OnnxSequenceModel
from streamrec.export.store import ModelRejected
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.control import BadControl, ModelAnnouncement
from streamrec.signing import MODELS_KIND, verify_signature

if TYPE_CHECKING:
    from streamrec.metrics import MetricsRegistry

log = logging.getLogger(__name__)

CURRENT_KEY = b"current"
MAX_BACKOFF_S = 30.0
MAX_REMEMBERED_REJECTIONS = 1024


def current_values(messages: Iterable[Any], secret: str = "",
                   skipped: Counter[str] | None = None) -> list[bytes]:
    """Values of the ``current`` messages among consumed ``models`` records, in order.

    ``models`` carries other keys too (``drift`` from the scorers): they are not models,
    and a drift message taken for one would be rejected as a bad model on every restart.
    With a ``secret``, an unsigned or wrongly signed ``current`` message is dropped and
    counted in ``skipped["bad_signature"]``.
    """
    values = []
    for m in messages:
        if m.key != CURRENT_KEY or m.value is None:
            continue
        if not verify_signature(getattr(m, "headers", ()), secret, MODELS_KIND, m.key, m.value):
            if skipped is not None:
                skipped["bad_signature"] += 1
            log.error("a models message is unsigned or its signature does not verify: skipped")
            continue
        values.append(m.value)
    return values


def _published_at(value: bytes) -> float:
    try:
        published = ModelAnnouncement.decode(value).published_at
    except BadControl:
        return float("-inf")  # undecodable: tried last, and skipped then
    return float("-inf") if published is None else published


class ModelFollower:
    """Loads each new ``current`` model off the hot path; see the module docstring."""

    def __init__(self, settings: Settings,
                 on_model: Callable[[OnnxSequenceModel, dict[str, Any]], None],
                 on_reject: Callable[[str, str], None], *, threads: int = 2,
                 warmup: int = 3, poll_timeout_ms: int = 500,
                 unhealthy_after: int = 3) -> None:
        self.settings = settings
        self.on_model = on_model
        self.on_reject = on_reject
        self.threads = threads
        self.warmup = warmup
        self.poll_timeout_ms = poll_timeout_ms
        self.unhealthy_after = unhealthy_after
        self.current_version: str | None = None
        # (version, manifest sha, path) -> reason. The path is part of the key: a rogue
        # message naming the next version's real sha with a path outside the store must
        # not get the genuine message skipped as "already rejected".
        self.rejected: dict[tuple[str, ...], str] = {}
        # One count per value offered: served, or why not (see module docstring).
        self.outcomes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()  # polls, consumers, handler crashes
        self.consecutive_poll_failures = 0
        self.serving_published_at: float | None = None  # of the serving announcement
        self._skipped_metric: Any = None
        self._failures_metric: Any = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="model-follower")
        self._consumer: KafkaConsumer | None = None

    def bind_metrics(self, registry: "MetricsRegistry") -> "ModelFollower":
        """Expose skips and failures (``streamrec_model_follower_*_total{reason}``)."""
        self._skipped_metric = registry.counter(
            "streamrec_model_follower_skipped_total",
            "models messages the scorer did not serve, by reason.", ("reason",))
        self._failures_metric = registry.counter(
            "streamrec_model_follower_failures_total",
            "Failures of the model follower's thread (polls, consumer, handling), by reason.",
            ("reason",))
        return self

    def start(self) -> "ModelFollower":
        """Connect (errors surface here, in the caller) and start following."""
        self._connect()
        self._thread.start()
        return self

    def _connect(self) -> None:
        self._consumer = kafka_clients.committed_reader(self.settings)
        tp = KafkaTopicPartition(self.settings.topics.models, 0)
        self._consumer.assign([tp])
        # From the beginning again after a reconnect too: serving and rejected versions are
        # remembered, so only what is new gets loaded.
        self._consumer.seek_to_beginning(tp)

    def close(self, timeout: float = 10.0) -> None:
        """Stop following; a model being loaded finishes first (at most one load)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._close_consumer()

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:  # noqa: BLE001 - a broken consumer may fail to close too
                log.warning("closing the models consumer failed", exc_info=True)

    def __enter__(self) -> "ModelFollower":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> dict[str, object]:
        """For ``/readyz``: ``status`` ``ok``, or ``unhealthy`` with a ``reason``."""
        body: dict[str, object] = {"model_version": self.current_version}
        if not self._thread.is_alive() and not self._stop.is_set():
            return {**body, "status": "unhealthy", "reason": "model follower is not running"}
        if self.consecutive_poll_failures >= self.unhealthy_after:
            return {**body, "status": "unhealthy", "reason": f"model follower failed its last "
                    f"{self.consecutive_poll_failures} polls of the models topic"}
        return {**body, "status": "ok"}

    def wait_for_version(self, version: str, timeout: float) -> bool:
        """Block until ``version`` serves (True) or ``timeout`` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.current_version == version, timeout)

    def wait_for_rejection(self, version: str, timeout: float) -> bool:
        """Block until ``version`` has been rejected (True) or ``timeout`` passes."""
        with self._changed:
            return self._changed.wait_for(
                lambda: any(key[0] == version for key in self.rejected), timeout)

    def _run(self) -> None:
        # The supervisor: whatever escapes the loop below (a bug, a failing log handler)
        # is counted and the loop starts over after a pause, never ending the thread.
        pause = 0.5
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:  # noqa: BLE001 - following must outlive any one failure
                self._fail("thread")
                log.exception("the model follower's loop failed; restarting it in %.1f s",
                              pause)
                self._close_consumer()
                self._stop.wait(pause)
                pause = min(2 * pause, MAX_BACKOFF_S)

    def _follow(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self._consumer is None:
                    self._connect()
                batches = self._consumer.poll(timeout_ms=self.poll_timeout_ms)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end following
                # Close the broken consumer first: whoever reads the failure count (readiness,
                # tests) then sees the failure fully handled.
                self._close_consumer()
                self.consecutive_poll_failures += 1
                self._fail(f"poll_{type(exc).__name__}")
                log.exception("polling the models topic failed (%d in a row); rebuilding the "
                              "consumer in %.1f s", self.consecutive_poll_failures, backoff)
                self._stop.wait(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)
                continue
            self.consecutive_poll_failures, backoff = 0, 0.5
            try:
                self.accept(m for records in batches.values() for m in records)
            except Exception:  # noqa: BLE001 - accept guards each message; this is a last net
                self._fail("handler")
                log.exception("handling models messages failed; following goes on")

    def accept(self, records: Iterable[Any]) -> str | None:
        """Consumed ``models`` records (with ``key``, ``value``, ``headers``): check the
        signatures, then ``handle`` the ``current`` values."""
        skipped: Counter[str] = Counter()
        values = current_values(records, self.settings.control_secret, skipped)
        for reason, n in skipped.items():
            self._count(reason, n)
        return self.handle(values) if values else None

    def handle(self, values: list[bytes]) -> str | None:
        """Try ``current`` message values newest first; the version now serving, if new.

        Public so the loading rules are testable without a broker. With a control secret
        (every value here was signed by the trainer), "newest" means the latest
        ``published_at`` rather than the latest offset, and an announcement published
        before the serving one is ``stale_announcement``: replaying an old signed message
        cannot roll the scorer back, a fresh re-publication (a rollback) can.
        """
        if self.settings.control_secret:
            values = sorted(values, key=_published_at)  # stable: ties stay in offset order
        for index, value in enumerate(reversed(values)):
            if self._stop.is_set():
                self._count("not_tried", len(values) - index)
                return None
            try:
                verdict = self._try(value)
            except Exception as exc:  # noqa: BLE001 - one message must not end following
                self._fail("handler")
                self._count("handler_error")
                log.exception("handling a models message failed: %s", type(exc).__name__)
                continue
            if verdict is not None:  # served, or already settled: older ones are history
                self._count("superseded", len(values) - index - 1)
                return verdict or None
        return None

    def _try(self, value: bytes) -> str | None:
        """Handle one value: its version if it now serves, ``""`` if it was settled before
        (serving, or rejected: nothing older needs trying), None to try an older one."""
        try:
            announced = ModelAnnouncement.decode(value)
        except BadControl as exc:
            self._count("bad_message")
            self._reject("unknown", f"bad_message: {exc.detail}", ("unknown", repr(value[:64])))
            return None
        version, key = announced.version, (announced.version, announced.manifest_sha256,
                                           str(announced.path))
        if version == self.current_version:
            self._count("already_serving")
            return ""
        if key in self.rejected:
            self._count("already_rejected")
            return ""
        if (self.settings.control_secret and announced.published_at is not None
                and self.serving_published_at is not None
                and announced.published_at <= self.serving_published_at):
            self._count("stale_announcement")
            log.error("model %s was announced before the serving %s: a replay, skipped",
                      version, self.current_version)
            return ""
        if not self._load(announced.fields, version, key):
            return None
        self.serving_published_at = announced.published_at
        return version

    def _load(self, message: dict[str, Any], version: str, key: tuple[str, ...]) -> bool:
        try:
            model = OnnxSequenceModel(message, threads=self.threads, warmup=self.warmup,
                                      root=self.settings.model_store)
            probe = [model.vocab.ids[:1]]  # a real item: exercises scoring and top-K too
            for _ in range(self.warmup):
                model.recommend(probe, k=10)
        except ModelRejected as exc:
            self._count(exc.reason)
            self._reject(version, f"{exc.reason}: {exc.detail}", key)
            return False
        except Exception as exc:  # noqa: BLE001 - any failure means "do not serve it"
            self._count("load_failed")
            self._reject(version, f"load_failed: {type(exc).__name__}: {exc}", key)
            return False
        try:
            self.on_model(model, message)
        except Exception as exc:  # noqa: BLE001 - the server refused it; keep the old one
            self._count("on_model_failed")
            self._reject(version, f"on_model_failed: {type(exc).__name__}: {exc}",
                         key)
            return False
        log.info("model %s serving (was %s)", version, self.current_version,
                 extra={"model_version": version, "path": str(message.get("path"))[:300]})
        self.outcomes["served"] += 1
        with self._changed:
            self.current_version = version
            self._changed.notify_all()
        return True

    def _count(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.outcomes[reason] += n
        if self._skipped_metric is not None:
            self._skipped_metric.labels(reason=reason).inc(n)

    def _fail(self, reason: str) -> None:
        self.failures[reason] += 1
        if self._failures_metric is not None:
            self._failures_metric.labels(reason=reason).inc()

    def _reject(self, version: str, reason: str, key: tuple[str, ...]) -> None:
        log.error("model %s rejected, still serving %s: %s", version,
                  self.current_version or "no model", reason[:500])
        with self._changed:
            self.rejected[key] = reason
            while len(self.rejected) > MAX_REMEMBERED_REJECTIONS:  # a flood stays bounded
                del self.rejected[next(iter(self.rejected))]
            self._changed.notify_all()
        try:
            self.on_reject(version, reason)
        except Exception:  # noqa: BLE001 - a failing callback must not stop following
            log.exception("on_reject callback failed for model %s", version)
