"""``TrainerService``: the Kafka binding of the ``Trainer`` (see ``streamrec.consumers.train``).

Reads the training window from ``clicks`` by offsets with ``read_committed`` (an aborted
or open transaction's events never train a model), finds the serving model as the newest
``current`` message on ``models``, and publishes promotions there with an idempotent
producer. It decides *when* to train; ``Trainer`` decides *what* and *whether to promote*.

After each promotion it also puts one ``adopt-model`` control message on every ``clicks``
partition (``streamrec.control``), whose value is the very ``models`` value just published:
ingest then moves each partition's online embeddings into the new model's item space at
that point of the partition's order. With a control secret set, both are signed
(``streamrec.signing``), and the serving model is read back only from a signed message.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

from kafka import KafkaProducer  # type only: kafka_clients builds it
from kafka import TopicPartition as KafkaTopicPartition

from streamrec.consumers.train import CurrentModel, Trainer, TrainingOutcome
from streamrec.consumers.train_window import TrainingWindow, build_window
from streamrec.transport.changelog import read_changelog
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.control import BadControl, ModelAnnouncement, adopt_model_requests, send_control
from streamrec.events import ClickBounds
from streamrec.signing import MODELS_KIND, sign_headers, verify_signature

log = logging.getLogger(__name__)


class TrainerService:
    """Runs a ``Trainer`` against Kafka: once, or whenever a trigger fires, until stopped.

    Triggers, checked every ``poll_s``: ``interval_s`` since the last run, ``every_events``
    new offsets on ``clicks`` since the data of the last run, or ``drift_signal()``. With no
    model yet, any new event triggers (the run skips itself below ``min_events``). ``stop``
    lets the current step finish (a model half-published is worse than a late exit).
    """

    def __init__(self, settings: Settings, trainer: Trainer, *, interval_s: float = 3600.0,
                 every_events: int = 50_000, poll_s: float = 5.0,
                 drift_signal: Callable[[], bool] | None = None,
                 on_run: Callable[[TrainingOutcome | None], None] | None = None) -> None:
        self.settings = settings
        # Told of every run of ``run()``: its outcome, or None when it raised (metrics).
        self.on_run = on_run
        # Set once ``run()`` has reached the broker and read the current model: readiness;
        # ``on_started`` is then told that model's version (None: no model yet).
        self.started = threading.Event()
        self.on_started: Callable[[str | None], None] | None = None
        self.trainer = trainer
        self.interval_s, self.every_events, self.poll_s = interval_s, every_events, poll_s
        self.drift_signal = drift_signal
        self.current: CurrentModel | None = None
        self.runs: list[TrainingOutcome] = []
        # Wall clock (epoch s) of the last run's start: a drift signal skips drift that the
        # run's data already covered (see streamrec.consumers.drift_trigger).
        self.last_run_started_at: float | None = None
        self._stop = threading.Event()
        self._consumer = kafka_clients.committed_reader(settings)
        self._producer: KafkaProducer | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._consumer.close()
        if self._producer is not None:
            self._producer.close()

    def end_offsets(self) -> dict[int, int]:
        """Last stable offset per ``clicks`` partition (read_committed: no open txn)."""
        topic = self.settings.topics.clicks
        tps = [KafkaTopicPartition(topic, p)
               for p in sorted(self._consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: off for tp, off in self._consumer.end_offsets(tps).items()}

    def window_offsets(self, ends: dict[int, int]) -> dict[int, tuple[int, int]]:
        """[start, end) per partition: since ``since_ts``, or the newest ``window_events``
        split across partitions in proportion to what each retains."""
        topic, cfg = self.settings.topics.clicks, self.trainer.config
        tps = {p: KafkaTopicPartition(topic, p) for p in ends}
        begins = {tp.partition: o for tp, o in self._consumer.beginning_offsets(
            list(tps.values())).items()}
        if cfg.since_ts is not None:
            found = self._consumer.offsets_for_times(
                {tp: int(cfg.since_ts * 1000) for tp in tps.values()})
            return {p: (found[tp].offset if found.get(tp) else ends[p], ends[p])
                    for p, tp in tps.items()}
        sizes = {p: ends[p] - begins[p] for p in ends}
        total = sum(sizes.values())
        take = min(cfg.window_events, total)
        return {p: (ends[p] - (sizes[p] * take // total if total else 0), ends[p])
                for p in ends}

    def read_window(self, ends: dict[int, int] | None = None) -> TrainingWindow:
        ends = self.end_offsets() if ends is None else ends
        offsets = self.window_offsets(ends)
        topic = self.settings.topics.clicks
        by_partition = read_changelog(self.settings, topic, sorted(offsets),
                                      stop_offsets={p: e for p, (_, e) in offsets.items()},
                                      start_offsets={p: s for p, (s, _) in offsets.items()})
        records = [r for p in sorted(by_partition) for r in by_partition[p]]
        # The configured bounds, so the trainer skips exactly what ingest dead-letters.
        return build_window(records, topic, offsets, self.settings.max_event_bytes,
                            bounds=ClickBounds.from_settings(self.settings))

    def read_current_message(self) -> dict[str, Any] | None:
        """The newest valid ``current`` message on ``models`` (the model consumers serve).

        Read like the scorer reads it: a message that does not decode, or is unsigned when
        a secret is set, is skipped (logged), never taken for the serving model; with a
        secret the latest publication wins over a replayed older one at a later offset.
        """
        records = read_changelog(self.settings, self.settings.topics.models,
                                 [0])[0]
        secret = self.settings.control_secret
        found: list[tuple[float, int, ModelAnnouncement]] = []
        for record in records:
            if record.key != b"current" or record.value is None:
                continue
            if not verify_signature(record.headers, secret, MODELS_KIND, record.key,
                                    record.value):
                log.error("skipping an unsigned or forged models message at offset %d",
                          record.offset)
                continue
            try:
                announced = ModelAnnouncement.decode(record.value)
            except BadControl as exc:
                log.error("skipping a malformed models message at offset %d: %s",
                          record.offset, exc.detail)
                continue
            published = announced.published_at if secret and announced.published_at else 0.0
            found.append((published, record.offset, announced))
        return max(found, key=lambda f: f[:2])[2].fields if found else None

    def producer(self) -> KafkaProducer:
        if self._producer is None:
            # kafka-python 3: idempotent with acks=all by default; keep it that way.
            self._producer = kafka_clients.producer(self.settings)
        return self._producer

    def publish(self, message: dict[str, Any]) -> None:
        """Make ``message``'s model ``current`` on ``models``, then have ingest adopt it."""
        producer = self.producer()
        value = json.dumps(message, sort_keys=True).encode()
        headers = sign_headers((), self.settings.control_secret, MODELS_KIND, b"current", value)
        producer.send(self.settings.topics.models, key=b"current", value=value,
                      headers=list(headers)).get(timeout=60)
        # The model serves from here on. If announcing fails (or the trainer dies right
        # here), the online embeddings skip this version and adopt the next one: logged,
        # not raised, so the run still records the model it made current.
        try:
            self.announce_to_ingest(value)
        except Exception:  # noqa: BLE001 - any failure only costs this adoption
            log.exception("model %s is current but was not announced to ingest",
                          message.get("version"))
        producer.flush(timeout=60)

    def announce_to_ingest(self, models_value: bytes) -> int:
        """One ``adopt-model`` control message per ``clicks`` partition, carrying the exact
        ``models`` value; returns how many."""
        topic = self.settings.topics.clicks
        producer = self.producer()
        requests = adopt_model_requests(models_value, producer.partitions_for(topic) or (),
                                        self.settings.control_secret)
        send_control(producer, topic, requests)
        log.info("model %s announced to ingest on %d partitions of %s",
                 ModelAnnouncement.decode(models_value).version, len(requests), topic)
        return len(requests)

    def run_once(self, ends: dict[int, int] | None = None) -> TrainingOutcome:
        """Read the window, train, and publish a promoted model on ``models``."""
        self.last_run_started_at = time.time()
        t0 = time.perf_counter()
        if self.current is None:
            message = self.read_current_message()
            self.current = self.trainer.load_current(message) if message else None
        window = self.read_window(ends)
        read_s = time.perf_counter() - t0
        log.info("training window read", extra={"events": len(window.events),
                                                "bad": window.bad_events, "seconds": read_s,
                                                "forgotten": window.forgotten_events})
        outcome = self.trainer.train(window, self.current)
        outcome.timings["read_window_s"] = round(read_s, 3)
        if outcome.promoted and outcome.message is not None:
            self.publish(outcome.message)
            self.current = self.trainer.load_current(outcome.message)
            log.info("model %s published on %s", outcome.version, self.settings.topics.models,
                     extra={"metrics": outcome.metrics})
        elif outcome.reason == "too_few_events":
            log.info("not training: %d events < min %d", len(window.events),
                     self.trainer.config.min_events)
        outcome.timings["run_s"] = round(time.perf_counter() - t0, 3)
        self.runs.append(outcome)
        return outcome

    def run(self) -> None:
        """Loop until ``stop``: wait for a trigger, run, repeat. A failed run is logged
        and retried at the next trigger (unless the cluster refused us: ``is_fatal``); the
        serving model is never touched by it."""
        message = self.read_current_message()
        self.current = self.trainer.load_current(message) if message else None
        self.started.set()
        if self.on_started is not None:
            self.on_started(None if self.current is None else self.current.version)
        last_run, last_total = time.monotonic(), None if self.current is None else sum(
            self.end_offsets().values())
        while not self._stop.is_set():
            ends = self.end_offsets()
            total = sum(ends.values())
            if self.current is None:
                due = total != last_total and total > 0
            else:
                due = (time.monotonic() - last_run >= self.interval_s and total != last_total
                       or total - (last_total or 0) >= self.every_events
                       or (self.drift_signal is not None and self.drift_signal()))
            if due:
                outcome: TrainingOutcome | None = None
                try:
                    outcome = self.run_once(ends)
                except Exception as exc:  # noqa: BLE001 - one bad run must not end the service
                    if kafka_clients.is_fatal(exc):
                        raise  # refused credentials or ACLs: every later run would fail too
                    log.exception("training run failed; retrying at the next trigger")
                if self.on_run is not None:
                    self.on_run(outcome)
                last_run, last_total = time.monotonic(), total
            self._stop.wait(self.poll_s)
