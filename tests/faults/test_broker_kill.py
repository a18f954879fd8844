"""SIGKILL of the broker mid-stream, kept down, then restarted on the same port and data dir:
ingest and scorer, each its own process as an operator runs them, recover on their own, and
the run ends exactly where an uninterrupted run ends.

Two outages: 30 s, and 65 s, over four times the services' transaction timeout (15 s). The
broker is down, so nothing times out during the outage itself: when it returns, the
transactions open at the kill are long expired and its abort check (every second here, not
every 10 s) aborts them, unless a service's next session fences them first.

After recovery, on ``read_committed`` outputs:

- the producer delivered every click, or reported exactly how many it did not (``clicks``
  is read back: delivered = published - failed, none twice);
- the final user states equal an uninterrupted run over the delivered clicks
  (``reference_states``), and no user state applies a source offset twice;
- every trigger is answered exactly once in ``recommendations``.

Each test prints, on a line starting ``broker-kill:``, how long the broker took to come
back and each service's first committed batch after it answered. Run a test on repeat with
``scripts/repeat-broker-kill N``.

On a private broker this module starts and crashes (never the shared one of
``KAFKA_BOOTSTRAP_SERVERS``). A service that does not converge in time gets SIGUSR1 first
(every thread's stack into its log, kept under pytest's tmp_path) and the log tails print.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from consumers.score import recommendation_decoder
from online_models.user_state import decode_state
from producers.publisher import ClickPublisher, PublishError
from producers.synthetic import SyntheticStream
from streamrec.config import Settings
from streamrec.events import ClickEvent, decode_click
from streamrec.kafka_broker_config import pick_free_ports
from streamrec.kafka_launcher import DEFAULT_HOME, KafkaLauncher
from support import (CommitWatch, applied_events, assert_offsets_applied_once, latest_by_key,
                     read_topic, reference_states, settings_with_topics,
                     start_traced_service_process, trigger_ids)

pytestmark = pytest.mark.kafka

N_EVENTS = 9_000
KILL_AFTER_PUBLISHED = 1_500  # the broker dies once this many clicks were handed over
# The broker's own check for expired transactions; the default 10 s would delay recovery.
BROKER_PROPERTIES = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000"}
# Bounds on waiting for the pipeline; none is a speed requirement.
SERVICES_UP_S = 120.0
CONVERGE_S = 240.0


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaLauncher]:
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: the launcher cannot run a broker to kill")
    home = os.environ.get("STREAMREC_KAFKA_HOME") or DEFAULT_HOME
    launcher = KafkaLauncher(home, record_state=False, die_with_parent=True,
                             extra_properties=BROKER_PROPERTIES)
    with launcher:
        yield launcher


@pytest.fixture
def live_broker(broker: KafkaLauncher) -> KafkaLauncher:
    """The module's broker, running: revived first if an earlier test left it down."""
    if broker.status() is None:
        broker.restart()
    return broker


