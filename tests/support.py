"""Helpers shared by the Kafka-facing tests: run services, produce raw bytes, read topics."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable, Iterable, Iterator

from kafka import TopicPartition as KafkaTopicPartition

from streamrec.consumers.ingest import IngestProcessor
from streamrec.transport import kafka_clients
from streamrec.app import services
from streamrec.config import Settings
from streamrec.records import ProcessResult, Record
from streamrec.transport.runtime import ProcessorService


def produce_raw(settings: Settings, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]],
                headers: list[tuple[str, bytes]] | None = None) -> int:
    producer = kafka_clients.producer(settings, linger_ms=5, batch_size=256 * 1024)
    count = 0
    for key, value in messages:
        producer.send(topic, key=key, value=value, headers=headers)
        count += 1
    producer.flush(timeout=60)
    producer.close()
    return count


class _NullableHeaders(list):
    """Headers whose null values the record builder writes as Kafka nulls.

    kafka-python's builder encodes a ``None`` value as a null header, but its future's size
    bookkeeping calls ``len`` on every value unless the header list is falsy.
    """

    def __bool__(self) -> bool:
        return False


def produce_unchecked(settings: Settings, topic: str,
                      records: Iterable[tuple[int, bytes | None, bytes | None, list]]) -> list[int]:
    """Append ``(partition, key, value, headers)`` records in order, as any Kafka client may
    write them; return their offsets.

    Some cannot be written with kafka-python's ``send`` (a record with neither key nor
    value, a header with a null value), so they are appended to the producer's batch
    directly, below those checks.
    """
    producer = kafka_clients.producer(settings, linger_ms=0, max_request_size=2 * 1024 * 1024)
    try:
        producer._wait_on_metadata(topic, 30_000)
        futures = []
        for partition, key, value, headers in records:
            future, *_ = producer._accumulator.append(
                KafkaTopicPartition(topic, partition), int(time.time() * 1000), key, value,
                _NullableHeaders(headers))
            producer._sender.wakeup()
            futures.append(future)
            producer.flush(timeout=30)  # one batch each: keeps the order and the sizes apart
        return [future.get(timeout=30).offset for future in futures]
    finally:
        producer.close()


def read_topic(settings: Settings, topic: str, *, expect: int | None = None,
               until: Callable[[list[Record]], bool] | None = None, timeout_s: float = 90.0,
               idle_s: float = 3.0) -> list[Record]:
    """Read a topic from the beginning with ``read_committed``.

    Stops when ``expect`` records arrived or ``until`` says so (then waits ``idle_s`` more
    to catch anything extra, such as duplicates), or fails after ``timeout_s``.
    """
    consumer = kafka_clients.committed_reader(settings,
                                              max_partition_fetch_bytes=32 * 1024 * 1024)
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [KafkaTopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    done_at: float | None = None
    try:
        while time.monotonic() < deadline:
            records.extend(kafka_clients.to_records(consumer.poll(timeout_ms=250)))
            finished = ((expect is not None and len(records) >= expect)
                        or (until is not None and until(records)))
            if finished and done_at is None:
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at >= idle_s:
                return records
        if expect is None and until is None:
            return records
        raise AssertionError(f"{topic}: got {len(records)} records in {timeout_s:.0f} s"
                             + (f", expected {expect}" if expect is not None else ""))
    finally:
        consumer.close()


def uncommitted_state(settings: Settings, partitions: list[int]) -> list[Record]:
    """The state topic as a read_uncommitted reader sees it: aborted records included."""
    topic = settings.topics.scorer_state
    consumer = kafka_clients.consumer(settings, group_id=None, enable_auto_commit=False,
                                      isolation_level="read_uncommitted")
    try:
        tps = [KafkaTopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Record] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "reading the state topic uncommitted"
            records += kafka_clients.to_records(consumer.poll(timeout_ms=250))
        return records
    finally:
        consumer.close()


def user_records(records: Iterable[Record]) -> list[Record]:
    """user-state records that are about users (not the partitions' model snapshots)."""
    from streamrec.consumers.partition_models import is_snapshot_key

    return [r for r in records if r.key is not None and not is_snapshot_key(r.key)]


def latest_by_key(records: Iterable[Record]) -> dict[bytes, Record]:
    """The latest record per user key (model snapshots left out)."""
    latest: dict[bytes, Record] = {}
    for record in user_records(records):
        latest[record.key] = record  # type: ignore[index]
    return latest


@contextlib.contextmanager
def running_service(service: ProcessorService) -> Iterator[ProcessorService]:
    """Run a ProcessorService in a thread; stop it gracefully on exit and surface errors."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True, name=f"svc-{service.group_id}")
    thread.start()
    try:
        assert service.ready.wait(60), "service did not join its group within 60 s"
        yield service
    finally:
        service.stop()
        thread.join(60)
        if errors:
            raise errors[0]


def ingest_service(settings: Settings, instance: str = "test-0", **kwargs: object) -> ProcessorService:
    return services.ingest_service(settings, instance, **kwargs)


def score_service(settings: Settings, instance: str = "test-0", **kwargs: object) -> ProcessorService:
    return services.score_service(settings, instance, **kwargs)


def security_env(settings: Settings) -> dict[str, str]:
    """``STREAMREC_KAFKA_*`` variables a child ``streamrec`` process connects with."""
    from dataclasses import fields

    env = {}
    for f in fields(settings.kafka_security):
        value = getattr(settings.kafka_security, f.name)
        if value is not None:
            env[f"STREAMREC_KAFKA_{f.name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def service_env(settings: Settings, batch_size: int = 200) -> dict[str, str]:
    """The environment a child ``streamrec`` process gets: connection, topics, groups."""
    return dict(os.environ, **security_env(settings), KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
                STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
                STREAMREC_INGEST_GROUP=settings.ingest_group,
                STREAMREC_SCORE_GROUP=settings.score_group,
                STREAMREC_TRANSACTIONAL_ID_PREFIX=settings.transactional_id_prefix,
                STREAMREC_PARTITIONS=str(settings.partitions), STREAMREC_BATCH_SIZE=str(batch_size),
                STREAMREC_SESSION_TIMEOUT_S=str(settings.session_timeout_s),
                STREAMREC_STALL_AFTER_S=str(settings.stall_after_s),
                STREAMREC_BROKER_SILENCE_S=str(settings.broker_silence_s),
                STREAMREC_EVENT_TIME_IDLE_MS=str(settings.event_time_idle_ms))


def start_service_process(settings: Settings, service: str, instance: str, *, batch_size: int = 200,
                          log_format: str = "text", metrics_port: int = 0,
                          output: IO[str] | int = subprocess.PIPE) -> subprocess.Popen:
    """`streamrec ingest|score` as its own process, as an operator would run it
    (stderr goes with stdout, to ``output``)."""
    return subprocess.Popen([sys.executable, "-m", "streamrec.app.cli", service, "--instance-id",
                             instance, "--log-format", log_format, "--metrics-port", str(metrics_port)],
                            env=service_env(settings, batch_size),
                            stdout=output, stderr=subprocess.STDOUT, text=True)


def start_ingest_process(settings: Settings, instance: str, batch_size: int = 200) -> subprocess.Popen:
    """`streamrec ingest` as its own process, as an operator would run it."""
    return start_service_process(settings, "ingest", instance, batch_size=batch_size)


def reference_states(settings: Settings, events: list) -> dict[str, dict]:
    """Final user states of one uninterrupted run: the processor fed every event once.

    Fed in batches of an arbitrary size (999): by design the result must not depend on
    how a consumer's polls cut the stream.
    """
    from streamrec.transport.bus import partition_for
    from streamrec.events import encode_click

    reference = IngestProcessor(settings)
    offsets: dict[int, int] = {}
    records = []
    for event in events:
        partition = partition_for(event.user_id.encode(), settings.partitions)
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        records.append(Record(settings.topics.clicks, partition, offset, event.user_id.encode(),
                              encode_click(event)))
    for start in range(0, len(records), 999):
        reference.process(records[start:start + 999])
    return {u: s.learned_view() for u, s in reference.all_states().items()}


def assert_offsets_applied_once(records: list[Record]) -> None:
    """Per user, the changelog never applies a source offset twice.

    A user's state may be re-emitted without a new event (a micro-batch of the online
    models moved its embedding): then offset and event count are unchanged. Any new
    offset must come with a higher event count, and offsets never go back.
    """
    from streamrec.online_models.user_state import decode_state

    last: dict[bytes, tuple[int, int]] = {}
    for record in user_records(records):
        if record.value is None or record.key is None:
            last.pop(record.key, None)  # type: ignore[arg-type]
            continue
        state = decode_state(record.value)
        offset, count = last.get(record.key, (-1, 0))
        if state.source_offset == offset:
            assert state.event_count == count, f"user {record.key!r}: offset {offset} applied again"
        else:
            assert state.source_offset > offset and state.event_count > count, (
                f"user {record.key!r}: offset {state.source_offset} after {offset}, "
                f"count {state.event_count} after {count}")
        last[record.key] = (state.source_offset, state.event_count)


def applied_events(records: list[Record]) -> int:
    """How many clicks the latest user states account for (tombstones count nothing)."""
    from streamrec.online_models.user_state import decode_state

    return sum(decode_state(r.value).event_count for r in latest_by_key(records).values()
               if r.value is not None)


def trigger_ids(records: list[Record]) -> set[str]:
    """Event ids that trigger a recommendation: user states that carried new events.

    A state re-emitted by a micro-batch of the online models (same offset, same count: only
    the embedding moved) refreshes the scorer's mirror but triggers nothing.
    """
    from streamrec.online_models.user_state import decode_state

    last: dict[bytes, tuple[int, int]] = {}
    triggers: set[str] = set()
    for record in user_records(records):
        if record.value is None:
            last.pop(record.key, None)  # type: ignore[arg-type]
            continue
        state = decode_state(record.value)
        key = (state.source_offset, state.event_count)
        if last.get(record.key) != key:  # type: ignore[arg-type]
            triggers.add(state.last_event_id)
        last[record.key] = key  # type: ignore[index]
    return triggers


# -- helpers for tests on a private broker they may crash (tests/faults/test_broker_kill.py) ----

def settings_with_topics(bootstrap: str, **overrides: object) -> Settings:
    """Settings on ``bootstrap`` with a fresh topic prefix, groups and transactional ids (as
    the ``kafka_settings`` fixture), every topic created: for tests on a private broker."""
    import uuid

    from streamrec.transport.topics import create_topics

    prefix = f"t{uuid.uuid4().hex[:12]}-"
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix,
                        ingest_group=f"{prefix}ingest", score_group=f"{prefix}score",
                        transactional_id_prefix=prefix.rstrip("-"), **overrides)  # type: ignore[arg-type]
    create_topics(settings)
    return settings


def start_traced_service_process(settings: Settings, service: str, instance: str, *,
                                 output: IO[str], metrics_port: int = 0,
                                 batch_size: int = 200) -> subprocess.Popen:
    """`streamrec ingest|score` as ``start_service_process`` runs it, except that SIGUSR1
    makes it write every thread's stack to ``output`` (``faulthandler``): a test whose
    service never recovers can show where it hangs before it kills it."""
    launch = ("import faulthandler, runpy, signal, sys; "
              "faulthandler.register(signal.SIGUSR1, all_threads=True); "
              "sys.argv[0] = 'streamrec'; "
              "runpy.run_module('streamrec.app.cli', run_name='__main__', alter_sys=True)")
    return subprocess.Popen([sys.executable, "-c", launch, service, "--instance-id", instance,
                             "--log-format", "text", "--metrics-port", str(metrics_port)],
                            env=service_env(settings, batch_size),
                            stdout=output, stderr=subprocess.STDOUT, text=True)


class CommitWatch:
    """Samples a service's count of committed batches a few times a second, in a thread, to
    tell when it committed its first batch after some moment (a broker's restart, say).

    ``CommitWatch.of_process(port)`` scrapes ``streamrec_commits_total`` from the ``/metrics``
    of a ``streamrec ingest|score`` process (a scrape that fails is skipped);
    ``CommitWatch(lambda: service.batches_committed)`` watches an in-process service.
    """

    def __init__(self, commits: Callable[[], float | None], interval_s: float = 0.25,
                 name: str = "commits") -> None:
        self._read = commits
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (time.monotonic(), commits so far)
        self.last_page = ""  # of_process: the latest /metrics page, for ``counters``
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{name}")
        self._thread.start()

    @classmethod
    def of_process(cls, port: int, interval_s: float = 0.25) -> "CommitWatch":
        watch: CommitWatch

        def scrape() -> float | None:
            import urllib.request

            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
                    text = page.read().decode()
            except OSError:
                return None
            watch.last_page = text
            return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("streamrec_commits_total"))

        watch = cls(scrape, interval_s, name=str(port))
        return watch

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            commits = self._read()
            if commits is not None:
                self.samples.append((time.monotonic(), float(commits)))

    def commits(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    def first_commit_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first sample that saw more commits than at it."""
        before = max((c for t, c in self.samples if t <= moment), default=0.0)
        return next((t - moment for t, c in self.samples if t > moment and c > before), None)

    def counters(self, name: str) -> dict[str, float]:
        """The non-zero samples of counter ``name`` on the latest page, by label set."""
        values = {}
        for line in self.last_page.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                labels, value = line[len(name):].rsplit(" ", 1)
                if float(value):
                    values[labels or "{}"] = float(value)
        return values

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def new_topic(bootstrap: str, partitions: int = 4, prefix: str = "test") -> str:
    """A fresh plain topic (no streamrec settings) on ``bootstrap``; returns its name."""
    import uuid

    from kafka.admin import NewTopic

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = kafka_clients.admin(Settings(bootstrap_servers=bootstrap))
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()
    return name


# -- the bus and Kafka compared (tests/integration/test_transport_equivalence.py) ------------

class RecordingIngest(IngestProcessor):
    """Ingest that remembers the (partition, first offset, last offset) of every batch."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.batches: list[tuple[int, int, int]] = []

    def process(self, batch: list[Record]) -> ProcessResult:
        self.batches.append((batch[0].partition, batch[0].offset, batch[-1].offset))
        return super().process(batch)


def equivalence_log(n_events: int = 5_000) -> list:
    """The synthetic click log the bus and Kafka are compared on."""
    from streamrec.producers.synthetic import SyntheticStream

    events = list(SyntheticStream(n_users=300, n_items=400, n_events=n_events, seed=23).events())
    assert len(events) == n_events
    return events


def on_the_bus(settings: Settings, events: list) -> tuple[list, list[tuple[int, int, int]]]:
    """One ingest and one scorer on the ``InProcessBus``: the recommendations they publish,
    and the batches ingest processed."""
    from streamrec.consumers.score import ScoreProcessor, recommendation_decoder
    from streamrec.events import encode_click
    from streamrec.records import Output
    from streamrec.transport.bus import InProcessBus
    from streamrec.transport.bus_runner import InProcessRunner

    topics = settings.topics
    bus = InProcessBus(settings.partitions)
    ingest = RecordingIngest(settings)
    ingest_runner = InProcessRunner(bus, ingest, [topics.clicks], settings.batch_size)
    scorer = InProcessRunner(bus, ScoreProcessor(settings), [topics.user_state, topics.requests],
                             settings.batch_size, restore_to_committed=True)
    for event in events:
        bus.produce(Output(topics.clicks, event.user_id.encode(), encode_click(event)),
                    int(event.ts * 1000))
    ingest_runner.drain()
    scorer.drain()
    return ([recommendation_decoder.decode(r.value) for r in bus.records(topics.recommendations)],
            ingest.batches)


def write_clicks(settings: Settings, events: list) -> None:
    """The whole log on ``clicks``, each click stamped with its event time."""
    from streamrec.events import encode_click

    producer = kafka_clients.producer(settings, linger_ms=5, batch_size=256 * 1024)
    for event in events:
        producer.send(settings.topics.clicks, key=event.user_id.encode(),
                      value=encode_click(event), timestamp_ms=int(event.ts * 1000))
    producer.flush(timeout=60)
    producer.close()


def comparable(message: object) -> tuple:
    """A recommendation's everything but latencies; scores kept as floats (compared to 1e-9)."""
    m: Any = message
    return (m.user_id, m.trigger_id, m.trigger_kind, m.model_version, m.event_ts,
            [item.item_id for item in m.items], [item.score for item in m.items],
            [sorted(item.components.items()) for item in m.items])


def assert_same(kafka: object, bus: object, where: str) -> None:
    import pytest

    got, expected = comparable(kafka), comparable(bus)
    assert got[:6] == expected[:6], f"{where}: {got[:6]} != {expected[:6]}"
    assert got[6] == pytest.approx(expected[6], rel=0, abs=1e-9), f"{where}: scores"
    for got_parts, expected_parts in zip(got[7], expected[7]):
        assert [name for name, _ in got_parts] == [name for name, _ in expected_parts], where
        assert [v for _, v in got_parts] == pytest.approx([v for _, v in expected_parts],
                                                          rel=0, abs=1e-9), f"{where}: parts"


def assert_same_recommendations(kafka_messages: list, bus_messages: list) -> None:
    """Message for message (``assert_same``): per user, in order, then the global order
    (one partition fixes it), each trigger answered once."""
    def by_user(messages: list) -> dict[str, list]:
        users: dict[str, list] = {}
        for message in messages:
            users.setdefault(message.user_id, []).append(message)
        return users

    kafka_users, bus_users = by_user(kafka_messages), by_user(bus_messages)
    assert kafka_users.keys() == bus_users.keys()
    for user, expected in bus_users.items():
        got = kafka_users[user]
        assert [m.trigger_id for m in got] == [m.trigger_id for m in expected], user
        for n, (k, b) in enumerate(zip(got, expected)):
            assert_same(k, b, f"{user} #{n} ({b.trigger_id})")
    assert len(kafka_messages) == len(bus_messages)
    assert [m.trigger_id for m in kafka_messages] == [m.trigger_id for m in bus_messages]
