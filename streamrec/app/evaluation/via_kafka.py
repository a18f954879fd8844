"""Replay through the real Kafka path (``streamrec replay --via-kafka``).

The log is produced into ``clicks`` with ``ClickPublisher`` (event-time order, paced or as
fast as possible) while a reader follows ``recommendations`` (``read_committed``: only what
the scorer committed, as an app would see it). The ingest and score services do the work:
already running against the same bootstrap and topic prefix, or started here in threads
(``start_services``). The evaluator stamps each event with the wall time it produced it and
each recommendation with the wall time it received it, so end-to-end latency is measured
by one clock: click produced -> recommendation received.

Prequential rule on this path: an event is a hit if its item is in the latest
recommendation for its user received *before the event was produced* (see
``via_kafka_scoring.HIT_RULE``). The run is complete when every event is produced and the
recommendation triggered by every user's last event has arrived; a timeout names how many
users are still missing one.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, Sequence

from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaError

from streamrec.transport import kafka_clients
from streamrec.config import Settings
from streamrec.app.evaluation.prequential import EvaluationResult
from streamrec.app.evaluation.via_kafka_scoring import ReceivedRecommendation, score_via_kafka
from streamrec.events import ClickEvent
from streamrec.progress import Progress


class ViaKafkaError(RuntimeError):
    """The Kafka replay could not run or finish; the message says why and what to do."""


def replay_prefix() -> str:
    """A fresh topic prefix, so a replay never mixes with production or another replay."""
    return f"replay-{uuid.uuid4().hex[:8]}-"


@dataclass(frozen=True)
class ViaKafkaOptions:
    """How to drive the replay: pacing, who runs the services, how long to wait."""

    speed: float | None = None  # None = as fast as possible, else event time x speed
    start_services: bool = False
    timeout_s: float = 120.0  # for the last recommendations, after the last event is produced
    progress: bool = True


class RecommendationReader:
    """Follows ``recommendations`` in a thread and keeps, per user, the latest one received.

    Positions are fixed at the end of every partition before producing starts, so nothing
    older than this replay is read even when the topics are reused.
    """

    def __init__(self, settings: Settings) -> None:
        self.received: list[ReceivedRecommendation] = []
        self.trigger_ids: set[str] = set()
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        topic = settings.topics.recommendations
        self._consumer = kafka_clients.committed_reader(settings)
        partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [KafkaTopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)
        for tp in tps:
            self._consumer.position(tp)  # resolve now: later records are all ours
        self._thread = threading.Thread(target=self._run, daemon=True, name="replay-reader")

    def start(self) -> "RecommendationReader":
        self._thread.start()
        return self

    def latest_index(self, user_id: str) -> int:
        """Index in ``received`` of the user's latest recommendation so far, or -1."""
        with self._lock:
            return self._latest.get(user_id, -1)

    def snapshot(self) -> list[ReceivedRecommendation]:
        """Everything received so far, in receive order."""
        with self._lock:
            return list(self.received)

    def count_triggers(self, trigger_ids: set[str]) -> tuple[int, int]:
        """(how many of ``trigger_ids`` have arrived, recommendations received in all)."""
        with self._lock:
            return len(trigger_ids & self.trigger_ids), len(self.received)

    def _run(self) -> None:
        from streamrec.consumers.score import recommendation_decoder
        try:
            while not self._stop.is_set():
                for messages in self._consumer.poll(timeout_ms=100).values():
                    now = time.time()  # one stamp per fetched batch: they arrived together
                    for m in messages:
                        rec = recommendation_decoder.decode(m.value)
                        kept = ReceivedRecommendation(
                            rec.user_id, rec.trigger_id, tuple(i.item_id for i in rec.items),
                            now, rec.end_to_end_ms, rec.score_ms, rec.scored_at_ms)
                        with self._lock:
                            self._latest[rec.user_id] = len(self.received)
                            self.received.append(kept)
                            self.trigger_ids.add(rec.trigger_id)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the waiting thread
            self.error = exc

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._consumer.close()


@contextlib.contextmanager
def in_process_services(settings: Settings) -> Iterator[list[BaseException]]:
    """Run ingest and score (``ProcessorService``) in threads with this run's own groups.

    Yields the list their errors land in, so the waiting loop can fail fast.
    """
    from streamrec.transport.runtime import ProcessorService
    from streamrec.app.services import ingest_service, score_service

    run = uuid.uuid4().hex[:8]
    services = [
        ingest_service(settings, "replay", group_id=f"{settings.ingest_group_id}-replay-{run}"),
        score_service(settings, "replay", group_id=f"{settings.score_group_id}-replay-{run}"),
    ]
    errors: list[BaseException] = []

    def target(service: ProcessorService) -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(s,), daemon=True,
                                name=f"replay-{s.group_id}") for s in services]
    for thread in threads:
        thread.start()
    try:
        for service in services:
            if not service.ready.wait(60) and not errors:
                raise ViaKafkaError(f"service {service.group_id} did not start within 60 s")
        # Produce only once both groups own their partitions, or the first events would
        # measure the group join instead of the pipeline.
        _wait_for_stable_groups(settings, [s.group_id for s in services], errors)
        yield errors
    finally:
        for service in services:
            service.stop()
        for thread in threads:
            thread.join(30)


