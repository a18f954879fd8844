"""The whole pipeline in one process, for replay and the demo.

``OnlineSystem`` wraps the very ingest and score processors the Kafka consumers run, so
replay evaluates the production code path (minus the transport): clicks -> ingest ->
user-state -> score -> recommendations, exactly the topics and records a Kafka deployment
would carry. ``streamrec.app.demo`` adds the trainer and the model follower beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection

from streamrec.consumers.ingest import IngestProcessor
from streamrec.consumers.score import ScoreProcessor, encode_request, recommendation_decoder
from streamrec.online_models.base import Ranking
from streamrec.transport.bus import InProcessBus
from streamrec.transport.bus_runner import InProcessRunner
from streamrec.config import Settings
from streamrec.events import ClickEvent, encode_click
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
        # Settings are frozen: the topic names are built once, not on every click.
        self.topics = topics = settings.topics
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
        self.bus.produce(Output(self.topics.clicks, key, encode_click(event)),
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

    def learn_many(self, events: list[ClickEvent]) -> None:
        """Produce a chunk of clicks, then let ingest and the scorer drain it (no deep
        learner: the demo runs the trainer and model follower itself)."""
        clicks = self.topics.clicks
        for event in events:
            self.bus.produce(Output(clicks, event.user_id.encode(), encode_click(event)),
                             int(event.ts * 1000))
        self.ingest.drain()
        self.scorer.drain()
        self._read_recommendations()

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        latest = self._latest.get(user_id)
        if latest is None or (k > len(latest) and len(latest) >= self.settings.top_k):
            latest = self._request(user_id, k)
        return [(item, score) for item, score in latest if item not in exclude][:k]

    def _request(self, user_id: str, k: int) -> list[tuple[str, float]]:
        self._requests += 1
        request = encode_request(f"replay-{self._requests}", user_id, k)
        self.bus.produce(Output(self.topics.requests, user_id.encode(), request))
        self.scorer.drain()
        self._read_recommendations()
        return self._latest.get(user_id, [])

    def _read_recommendations(self) -> None:
        for partition, log in enumerate(self.bus.topic(self.topics.recommendations)):
            start = self._read.get(partition, 0)
            if start == len(log):
                continue  # nothing new on this partition
            for record in log[start:]:
                if record.value is None:
                    continue
                message = recommendation_decoder.decode(record.value)
                self._latest[message.user_id] = [(i.item_id, i.score) for i in message.items]
            self._read[partition] = len(log)


def build_online_system(settings: Settings | None = None, deep: Any = None) -> OnlineSystem:
    return OnlineSystem(settings or Settings(), deep)
