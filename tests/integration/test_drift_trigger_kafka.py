"""A scorer's ``drift`` message on ``models`` makes the trainer's drift signal fire, once.

The drift messages are written as the scorer writes them: the value of
``ScoreDriftReporter``, inside a transaction. The signal is wired as ``streamrec train``
wires it (``DriftTrigger`` reading ``TrainerService.last_run_started_at``); no model is
trained, the service's loop is not started: only its signal is polled.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from kafka import KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from streamrec.consumers.drift_signal import DRIFT_KEY, HitRateDrift, encode_drift
from streamrec.consumers.drift_trigger import DriftTrigger
from streamrec.consumers.train_service import TrainerService
from streamrec.transport import kafka_clients
from streamrec.config import Settings


def scorer_producer(settings: Settings) -> KafkaProducer:
    producer = kafka_clients.producer(
        settings, transactional_id=f"{settings.transactional_id_prefix}-drift-test")
    producer.init_transactions()
    return producer


def publish_drift(producer: KafkaProducer, settings: Settings, *, commit: bool = True,
                  direction: str = "drop", detected_at_s: float | None = None) -> None:
    detected_ms = int((time.time() if detected_at_s is None else detected_at_s) * 1000)
    value = encode_drift(HitRateDrift(direction, 0.3, 0.08, 1024, 96, 1120),
                         detected_at_ms=detected_ms, scorer_group=settings.score_group_id,
                         partitions=[0, 1])
    producer.begin_transaction()
    # .get(): the record reaches the broker (an abort before that would just drop it).
    offset = producer.send(settings.topics.models, key=DRIFT_KEY, value=value,
                           partition=0).get(timeout=30).offset
    if commit:
        producer.commit_transaction()
    else:
        producer.abort_transaction()
    wait_until_stable_past(settings, offset)


def wait_until_stable_past(settings: Settings, offset: int, timeout_s: float = 30.0) -> None:
    """Block until read_committed readers see past ``offset``: the broker writes the
    commit / abort marker after ``commit_transaction`` returns."""
    consumer = kafka_clients.committed_reader(settings)
    tp = KafkaTopicPartition(settings.topics.models, 0)
    deadline = time.monotonic() + timeout_s
    try:
        while consumer.end_offsets([tp])[tp] <= offset:
            assert time.monotonic() < deadline, f"offset {offset} of models never became stable"
            time.sleep(0.05)
    finally:
        consumer.close()


def test_a_drift_message_on_models_fires_the_trainers_drift_signal_once(kafka_settings) -> None:
    settings = kafka_settings
    service = TrainerService(settings, trainer=SimpleNamespace(), poll_s=0.1)  # type: ignore[arg-type]
    trigger = DriftTrigger(settings, last_run_started=lambda: service.last_run_started_at)
    service.drift_signal = trigger
    producer = scorer_producer(settings)
    try:
        assert service.drift_signal() is False  # empty models topic

        publish_drift(producer, settings, commit=False)  # an aborted scorer batch
        assert service.drift_signal() is False

        publish_drift(producer, settings)
        assert service.drift_signal() is True
        assert service.drift_signal() is False  # the same message never fires again

        publish_drift(producer, settings, direction="rise")
        assert service.drift_signal() is False

        # Detected before the last run started: that run's data covered it.
        service.last_run_started_at = time.time()
        publish_drift(producer, settings, detected_at_s=service.last_run_started_at - 5)
        assert service.drift_signal() is False
        publish_drift(producer, settings)  # detected after it: retrain again
        assert service.drift_signal() is True
        assert trigger.rule.fired == 2

        # A model promoted after the drop: the drop concerned the model it replaced.
        publish_drift(producer, settings)
        producer.begin_transaction()
        offset = producer.send(settings.topics.models, key=b"current", value=b'{"version": "v9"}',
                               partition=0).get(timeout=30).offset
        producer.commit_transaction()
        wait_until_stable_past(settings, offset)
        assert service.drift_signal() is False
    finally:
        producer.close()
        trigger.close()
        service.close()


def test_a_restarted_trainer_acts_on_a_drop_published_while_it_was_down(kafka_settings) -> None:
    settings = kafka_settings
    producer = scorer_producer(settings)
    try:
        producer.begin_transaction()
        producer.send(settings.topics.models, key=b"current", value=b'{"version": "v1"}',
                      partition=0)
        producer.commit_transaction()
        publish_drift(producer, settings)
    finally:
        producer.close()
    trigger = DriftTrigger(settings)  # a new process: reads models from the beginning
    try:
        assert trigger() is True and trigger() is False
    finally:
        trigger.close()