class PacedFeeder(threading.Thread):
    """Publishes ``events`` at ``rate`` per second through the app SDK, outage or not.

    The producer retries for ``retry_s`` (delivery and blocking timeouts), longer than the
    outage, so it should deliver everything; what it could not is in ``publisher.failed``.
    """

    def __init__(self, settings: Settings, events: list[ClickEvent], rate: int,
                 retry_s: float) -> None:
        super().__init__(daemon=True, name="paced-feeder")
        self.events, self.rate, self.retry_s = events, rate, retry_s
        self.publisher = ClickPublisher.from_settings(
            settings, delivery_timeout_ms=int(retry_s * 1000), max_block_ms=int(retry_s * 1000))
        self.error: PublishError | None = None

    def run(self) -> None:
        step = max(1, self.rate // 10)  # ten slices a second
        started = time.monotonic()
        try:
            for i in range(0, len(self.events), step):
                for event in self.events[i:i + step]:
                    self.publisher.publish(event)
                time.sleep(max(0.0, started + (i + step) / self.rate - time.monotonic()))
            self.publisher.flush(timeout=self.retry_s)
        except PublishError as exc:  # reported by the counts; the test reads clicks back
            self.error = exc
        finally:
            with contextlib.suppress(PublishError):
                self.publisher.close(timeout=10)


class Service:
    """One ``streamrec ingest|score`` process, its log file and a watch on its commits."""

    def __init__(self, settings: Settings, name: str, folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        self._log = self.log_path.open("w")
        port = pick_free_ports(1)[0]
        self.process = start_traced_service_process(settings, name, f"{name}-0",
                                                    output=self._log, metrics_port=port)
        self.watch = CommitWatch(port)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n"
                                 f"{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def dump_stacks(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)

    def stop(self) -> int | None:
        self.watch.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.dump_stacks()
                time.sleep(1)
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


@contextlib.contextmanager
def pipeline(settings: Settings, folder: Path) -> Iterator[dict[str, Service]]:
    """Ingest and scorer processes; on a failure inside, their stacks and log tails print."""
    services = {name: Service(settings, name, folder) for name in ("ingest", "score")}
    try:
        yield services
    except BaseException:
        for service in services.values():
            service.dump_stacks()
        time.sleep(1.0)
        for service in services.values():
            print(f"--- {service.name} (log {service.log_path}) ---\n{service.tail(120)}")
        raise
    finally:
        codes = {name: service.stop() for name, service in services.items()}
    assert codes == {"ingest": 0, "score": 0}, (
        f"graceful stop failed: {codes}\n" + "\n".join(s.tail() for s in services.values()))


def wait_for(condition, services: dict[str, Service], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        for service in services.values():
            service.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.2)


def delivered_clicks(settings: Settings, feeder: PacedFeeder) -> list[ClickEvent]:
    """The clicks ``clicks`` holds, in log order per partition, checked against the
    producer's own account: published - failed of them, each once, at offsets 0, 1, 2, ..."""
    published, failed = feeder.publisher.published, feeder.publisher.failed
    records = read_topic(settings, settings.topics.clicks, expect=published - failed,
                         timeout_s=60, idle_s=3.0)
    records.sort(key=lambda r: (r.partition, r.offset))
    counts = Counter(r.partition for r in records)
    assert [(r.partition, r.offset) for r in records] == [
        (p, o) for p in sorted(counts) for o in range(counts[p])], "gaps or extra records"
    events = [decode_click(r.value) for r in records]  # type: ignore[arg-type]
    sent = {e.event_id: e for e in feeder.events[:published]}
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "a click was written twice"
    assert all(sent.get(e.event_id) == e for e in events), "a click that was never published"
    assert len(events) == published - failed, (
        f"the producer reported {failed} of {published} undelivered, but clicks holds "
        f"{len(events)}")
    return events


@pytest.mark.parametrize(("outage_s", "rate"), [(30, 150), (65, 100)],
                         ids=["down-30s", "down-65s-past-txn-timeout"])
def test_broker_sigkill_mid_stream_then_restart_equals_uninterrupted_run(
        live_broker: KafkaLauncher, tmp_path: Path, outage_s: int, rate: int) -> None:
    broker = live_broker
    settings = settings_with_topics(broker.status().bootstrap)  # type: ignore[union-attr]
    events = list(SyntheticStream(n_users=400, n_items=300, n_events=N_EVENTS,
                                  seed=outage_s).events())
    # The stream lasts past the outage, so clicks keep coming before, during and after it.
    assert N_EVENTS / rate > KILL_AFTER_PUBLISHED / rate + outage_s
    with pipeline(settings, tmp_path) as services:
        ingest, score = services["ingest"], services["score"]
        feeder = PacedFeeder(settings, events, rate, retry_s=outage_s + 180.0)
        feeder.start()
        wait_for(lambda: (feeder.publisher.published >= KILL_AFTER_PUBLISHED
                          and ingest.watch.commits() > 0 and score.watch.commits() > 0),
                 services, SERVICES_UP_S, "both services committing under the stream")

        assert broker.kill()
        time.sleep(outage_s)
        for service in services.values():
            service.check_alive()  # a service must ride out the outage, not give up
        restarting = time.monotonic()
        broker.restart()
        back = time.monotonic()

        wait_for(lambda: not feeder.is_alive(), services, feeder.retry_s + 60, "the feeder")
        delivered = delivered_clicks(settings, feeder)
        expected = reference_states(settings, delivered)
        states = read_topic(settings, settings.topics.user_state,
                            until=lambda rs: applied_events(rs) >= len(delivered),
                            timeout_s=CONVERGE_S)
        triggers = trigger_ids(states)
        recommendations = read_topic(settings, settings.topics.recommendations,
                                     expect=len(triggers), timeout_s=CONVERGE_S)
        recovered = {name: s.watch.first_commit_after(back) for name, s in services.items()}
        failures = {name: s.watch.counters("streamrec_commit_failures_total")
                    for name, s in services.items()}

    print(f"broker-kill: outage {outage_s} s, broker back {back - restarting:.1f} s after "
          f"restart(); first commit after it answered: "
          + ", ".join(f"{n} {t:.1f} s" if t is not None else f"{n} never seen"
                      for n, t in recovered.items())
          + f"; producer published {feeder.publisher.published} failed "
          f"{feeder.publisher.failed}; commit failures {failures}")

    final = {r.key.decode(): decode_state(r.value).learned_view()  # type: ignore[union-attr]
             for r in latest_by_key(states).values() if r.value is not None}
    assert final == expected
    assert_offsets_applied_once(states)
    answered = [recommendation_decoder.decode(r.value).trigger_id for r in recommendations]
    duplicated = [t for t, n in Counter(answered).items() if n > 1]
    assert not duplicated, f"{len(duplicated)} triggers answered twice, e.g. {duplicated[:5]}"
    assert set(answered) == triggers, (f"{len(triggers - set(answered))} triggers unanswered, "
                                       f"{len(set(answered) - triggers)} answers to no trigger")
