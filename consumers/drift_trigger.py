"""The trainer's drift trigger: retrain when a scorer publishes a drop of its hit-rate.

Scorers put a ``drift`` message on ``models`` when ADWIN sees their online hit-rate drop
(``streamrec.consumers.score_drift``). ``DriftTrigger`` is the ``drift_signal`` of ``TrainerService``:
polled between runs, it reads what is new on ``models`` and returns True once for a drop
that is newer than both

- the serving model: a ``current`` message after the drift (in the single partition's
  order) means a newer model serves already, and the drop was measured on an older one;
- the start of the trainer's last run: that run read clicks up to its start, so it
  covered the drop already (this also covers a run started by the interval or event
  count while a drift message was on its way).

It reads ``read_committed``: scorers write drift messages inside their batch transaction,
and an aborted batch (replayed after a crash) must not retrain anything. A restarted
trainer reads ``models`` from the beginning (compacted: a handful of records), so a drop
published while it was down still triggers one run.

With a control secret set, a ``drift`` or ``current`` record counts only if its signature
verifies (``streamrec.signing``): anyone else writing to ``models`` can neither trigger
runs nor cancel a pending one.

Times are wall-clock milliseconds: the scorer's ``detected_at_ms`` against the trainer's
run start. Hosts a few seconds apart can at worst mistake a drift detected right as a run
started for one it covered (or the reverse): one run too few or too many.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from kafka import TopicPartition as KafkaTopicPartition

from streamrec.consumers.drift_signal import DRIFT_KEY, DROP, DriftMessage, decode_drift
from streamrec.consumers.model_follower import CURRENT_KEY
from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.signing import MODELS_KIND, verify_signature

log = logging.getLogger(__name__)


class RetrainOnDrift:
    """The rule, without Kafka: feed ``models`` records in order, then ask ``due``.

    >>> rule = RetrainOnDrift()
    >>> rule.offer(b"drift", b'{"detected_at_ms": 2000, "scorer_group": "g", "partitions": [0],'
    ...            b' "direction": "drop", "hit_rate_before": 0.3, "hit_rate_after": 0.1,'
    ...            b' "events_before": 500, "events_after": 40, "events": 540}')
    >>> rule.due(last_run_started_s=1.0), rule.due(last_run_started_s=1.0)
    (True, False)
    """

    def __init__(self, secret: str = "") -> None:
        self.pending: DriftMessage | None = None  # the newest drop not yet acted on
        self.fired = 0
        self.secret = secret
        self.unsigned = 0  # records refused for a missing or wrong signature

    def offer(self, key: bytes | None, value: bytes | None,
              headers: Iterable[tuple[str, bytes]] = ()) -> None:
        """One ``models`` record, in offset order."""
        if (key in (CURRENT_KEY, DRIFT_KEY) and value is not None
                and not verify_signature(headers, self.secret, MODELS_KIND, key, value)):
            self.unsigned += 1
            log.warning("ignoring an unsigned or forged %r message on models", key)
            return
        if key == CURRENT_KEY and value is not None:
            self.pending = None  # a newer model serves: the drop was measured on an older one
        elif key == DRIFT_KEY and value is not None:
            try:
                message = decode_drift(value)
            except ValueError as exc:
                log.warning("ignoring a malformed drift message on models: %s", exc)
                return
            if message.direction == DROP:  # a rise is no reason to retrain
                self.pending = message

    def due(self, last_run_started_s: float | None) -> bool:
        """True once per drop newer than the last run's start (None: no run yet)."""
        message, self.pending = self.pending, None
        if message is None:
            return False
        if last_run_started_s is not None and message.detected_at_ms <= last_run_started_s * 1000:
            return False  # that run read the clicks of the drop already
        self.fired += 1
        log.info("drift triggers this training run: scorer %s (partitions %s) hit rate "
                 "%.3f -> %.3f over %d events", message.scorer_group, message.partitions,
                 message.hit_rate_before, message.hit_rate_after, message.events_after,
                 extra={"drift_detected_at_ms": message.detected_at_ms})
        return True


class DriftTrigger:
    """``RetrainOnDrift`` fed from ``models``; call it as ``TrainerService``'s drift_signal.

    ``last_run_started`` returns the wall-clock start (epoch seconds) of the trainer's last
    run, or None before the first.
    """

    def __init__(self, settings: Settings,
                 last_run_started: Callable[[], float | None] = lambda: None, *,
                 read_timeout_s: float = 10.0) -> None:
        self.rule = RetrainOnDrift(settings.control_secret)
        self.last_run_started = last_run_started
        self.read_timeout_s = read_timeout_s
        self._tp = KafkaTopicPartition(settings.topics.models, 0)
        self._consumer = kafka_clients.committed_reader(settings)
        self._consumer.assign([self._tp])
        self._consumer.seek_to_beginning(self._tp)

    def __call__(self) -> bool:
        try:
            self.read_new()
        except Exception as exc:  # noqa: BLE001 - a broker hiccup must not end the trainer's loop
            if kafka_clients.is_fatal(exc):
                raise  # refused credentials or ACLs: retrying at every poll cannot help
            log.warning("reading drift messages on models failed; retrying at the next poll",
                        exc_info=True)
            return False
        return self.rule.due(self.last_run_started())

    def read_new(self) -> int:
        """Feed every record up to the last stable offset of ``models``; how many were read."""
        end = self._consumer.end_offsets([self._tp])[self._tp]
        deadline = time.monotonic() + self.read_timeout_s
        read = 0
        # Transaction markers take offsets but yield no record: progress is the position.
        while self._consumer.position(self._tp) < end and time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200).values():
                for record in records:
                    self.rule.offer(record.key, record.value, record.headers or ())
                    read += 1
        return read

    def close(self) -> None:
        self._consumer.close()
