"""The whole pipeline in one process: the online system for replay, and the demo.

``OnlineSystem`` wraps the very ingest and score processors the Kafka consumers run, so
replay evaluates the production code path (minus the transport). ``run_demo`` pushes a
synthetic stream through the in-process bus: clicks -> ingest -> user-state -> score ->
recommendations, exactly the topics and records a Kafka deployment would carry.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Collection

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor, encode_request, recommendation_decoder
from streamrec.online_models.base import Ranking
from streamrec.transport.bus import InProcessBus
from streamrec.transport.bus_runner import InProcessRunner
from streamrec.config import Settings
from streamrec.events import ClickEvent, encode_click
from streamrec.progress import Progress
from streamrec.records import Output

if TYPE_CHECKING:  # streamrec.export.serving loads onnxruntime: only replay with a deep model needs it
    from streamrec.export.serving import OnnxSequenceModel


class OnlineSystem:
    """Ingest and score on the in-process bus, as one ``Recommender`` for replay.

    The production path with the transport swapped: a click is produced on ``clicks``, the
    ingest runner turns it into ``user-state`` records (states and model snapshots), the
    scorer runner reads them and publishes on ``recommendations``, exactly as on Kafka
    (``streamrec.transport.bus_runner``: same processors, same lifecycle, polls of at most
    ``batch_size``). The scorer knows ingest's models only from the snapshots on
    ``user-state``, never from shared objects. ``recommend`` answers with what an app would
    hold: the latest recommendation published for the user; for a user without one (or a
    ``k`` larger than published) it asks the way an app does, with a request on
    ``requests``, and reads the answer.

    With ``deep`` (a ``DeepSequentialRecommender``, the trainer's replay counterpart that
    retrains on event time on the past only), each model it releases is served by the
    scorer as the Kafka scorer's model follower does (``swap_deep``).
    """

    def __init__(self, settings: Settings, deep: Any = None) -> None:
        self.settings = settings
        topics = settings.topics
        self.bus = InProcessBus(settings.partitions)
        self.ingest_processor = IngestProcessor(settings)
        self.score = ScoreProcessor(settings, clock=lambda: 0.0)
        self.ingest = InProcessRunner(self.bus, self.ingest_processor, [topics.clicks],
                                      settings.batch_size)
        self.scorer = InProcessRunner(self.bus, self.score, [topics.user_state, topics.requests],
                                      settings.batch_size, restore_to_committed=True)
        self.deep = deep
        self._served: OnnxSequenceModel | None = None  # the deep model the scorer holds
        self._latest: dict[str, list[tuple[str, float]]] = {}
        self._read: dict[int, int] = {}  # recommendations read so far, per partition
        self._requests = 0

    def learn_one(self, event: ClickEvent) -> None:
        key = event.user_id.encode()
        # The record time of a replayed click is its event time: the ts bound then holds.
        self.bus.produce(Output(self.settings.topics.clicks, key, encode_click(event)),
                         int(event.ts * 1000))
        self.ingest.drain()
        self.scorer.drain()
        self._read_recommendations()
        if self.deep is not None:
            self.deep.learn_one(event)  # retrains when due, on the events so far only
            if self.deep.serving is not None and self.deep.serving is not self._served:
                from streamrec.export.candidates import DeepCandidateGenerator  # replay-only import
                self._served = self.deep.serving
                self.score.swap_deep(DeepCandidateGenerator(self._served,
                                                            self.score.deep_candidates))

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        latest = self._latest.get(user_id)
        if latest is None or (k > len(latest) and len(latest) >= self.settings.top_k):
            latest = self._request(user_id, k)
        return [(item, score) for item, score in latest if item not in exclude][:k]

    def _request(self, user_id: str, k: int) -> list[tuple[str, float]]:
        self._requests += 1
        request = encode_request(f"replay-{self._requests}", user_id, k)
        self.bus.produce(Output(self.settings.topics.requests, user_id.encode(), request))
        self.scorer.drain()
        self._read_recommendations()
        return self._latest.get(user_id, [])

    def _read_recommendations(self) -> None:
        for partition, log in enumerate(self.bus.topic(self.settings.topics.recommendations)):
            start = self._read.get(partition, 0)
            for record in log[start:]:
                if record.value is None:
                    continue
                message = recommendation_decoder.decode(record.value)
                self._latest[message.user_id] = [(i.item_id, i.score) for i in message.items]
            self._read[partition] = len(log)


def build_online_system(settings: Settings | None = None, deep: Any = None) -> OnlineSystem:
    return OnlineSystem(settings or Settings(), deep)


@dataclass
class DemoResult:
    events: int
    seconds: float
    recommendations: int
    users_with_recommendations: int
    hit_rate: float
    oracle_hit_rate: float
    hit_rate_vs_oracle: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def run_demo(settings: Settings, *, users: int = 2_000, items: int = 1_000, events: int = 100_000,
             seed: int = 7, chunk: int = 1_000, show_users: int = 3,
             out: IO[str] = sys.stdout) -> DemoResult:
    """Run the synthetic stream through ingest and score on the in-process bus.

    HR@K is measured live and prequentially: an event is a hit if its item was in the
    recommendation the user had *before* the event; only a user's first click on an item is
    judged (seen items are never recommended). The oracle (the generator's true top-K
    among unseen items) gives the ceiling next to it.
    """
    from streamrec.producers.synthetic import SyntheticStream  # the generator is a producers concern

    k = settings.top_k
    stream = SyntheticStream(n_users=users, n_items=items, n_events=events, seed=seed)
    bus = InProcessBus(settings.partitions)
    topics = settings.topics
    ingest = InProcessRunner(bus, IngestProcessor(settings), [topics.clicks], settings.batch_size)
    score = InProcessRunner(bus, ScoreProcessor(settings), [topics.user_state, topics.requests],
                            settings.batch_size, restore_to_committed=True)
    latest: dict[str, set[str]] = {}
    seen: dict[str, set[str]] = {}
    read_positions: dict[int, int] = {}  # recommendations read so far, per partition
    hits = oracle_hits = judged = oracle_checks = 0
    out.write(f"streamrec demo: {events:,} synthetic events, {users:,} users, {items:,} items, "
              f"{settings.partitions} partitions, in-process bus\n")
    started = time.perf_counter()
    progress = Progress(events, "events")
    pending: list[ClickEvent] = []
    for index, event in enumerate(stream.events()):
        user_seen = seen.setdefault(event.user_id, set())
        # Recommendations exclude seen items, so a repeat click can never be a hit: judge
        # only first clicks on an item, as replay does.
        if event.user_id in latest and event.item_id not in user_seen:
            judged += 1
            hits += event.item_id in latest[event.user_id]
            # The oracle is costly (a pass over all items): check a sample of events.
            if judged % 20 == 0:
                oracle_checks += 1
                truth = stream.ground_truth_top(event.user_id, k, exclude=user_seen, at_event=index)
                oracle_hits += event.item_id in truth
        user_seen.add(event.item_id)
        pending.append(event)
        if len(pending) >= chunk or index == events - 1:
            for e in pending:
                bus.produce(Output(topics.clicks, e.user_id.encode(), encode_click(e)))
            progress.update(len(pending))
            pending.clear()
            ingest.drain()
            score.drain()
            # Only what arrived since the last chunk, partition by partition.
            for partition, log in enumerate(bus.topic(topics.recommendations)):
                for record in log[read_positions.get(partition, 0):]:
                    if record.value is None:
                        continue  # a tombstone recommends nothing
                    message = recommendation_decoder.decode(record.value)
                    latest[message.user_id] = {item.item_id for item in message.items}
                read_positions[partition] = len(log)
            if (index + 1) % max(chunk, events // 4) < chunk or index == events - 1:
                _show_users(out, bus, topics.recommendations, show_users, index + 1)
    progress.close()
    seconds = time.perf_counter() - started
    result = DemoResult(
        events=events, seconds=seconds, recommendations=bus.size(topics.recommendations),
        users_with_recommendations=len(latest),
        hit_rate=hits / judged if judged else 0.0,
        oracle_hit_rate=oracle_hits / oracle_checks if oracle_checks else 0.0,
        hit_rate_vs_oracle=0.0)
    result.hit_rate_vs_oracle = result.hit_rate / result.oracle_hit_rate if result.oracle_hit_rate else 0.0
    out.write(
        f"\ndone: {events:,} events in {seconds:.1f} s ({result.events_per_second:,.0f} events/s), "
        f"{result.recommendations:,} recommendations for {result.users_with_recommendations:,} users\n"
        f"HR@{k} (live, prequential, {judged:,} events judged): {result.hit_rate:.4f}   "
        f"oracle HR@{k} (true tastes, {oracle_checks:,} sampled): {result.oracle_hit_rate:.4f}   "
        f"ratio {result.hit_rate_vs_oracle:.2f}\n")
    return result


def _show_users(out: IO[str], bus: InProcessBus, topic: str, how_many: int, at_event: int) -> None:
    records = bus.records(topic)
    shown: set[str] = set()
    out.write(f"\n  live recommendations after {at_event:,} events:\n")
    for record in reversed(records):
        if len(shown) >= how_many:
            break
        if record.value is None:
            continue  # a tombstone recommends nothing
        message = recommendation_decoder.decode(record.value)
        if message.user_id in shown:
            continue
        shown.add(message.user_id)
        top = ", ".join(f"{i.item_id} ({i.score:.2f})" for i in message.items[:5])
        out.write(f"    {message.user_id:>8} <- {top}  [model {message.model_version}, "
                  f"trigger {message.trigger_id}]\n")
