"""Score: mirror user states, rank on every state change or request, publish recommendations.

The scorer consumes ``user-state`` (and ``requests``), keeps a mirror of its partitions'
users, learns item popularity from the deltas each state message carries, and for every
trigger publishes one recommendation: top-K excluding everything the user has seen, with
the component scores of each item so that it can be explained.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable, Iterable

import msgspec

from consumers.partition_models import SNAPSHOT_KEY, load_snapshot
from online_models.popularity import PopularityRecency
from online_models.user_state import UserState, decode_state
from streamrec.config import Settings
from streamrec.events import BadEvent, dead_letter
from streamrec.records import Output, ProcessResult, Record

log = logging.getLogger(__name__)

POPULARITY_MODEL_VERSION = "popularity"
ONLINE_MODEL_VERSION = "online-blend"


class RecommendationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An explicit request on ``requests``, keyed by user_id."""

    request_id: str
    user_id: str
    k: int | None = None
    exclude_items: list[str] = []


class ScoredItem(msgspec.Struct, frozen=True):
    item_id: str
    score: float
    components: dict[str, float]


class Recommendation(msgspec.Struct, kw_only=True):
    """One message on ``recommendations``."""

    user_id: str
    trigger_id: str
    trigger_kind: str  # "event" (a state change) or "request"
    model_version: str
    items: list[ScoredItem]
    event_ts: float
    # Milliseconds: click produced -> recommendation ranked, and ranking alone.
    end_to_end_ms: float | None
    score_ms: float
    scored_at_ms: int


_request_decoder = msgspec.json.Decoder(RecommendationRequest)
_encoder = msgspec.json.Encoder()
recommendation_decoder = msgspec.json.Decoder(Recommendation)


class ScoreProcessor:
    """Pure scoring logic over user-state and request records."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.changelog_topic = self.topics.user_state
        self._clock = clock
        self._mirror: dict[int, dict[str, UserState]] = {}
        # Per partition: the latest snapshot of ingest's online models, and its offset.
        self._models: dict[int, object] = {}
        self._model_offsets: dict[int, int] = {}
        self.popularity = PopularityRecency(half_life_s=settings.popularity_half_life_s)
        self.rejected_by_reason: Counter[str] = Counter()

    # -- state lifecycle -------------------------------------------------------------------
    def restore(self, partition: int, changelog: Iterable[Record]) -> int:
        """Rebuild the mirror of one partition (and warm popularity) from ``user-state``."""
        users = self._mirror.setdefault(partition, {})
        for record in changelog:
            self._apply_state_record(record, users)
        return len(users)

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._mirror.pop(partition, None)
            self._models.pop(partition, None)

    def state_of(self, user_id: str) -> UserState | None:
        located = self._locate(user_id)
        return None if located is None else located[1]

    def use_models(self, partition: int, blend: object) -> None:
        """Rank the partition's users with these online models (replay shares ingest's)."""
        self._models[partition] = blend

    def _locate(self, user_id: str) -> tuple[int, UserState] | None:
        for partition, users in self._mirror.items():
            if user_id in users:
                return partition, users[user_id]
        return None

    # -- the work ----------------------------------------------------------------------------
    def process(self, batch: list[Record], publish: bool = True) -> ProcessResult:
        """Apply state changes and answer triggers; ``publish=False`` only applies them."""
        result = ProcessResult()
        for record in batch:
            if record.topic == self.topics.requests:
                output = self._answer_request(record) if publish else None
            elif not publish:
                self._apply_state_record(record, self._mirror.setdefault(record.partition, {}))
                continue
            else:
                output = self._on_state(record)
            if output is None:
                continue
            if output.topic == self.topics.dlq:
                result.rejected += 1
            else:
                result.processed += 1
            result.outputs.append(output)
        return result

    def rank(self, user_id: str, k: int, exclude: Iterable[str] = ()
             ) -> list[tuple[str, float, dict[str, float]]]:
        """Top-k for a user, excluding seen items and ``exclude``; never mutates learned state."""
        return self.rank_with_version(user_id, k, exclude)[0]

    def rank_with_version(self, user_id: str, k: int, exclude: Iterable[str] = ()
                          ) -> tuple[list[tuple[str, float, dict[str, float]]], str]:
        located = self._locate(user_id)
        excluded = set(exclude)
        blend = None
        if located is not None:
            partition, state = located
            excluded.update(state.seen_items)
            blend = self._models.get(partition)
            if blend is not None:
                # The snapshot is older than the user's state: bring the user up to date
                # (vector, recent items) before ranking. Item-side parameters are untouched.
                blend.apply_user_state(user_id, state.embedding, state.recent_items)  # type: ignore[attr-defined]
        if blend is not None:
            ranked = blend.recommend_explained(user_id, k, excluded)  # type: ignore[attr-defined]
            if len(ranked) >= min(k, 1):
                return ranked, ONLINE_MODEL_VERSION
        return self.popularity.recommend_explained(k, excluded), POPULARITY_MODEL_VERSION

    def learn_state(self, state: UserState) -> None:
        for item_id, ts in state.new_events:
            self.popularity.learn_item(item_id, ts)

    # -- helpers -----------------------------------------------------------------------------
    def _apply_state_record(self, record: Record, users: dict[str, UserState]
                            ) -> UserState | None:
        if record.key is None:
            return None
        if record.key == SNAPSHOT_KEY:
            if record.value is not None:
                snapshot = load_snapshot(record.value)
                self._models[record.partition] = snapshot["blend"]
                self._model_offsets[record.partition] = int(snapshot["offset"])
            return None
        user_id = record.key.decode()
        if record.value is None:  # tombstone: the user was forgotten
            users.pop(user_id, None)
            return None
        state = decode_state(record.value)
        self.learn_state(state)
        users[user_id] = state
        return state

    def _on_state(self, record: Record) -> Output | None:
        users = self._mirror.setdefault(record.partition, {})
        state = self._apply_state_record(record, users)
        if state is None:
            return None
        started = self._clock()
        ranked, version = self.rank_with_version(state.user_id, self.settings.top_k)
        return self._publish(state.user_id, state.last_event_id, "event", ranked, state.last_ts,
                             started, state.trigger_produced_ms, version)

    def _answer_request(self, record: Record) -> Output | None:
        try:
            request = _request_decoder.decode(record.value or b"")
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.rejected_by_reason["bad_request"] += 1
            return dead_letter(record, BadEvent("bad_request", str(exc)), self.topics.dlq)
        started = self._clock()
        k = request.k if request.k and request.k > 0 else self.settings.top_k
        ranked, version = self.rank_with_version(request.user_id, k, request.exclude_items)
        state = self.state_of(request.user_id)
        return self._publish(request.user_id, request.request_id, "request", ranked,
                             state.last_ts if state else 0.0, started, record.timestamp_ms,
                             version)

    def _publish(self, user_id: str, trigger_id: str, kind: str,
                 ranked: list[tuple[str, float, dict[str, float]]], event_ts: float,
                 started: float, produced_ms: int, version: str) -> Output:
        now = self._clock()
        message = Recommendation(
            user_id=user_id, trigger_id=trigger_id, trigger_kind=kind,
            model_version=version,
            items=[ScoredItem(item, score, parts) for item, score, parts in ranked],
            event_ts=event_ts,
            end_to_end_ms=(now * 1000.0 - produced_ms) if produced_ms > 0 else None,
            score_ms=(now - started) * 1000.0,
            scored_at_ms=int(now * 1000),
        )
        return Output(self.topics.recommendations, user_id.encode(), _encoder.encode(message))