def _wait_for_stable_groups(settings: Settings, group_ids: list[str],
                            errors: list[BaseException], timeout_s: float = 30.0) -> None:
    """Wait until every group is ``Stable`` with members (best effort: never fatal)."""
    admin = kafka_clients.admin(settings, client_id="streamrec-replay")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not errors:
            groups = admin.describe_groups(group_ids)
            if all(g.get("group_state") == "Stable" and g.get("members")
                   for g in groups.values()):
                return
            time.sleep(0.05)
    finally:
        admin.close()


def run_replay_via_kafka(events: Sequence[ClickEvent], settings: Settings, ks: Sequence[int],
                         window: int, options: ViaKafkaOptions) -> EvaluationResult:
    """Replay ``events`` (event-time order) through Kafka and score what comes back.

    ``settings`` carries the bootstrap servers and the topic prefix; the topics are created
    (idempotently) first. Raises ``ViaKafkaError`` if the broker cannot be reached, a
    service fails, or the last recommendations do not arrive within the timeout.
    """
    from streamrec.producers.publisher import ClickPublisher, PublishError
    from streamrec.producers.replay import replay
    from streamrec.transport.topics import create_topics

    from streamrec.app.kafka_launcher import probe

    # Seconds, not a 30 s client timeout; refused credentials raise KafkaAccessError.
    unreachable = probe(settings.bootstrap_servers, settings.kafka_security)
    if unreachable is not None:
        raise ViaKafkaError(f"cannot reach Kafka at {settings.bootstrap_servers}: "
                            f"{unreachable!r}")
    try:
        create_topics(settings, timeout_s=30.0)
    except (KafkaError, OSError) as exc:
        raise ViaKafkaError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc!r}") from exc
    last_of_user = {e.user_id: e.event_id for e in events}
    produced_s: list[float] = []
    in_effect: list[int] = []
    services = in_process_services(settings) if options.start_services else _no_services()
    reader = RecommendationReader(settings)
    try:
        with services as errors:
            reader.start()
            with ClickPublisher.from_settings(settings) as publisher:

                def produce(event: ClickEvent) -> None:
                    # Look up what the app would show *before* the click leaves: the hit rule.
                    in_effect.append(reader.latest_index(event.user_id))
                    produced_s.append(time.time())
                    publisher.publish(event)

                progress = Progress(len(events), label="via-kafka produce",
                                    enabled=options.progress)
                replay(events, produce, options.speed, progress=progress)
            _wait_for_last(reader, errors, last_of_user, settings, options)
    except PublishError as exc:
        raise ViaKafkaError(f"producing to {settings.topics.clicks!r} failed: {exc}") from exc
    finally:
        reader.close()
    result, _ = score_via_kafka(events, produced_s, in_effect, reader.snapshot(), ks, window)
    return result


@contextlib.contextmanager
def _no_services() -> Iterator[list[BaseException]]:
    yield []


def _wait_for_last(reader: RecommendationReader, errors: list[BaseException],
                   last_of_user: dict[str, str], settings: Settings,
                   options: ViaKafkaOptions) -> None:
    """Block until each user's last event has triggered a received recommendation."""
    expected = set(last_of_user.values())
    progress = Progress(len(expected), label="via-kafka awaiting last recommendations",
                        enabled=options.progress)
    deadline = time.monotonic() + options.timeout_s
    done = 0
    with progress:
        while True:
            if errors:
                raise ViaKafkaError(f"an in-process service failed: {errors[0]!r}") from errors[0]
            if reader.error is not None:
                raise ViaKafkaError(f"reading recommendations failed: {reader.error!r}")
            now_done, received = reader.count_triggers(expected)
            progress.update(now_done - done)
            done = now_done
            if done == len(expected):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    hint = ("" if options.start_services else
            f"; are ingest and score running against {settings.bootstrap_servers} with "
            f"topic prefix {settings.topic_prefix!r}? (or pass --start-services)")
    raise ViaKafkaError(
        f"timed out after {options.timeout_s:.0f} s: {len(expected) - done:,} of "
        f"{len(expected):,} users have no recommendation for their last event "
        f"({received:,} recommendations received){hint}")
