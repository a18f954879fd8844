"""Score: mirror user states, rank on every state change or request, publish recommendations.

The scorer consumes ``user-state`` (and ``requests``), keeps a mirror of its partitions'
users, and for every trigger publishes one recommendation: top-K excluding everything the
user has seen, with the component scores of each item so that it can be explained.

Item-side knowledge (popularity, recency, co-visitation) is global: an ``ItemSideTable``
aggregates the latest state of every user of *every* partition, those it owns and the
others (records marked ``Record.owned = False``, read by the transport's global reader).
The transport hands both over merged in event-time order (``streamrec.transport.event_time``), so a
trigger is ranked with the item-side knowledge of the records before it in that one order:
the same with 1 or N scorers, after compaction and after a restart.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Callable, Iterable

import msgspec
import numpy as np

from streamrec.consumers.partition_models import is_snapshot_key
from streamrec.consumers.batch_ranking import (
    NO_COVISIT,
    CovisitRow,
    PopularityRow,
    FusionWeights,
    ItemSlots,
    TriggerLists,
    fuse_many,
    rank_online,
    source_ids,
)
from streamrec.consumers.fusion_state import PartitionFusion
from streamrec.consumers.score_drift import ScoreDriftReporter
from streamrec.consumers.snapshot_chunks import SnapshotLimits, SnapshotReader
from streamrec.export.candidates import NO_CANDIDATES, DeepRow
from streamrec.online_models.blend_ranker import BlendRanker, RankQuery
from streamrec.online_models.item_side import ItemSideTable
from streamrec.online_models.user_state import StateBounds, UserState, decode_state, state_event_time
from streamrec.config import Settings
from streamrec.events import BadEvent, dead_letter
from streamrec.input_bounds import (
    BadInput,
    check_id,
    check_user_id,
    count_skip,
    decode_user_key,
    guarded_decode,
)
# The message type lives at the contracts floor (app-side readers decode it); re-exported.
from streamrec.messages import (  # noqa: F401
    Recommendation,
    RecommendationRequest,
    ScoredItem,
    encode_request,
    recommendation_decoder,
)
from streamrec.processor import ProcessorDefaults
from streamrec.records import Output, ProcessResult, Record

if TYPE_CHECKING:
    from streamrec.metrics.registry import MetricsRegistry

log = logging.getLogger(__name__)

POPULARITY_MODEL_VERSION = "popularity"
ONLINE_MODEL_VERSION = "online-blend"
# Item ids the batch ranking keeps slots for before starting afresh: far above a real
# catalogue, a bound on what hostile ids can make it hold.
MAX_ITEM_SLOTS = 2_000_000
# Freshness spans milliseconds (a scorer keeping up) to many seconds (one falling behind).
FRESHNESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                     60.0)


_request_decoder = msgspec.json.Decoder(RecommendationRequest)
_encoder = msgspec.json.Encoder()


class ScoreProcessor(ProcessorDefaults):
    """Pure scoring logic over user-state and request records."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.changelog_topic = self.topics.user_state
        self._clock = clock
        self._mirror: dict[int, dict[str, UserState]] = {}
        # Per partition: the latest snapshot of ingest's online models, and its offset.
        self._models: dict[int, object] = {}
        # Records skipped on input topics, by (topic, reason): read by the runtime as
        # streamrec_inputs_skipped_total{topic,reason}. A user-state record the mirror could
        # not take leaves the user's previous state; the partition goes on.
        self.skipped_by_reason: Counter[tuple[str, str]] = Counter()
        # Snapshot chunks are collected per partition across batches (and from restore into
        # the first batches: the committed offset can fall inside a set).
        self.snapshots = SnapshotReader(self.changelog_topic,
                                        SnapshotLimits.from_settings(settings),
                                        self.skipped_by_reason)
        # The deep candidate generator; replaced whole (one reference) on a new model, so a
        # batch that started on the old model finishes on it.
        self._deep: object | None = None
        # Popularity, recency and co-visitation over every user's latest state, of every
        # partition: global, so ``drop`` keeps it; ``restore`` resets a partition's share.
        self.item_side = ItemSideTable(window=settings.covisit_window,
                                       recent=settings.covisit_recent,
                                       half_life_s=settings.popularity_half_life_s,
                                       transition_order=settings.transition_order)
        # The transport merges every partition of these into the batches (see Record.owned).
        self.global_topics: tuple[str, ...] = (self.topics.user_state,)
        # Bad records met on the global path, by (topic, reason). Apart from
        # ``skipped_by_reason``: every scorer reads every partition there, so one bad record
        # would count once per scorer; its owner counts it there.
        self.global_skipped_by_reason: Counter[tuple[str, str]] = Counter()
        self.rejected_by_reason: Counter[str] = Counter()
        self.state_bounds = StateBounds.from_settings(settings)
        # States ranked without their vector because an item-table adoption was in flight.
        self.stale_embedding_states = 0
        # Online hit-rate of what we publish, and drift messages on ``models`` when it drops.
        self.drift = ScoreDriftReporter(settings, clock)
        # Click produced -> recommendation published, once ``bind_metrics`` gives a registry.
        self._freshness: object | None = None
        # Batch ranking: a view per snapshot in use, and one item-slot space for fusing.
        self._rankers: dict[int, BlendRanker] = {}
        self._slots = ItemSlots()
        # Learned fusion (``settings.fusion == "learned"``): per partition, its learner and
        # each user's pending pool, written to and restored from ``state_topic``.
        self.learns_fusion = settings.fusion == "learned"
        self.state_topic: str | None = self.topics.scorer_state if self.learns_fusion else None
        self._fusion: dict[int, PartitionFusion] = {}

    def bind_metrics(self, registry: "MetricsRegistry") -> None:
        """Expose ``streamrec_recommendation_freshness_seconds`` and the drift metrics."""
        self._freshness = registry.histogram(
            "streamrec_recommendation_freshness_seconds",
            "Time from the click's produce timestamp (carried on its user-state) to the "
            "recommendation it triggered being encoded for publishing; event triggers only.",
            buckets=FRESHNESS_BUCKETS)
        self.drift.bind_metrics(registry)

    # -- state lifecycle -------------------------------------------------------------------
    def restore(self, partition: int, changelog: Iterable[Record]) -> int:
        """Rebuild the mirror of one partition, and its share of item-side knowledge."""
        users = self._mirror.setdefault(partition, {})
        self.snapshots.drop(partition)  # the log is read again from its start
        # The record offset of each user's state: the item-side table orders by it.
        offsets = self.item_side.users_of(partition)
        for record in changelog:
            self._apply_state_record(record, users, restore_offsets=offsets)
        # The partition's users are exactly at the restore point, whatever the table held
        # of them (learned before a revoke, or ahead of it from the global path): a global
        # reader running ahead would otherwise leak later events into these triggers.
        self.item_side.replace_partition(
            partition, [(offsets[user_id], state) for user_id, state in users.items()
                        if user_id in offsets])
        return len(users)

    def restore_state(self, partition: int, records: list[Record]) -> int:
        """Rebuild one partition's learned fusion from ``state_topic``'s committed records."""
        if not self.learns_fusion:
            return 0
        return self._fusion_of(partition).restore(records, self.skipped_by_reason)

    def fusion_weights(self, partition: int) -> FusionWeights:
        """The fusion weights the partition's next trigger gets."""
        if not self.learns_fusion:
            return self._fixed_weights()
        return FusionWeights(*self._fusion_of(partition).weights())

    def _fusion_of(self, partition: int) -> PartitionFusion:
        fusion = self._fusion.get(partition)
        if fusion is None:
            settings = self.settings
            fixed = self._fixed_weights()
            fusion = self._fusion[partition] = PartitionFusion(
                (fixed.online, fixed.deep, fixed.covisit, fixed.transition),
                settings.fusion_half_life, k=settings.top_k,
                max_users=settings.fusion_pending_users,
                max_depth=max(settings.fusion_depth, settings.max_k),
                max_id_bytes=settings.max_id_bytes)
        return fusion

    def _fixed_weights(self) -> FusionWeights:
        settings = self.settings
        return FusionWeights(settings.online_weight, settings.deep_weight,
                             settings.covisit_weight, settings.transition_weight)

    def drop(self, partitions: Iterable[int]) -> None:
        # Item-side knowledge stays: it is global, and every user in it is at a record of
        # the log (exact), so nothing is counted twice when a partition comes back.
        for partition in partitions:
            self._mirror.pop(partition, None)
            self._fusion.pop(partition, None)
            self.drift.drop(partition)
            self._models.pop(partition, None)
            self.snapshots.drop(partition)

    def state_of(self, user_id: str) -> UserState | None:
        located = self._locate(user_id)
        return None if located is None else located[1]

    def swap_deep(self, generator: object) -> None:
        """Serve a new deep model: a ``DeepCandidateGenerator`` built and warmed elsewhere."""
        self._deep = generator

    def _locate(self, user_id: str) -> tuple[int, UserState] | None:
        for partition, users in self._mirror.items():
            if user_id in users:
                return partition, users[user_id]
        return None

    # -- the work ----------------------------------------------------------------------------
    def process(self, batch: list[Record], publish: bool = True) -> ProcessResult:
        """Apply state changes and answer triggers; ``publish=False`` only applies them.

        Records are taken in stream order, and each trigger is ranked at its own position:
        with the item-side statistics and the online models of the records before it, never
        those of later records of the batch. What is published is then the same however
        the stream is cut into batches (Kafka's ``read_committed`` polls return varying
        numbers of records; the bus its own). The deep model depends only on each trigger's
        own sequence, so its inputs are gathered ahead and it runs once for the whole batch
        (one ONNX Runtime call). Records of partitions another member owns
        (``owned=False``) only inform item-side knowledge, at their position.
        """
        result = ProcessResult()
        deep = self._deep  # one model for the whole batch, even if a swap lands meanwhile
        started = self._clock()
        if len(self._slots.ids) > MAX_ITEM_SLOTS:  # hostile ids must not grow it forever
            self._slots = ItemSlots()
        # With a deep model the batch is read ahead once; what that read decoded is reused.
        ahead, decoded = (self._deep_ahead(deep, batch) if publish and deep is not None
                          else ({}, {}))
        # Pass 1, in stream order: state changes, and for each trigger everything that
        # depends on its position (item-side lists, the snapshot in force). Ranking the
        # triggers' online lists and fusing them is then done for the batch at once (pass
        # 2); the drift tracker's calls wait for the rankings, in their order (pass 3).
        triggers: list[TriggerLists] = []
        published: list[tuple[str, str, str, float, int, str, int | None]] = []
        drift_calls: list[tuple] = []
        # The learned fusion's steps in stream order: clicks learned, users forgotten, and
        # each trigger taking the weights in force at its position (``_fuse_weights``).
        fusion_calls: list[tuple] | None = [] if self.learns_fusion and publish else None
        outputs: list[Output | int] = []  # an int: the recommendation of that trigger
        for index, record in enumerate(batch):
            if not record.owned:
                self.learn_global([record])  # another member's partition: item side only
                continue
            if record.topic == self.topics.requests:
                if not publish:
                    continue
                known = decoded.get(index)
                dead_letters = len(result.outputs)
                request = (known if isinstance(known, RecommendationRequest)
                           else self._decode_request(record, result))
                outputs.extend(result.outputs[dead_letters:])
                del result.outputs[dead_letters:]
                if request is None:
                    continue
                user_id, state = request.user_id, self.state_of(request.user_id)
                excluded = self._exclusions(state, request.exclude_items)
                k = self._k_of(request)
                trigger_id, kind = request.request_id, "request"
                event_ts, produced_ms = (state.last_ts if state else 0.0), record.timestamp_ms
            else:
                peeked = decoded.get(index)
                state = self._apply_state_record(
                    record, self._mirror.setdefault(record.partition, {}),
                    decoded=peeked if isinstance(peeked, tuple) else None,
                    drift_calls=drift_calls, fusion_calls=fusion_calls)
                if state is None or not publish:
                    continue
                user_id, excluded, k = state.user_id, self._exclusions(state, ()), self._k_of(None)
                trigger_id, kind = state.last_event_id, "event"
                event_ts, produced_ms = state.last_ts, state.trigger_produced_ms
            deep_row = self._deep_list(deep, state, excluded, ahead.get(index))
            lists, version = self._trigger_lists(user_id, k, excluded, state, deep, deep_row)
            located = self._locate(user_id)
            # At the trigger's position too: the user's next event is judged against it.
            drift_calls.append(("recommended", len(triggers)))
            if fusion_calls is not None and located is not None:
                fusion_calls.append(("trigger", len(triggers), located[0], user_id, kind))
            outputs.append(len(triggers))
            triggers.append(lists)
            published.append((user_id, trigger_id, kind, event_ts, produced_ms, version,
                              located[0] if located is not None else None))
        ranked_all = self._rank_batch(triggers, fusion_calls)
        recommendations = [
            self._publish(user_id, trigger_id, kind, ranked, event_ts, started, produced_ms,
                          version)
            for (user_id, trigger_id, kind, event_ts, produced_ms, version, _), ranked
            in zip(published, ranked_all)]
        for call in drift_calls:
            if call[0] == "recommended":
                user_id, partition = published[call[1]][0], published[call[1]][6]
                if partition is not None:  # bounded: only users of the mirror are remembered
                    self.drift.recommended(partition, user_id, ranked_all[call[1]])
            else:
                getattr(self.drift, call[0])(*call[1:])
        result.outputs.extend(recommendations[item] if isinstance(item, int) else item
                              for item in outputs)
        result.processed += len(triggers)
        if self.state_topic is not None:
            for partition in sorted(self._fusion):
                result.outputs.extend(self._fusion[partition].take_outputs(self.state_topic,
                                                                           partition))
        self._prune_rankers()
        result.outputs.extend(self.drift.take_outputs(sorted(self._mirror)))
        return result

    def _deep_ahead(self, deep: object | None, batch: list[Record]
                    ) -> tuple[dict[int, tuple[list[str], set[str], DeepRow]], dict[int, object]]:
        """The deep model's list for each trigger the batch will have, from one call.

        By record index: (sequence, exclusions, list); and, by record index, what was decoded
        on the way (a request, or a state record's (user, state)), so that ``process``
        decodes no record twice. The inputs are read from the records
        without applying them: a state's own sequence and seen items; for a request, the
        user's state as of the request's position (the latest state before it in the batch,
        else the mirror's), plus its exclusions. ``process`` uses a list only if the inputs
        of the trigger it meets are the same (it asks the model again otherwise), so a
        prediction that misses costs a call, never a wrong ranking.
        """
        latest: dict[str, UserState | None] = {}  # users met in the batch, as of the position
        predicted: list[tuple[int, UserState | None, set[str]]] = []
        decoded: dict[int, object] = {}
        for index, record in enumerate(batch):
            if record.topic == self.topics.requests:
                try:
                    request = self._checked_request(record)
                except BadInput:
                    continue
                decoded[index] = request
                user_id = request.user_id
                state = latest[user_id] if user_id in latest else self.state_of(user_id)
                predicted.append((index, state, self._exclusions(state, request.exclude_items)))
                continue
            if not record.owned:
                continue
            peeked = self._peek_state(record)
            if peeked is None:
                continue
            decoded[index] = peeked
            user_id, state = peeked
            previous = (latest[user_id] if user_id in latest
                        else self._mirror.get(record.partition, {}).get(user_id))
            latest[user_id] = state
            if state is None or not self._is_trigger(previous, state):
                continue  # a tombstone or a re-emitted state: no trigger
            predicted.append((index, state, self._exclusions(state, ())))
        if not predicted:
            return {}, decoded
        lists = self._deep_lists(deep, [state for _, state, _ in predicted],
                                 [excluded for _, _, excluded in predicted])
        return ({index: (self._sequence(state), excluded, deep_list)
                 for (index, state, excluded), deep_list in zip(predicted, lists)}, decoded)

    @staticmethod
    def _is_trigger(previous: UserState | None, state: UserState) -> bool:
        """A state is a trigger unless it re-emits the previous one (a micro-batch of the
        online models gave the user a new embedding, with no new event)."""
        return previous is None or (previous.source_offset, previous.event_count) != (
            state.source_offset, state.event_count)

    def _peek_state(self, record: Record) -> tuple[str, UserState | None] | None:
        """(user, state or None for a tombstone) a user-state record carries; None if it
        carries no user state (a snapshot record) or would be skipped. Changes nothing."""
        if record.key is None or is_snapshot_key(record.key):
            return None
        try:
            return self._decode_state(record)
        except BadInput:
            return None

    @staticmethod
    def _sequence(state: UserState | None) -> list[str]:
        """The deep model's input for a trigger: its recent items, oldest first."""
        return list(state.recent_items) if state is not None else []

    def _deep_list(self, deep: object | None, state: UserState | None, excluded: set[str],
                   ahead: tuple[list[str], set[str], DeepRow] | None) -> DeepRow:
        """The trigger's deep list: the one gathered ahead if its inputs are the trigger's."""
        if deep is None:
            return NO_CANDIDATES
        if ahead is not None and ahead[0] == self._sequence(state) and ahead[1] == excluded:
            return ahead[2]
        return self._deep_lists(deep, [state], [excluded])[0]

    @staticmethod
    def _exclusions(state: UserState | None, exclude: Iterable[str]) -> set[str]:
        excluded = set(exclude)
        if state is not None:
            excluded.update(state.seen_items)
        return excluded

    def _deep_lists(self, deep: object | None, states: list[UserState | None],
                    excludes: list[set[str]]) -> list[DeepRow]:
        if deep is None:
            return [NO_CANDIDATES for _ in states]
        sequences = [self._sequence(state) for state in states]
        return deep.generate_rows(sequences, excludes, self.deep_candidates)  # type: ignore[attr-defined]

    def _trigger_lists(self, user_id: str, k: int, excluded: set[str],
                       state: UserState | None, deep: object | None, deep_row: DeepRow
                       ) -> tuple[TriggerLists, str]:
        """What the trigger's ranking is made of, as of its position, and its version.

        The online list is ranked later with the batch (``_rank_batch``), by the snapshot in
        force now; the popularity list (before any snapshot) and co-visitation come from the
        item-side table as it is now. ``excluded`` already holds the user's seen items.
        """
        depth = self._fusion_depth(k)
        # The item-side rows of ``excluded``, looked up once for the item-side lists.
        exclude_rows = (self.item_side.rows_of(excluded)
                        if state is not None and state.recent_items else None)
        lists = TriggerLists(k=k, deep=deep_row,
                             covisit=self._covisited(k, excluded, state, exclude_rows),
                             transition=self._transitions(k, excluded, state, exclude_rows))
        version = POPULARITY_MODEL_VERSION
        located = self._locate(user_id) if state is not None else None
        blend = self._models.get(located[0]) if located is not None else None
        if blend is not None and state is not None:
            # The snapshot is older than the user's state: rank the user as the state has
            # them (vector, recent items), without writing them into the snapshot, so one
            # trigger's ranking never leaks into another's. Item-side parameters are the
            # snapshot's.
            ranker = self._ranker(blend)
            vector = state.embedding
            if vector is not None and len(vector) != blend.embeddings.current_dim:  # type: ignore[attr-defined]
                # An item-table adoption is in flight (state and snapshot of different
                # spaces): the snapshot already holds this user's mapped vector.
                vector = None
                self.stale_embedding_states += 1
            slots = ranker.excluded_slots(excluded)
            if k < 1 or ranker.ranks_anything(slots):
                lists.ranker, lists.excluded, lists.depth = ranker, slots, depth
                lists.query = RankQuery(user_id, vector, state.recent_items, excluded)
                version = ONLINE_MODEL_VERSION
        if lists.ranker is None:
            lists.popularity = PopularityRow(
                self.item_side.ids, *self.item_side.recommend_explained_rows(
                    depth, excluded, exclude_rows))
        if len(deep_row):
            version = f"{deep.model_version}+{version}"  # type: ignore[union-attr]
        return lists, version

    def _rank_batch(self, triggers: list[TriggerLists], fusion_calls: list[tuple] | None = None
                    ) -> list[list[tuple[str, float, dict[str, float]]]]:
        """Every trigger's published list: online rows ranked per snapshot, then fused.

        The online list is fetched deeper than k to fuse; whatever the sources had, a user
        gets exactly k (or all there is).
        """
        rank_online(triggers)
        if fusion_calls:
            self._fuse_weights(triggers, fusion_calls)
        return fuse_many(triggers, self._slots, self._fixed_weights())

    def _fuse_weights(self, triggers: list[TriggerLists], calls: list[tuple]) -> None:
        """The learned fusion's steps, in stream order: each trigger gets its partition's
        weights as of its position, and an event trigger's pool waits for the next click.

        A pool is each source's list, which the weights do not change: so the steps run
        before the batch is fused, and the batch is still fused at once.
        """
        served: dict[int, tuple[tuple[float, ...], FusionWeights]] = {}
        for call in calls:
            if call[0] == "trigger":
                _, index, partition, user_id, kind = call
                fusion = self._fusion_of(partition)
                trigger = triggers[index]
                weights = fusion.weights()
                if served.get(partition, (None,))[0] is not weights:  # one object per vector
                    served[partition] = (weights, FusionWeights(*weights))
                trigger.weights = served[partition][1]
                if kind == "event":
                    fusion.remember(user_id, source_ids(trigger))
            elif call[0] == "learn":
                self._fusion_of(call[1]).learn(call[2], call[3])
            else:  # "forget"
                self._fusion_of(call[1]).forget(call[2])

    def _ranker(self, blend: object) -> BlendRanker:
        """The batch ranking view of a snapshot (built once: the scorer never learns into it)."""
        held = self._rankers.get(id(blend))
        if held is None or held.blend is not blend:
            held = self._rankers[id(blend)] = BlendRanker(blend)  # type: ignore[arg-type]
        return held

    def _prune_rankers(self) -> None:
        live = {id(blend) for blend in self._models.values()}
        for key in [key for key in self._rankers if key not in live]:
            del self._rankers[key]
        deep = self._deep
        model = getattr(deep, "model", None)
        self._slots.keep_only([*self._rankers.values(), self.item_side.ids,
                               *([model] if model is not None else [])])

    def _covisits(self, state: UserState | None) -> bool:
        """Whether the trigger gets a co-visitation list."""
        return self.settings.covisit_weight > 0 and state is not None and bool(state.recent_items)

    def _covisited(self, k: int, excluded: set[str], state: UserState | None,
                   exclude_rows: np.ndarray | None = None) -> CovisitRow:
        """Co-visitation candidates from the trigger's own recent items (fresher than ours)."""
        if not self._covisits(state):
            return NO_COVISIT
        assert state is not None
        rows, scores = self.item_side.recommend_context_rows(
            state.recent_items, self._fusion_depth(k), excluded, exclude_rows)
        return CovisitRow(self.item_side.ids, rows, scores)

    def _transitions(self, k: int, excluded: set[str], state: UserState | None,
                     exclude_rows: np.ndarray | None = None) -> CovisitRow:
        """Where users went next from the trigger's latest items (directed, unlike co-visits)."""
        if self.settings.transition_weight <= 0 or state is None or not state.recent_items:
            return NO_COVISIT
        rows, scores = self.item_side.recommend_transitions_rows(
            state.recent_items, self._fusion_depth(k), excluded, exclude_rows)
        return CovisitRow(self.item_side.ids, rows, scores)

    @property
    def deep_candidates(self) -> int:
        """How deep each source's list goes into the fusion (and the deep model's top-C)."""
        return self.settings.fusion_depth

    def _fusion_depth(self, k: int) -> int:
        # Fused lists must reach past k, or an item ranked 11th by two sources loses to
        # one ranked 10th by one; without any other source, k is all that is needed.
        settings = self.settings
        fusing = (self._deep is not None or settings.covisit_weight > 0
                  or settings.transition_weight > 0)
        return max(k, self.deep_candidates) if fusing else k

    def rank(self, user_id: str, k: int, exclude: Iterable[str] = ()
             ) -> list[tuple[str, float, dict[str, float]]]:
        """Top-k for a user as a trigger would publish it (deep model included, if any).

        Excludes seen items and ``exclude``; never mutates learned state. Replay drives
        this for one user at a time; ``process`` does the same for a whole batch.
        """
        deep, state = self._deep, self.state_of(user_id)
        excluded = self._exclusions(state, exclude)
        deep_row = self._deep_lists(deep, [state], [excluded])[0]
        lists, _ = self._trigger_lists(user_id, k, excluded, state, deep, deep_row)
        located = self._locate(user_id)
        if self.learns_fusion and located is not None:
            lists.weights = self.fusion_weights(located[0])
        return self._rank_batch([lists])[0]

    def learn_state(self, partition: int, record_offset: int, state: UserState) -> bool:
        """Take a user's latest state into the item-side table (False: not newer, ignored)."""
        return self.item_side.apply(partition, record_offset, state)

    def event_time(self, record: Record) -> float | None:
        """A ``global_topics`` record's event time, for the transport's merged order
        (``streamrec.transport.event_time``): the state's ``last_ts``; None for a snapshot, a
        tombstone or a record without a valid time (it takes its partition's previous)."""
        if record.key is None or is_snapshot_key(record.key):
            return None
        return state_event_time(record.value, self.state_bounds, record.timestamp_ms)

    def _is_global(self, record: Record) -> bool:
        """A record of a global topic's partition this scorer does not hold."""
        return record.topic in self.global_topics and record.partition not in self._mirror

    def learn_global(self, records: list[Record]) -> None:
        """Item-side learning from ``global_topics`` records of partitions it does not own.

        ``process`` calls it for such records of its batch (the transport merges them in
        event-time order with the owned ones). Records of partitions this scorer owns are
        ignored: the owned path learns them in order with the triggers. Snapshots are not
        item-side knowledge. A bad record is counted in ``global_skipped_by_reason`` and
        skipped, never raised.
        """
        for record in records:
            if not self._is_global(record):
                continue
            if record.key is not None and is_snapshot_key(record.key):
                continue
            try:
                user_id, state = self._decode_state(record)
            except BadInput as error:
                count_skip(self.global_skipped_by_reason, record.topic, error, log)
                continue
            if state is None:
                self.item_side.forget(user_id)
            else:
                self.item_side.apply(record.partition, record.offset, state)

    # -- helpers -----------------------------------------------------------------------------
    def _decode_state(self, record: Record) -> tuple[str, UserState | None]:
        """The one decoder of a user's ``user-state`` record: (user, state or None for a
        tombstone), or ``BadInput``."""
        if record.key is None:
            raise BadInput("missing_key", "user-state record without a key")
        user_id = decode_user_key(record.key, self.settings.max_id_bytes)
        if record.value is None:
            return user_id, None
        state = decode_state(record.value, self.state_bounds, record.timestamp_ms)
        if state.user_id != user_id:
            raise BadInput("key_mismatch", "state's user_id is not its key")
        return user_id, state

    def _apply_state_record(self, record: Record, users: dict[str, UserState],
                            restore_offsets: dict[str, int] | None = None,
                            decoded: tuple[str, UserState | None] | None = None,
                            drift_calls: list[tuple] | None = None,
                            fusion_calls: list[tuple] | None = None) -> UserState | None:
        """Apply one owned ``user-state`` record; the state if it is a trigger.

        While restoring (``restore_offsets`` given) the item-side table is left alone and
        the offset of each user's latest state is collected instead. ``decoded``: the
        record's (user, state) if ``_decode_state`` already read it. ``drift_calls``: where
        the drift tracker's calls wait (``process`` makes them once the batch is ranked);
        ``fusion_calls``: where the learned fusion's clicks and erasures wait, in order.
        """
        if record.key is not None and is_snapshot_key(record.key):
            # Decoded only when a complete, verified set is named; until the first one the
            # partition ranks by popularity, and a bad one keeps the models it had.
            snapshot = self.snapshots.offer(record)
            if snapshot is not None:
                self._models[record.partition] = snapshot.blend
            return None
        try:
            user_id, value = decoded if decoded is not None else self._decode_state(record)
        except BadInput as error:
            count_skip(self.skipped_by_reason, record.topic, error, log)
            return None
        if value is None:  # tombstone: the user was forgotten, item statistics included
            users.pop(user_id, None)
            self._drift(drift_calls, "forget", record.partition, user_id)
            if fusion_calls is not None:
                fusion_calls.append(("forget", record.partition, user_id))
            if restore_offsets is None:
                self.item_side.forget(user_id)
            else:
                restore_offsets.pop(user_id, None)
            return None
        state = value
        if restore_offsets is None:
            self.learn_state(record.partition, record.offset, state)
        else:
            restore_offsets[user_id] = record.offset
        previous = users.get(user_id)
        self._drift(drift_calls, "state_applied", record.partition, user_id, state, previous)
        if fusion_calls is not None and state.new_events:
            fusion_calls.append(("learn", record.partition, user_id,
                                 _new_clicks(state, previous)))
        users[user_id] = state
        # A re-emitted state (see _is_trigger): the mirror takes it, but no recommendation.
        return state if self._is_trigger(previous, state) else None

    def _drift(self, calls: list[tuple] | None, method: str, *args: object) -> None:
        if calls is None:
            getattr(self.drift, method)(*args)
        else:
            calls.append((method, *args))

    def _decode_request(self, record: Record, result: ProcessResult) -> RecommendationRequest | None:
        """The one decoder of ``requests``; a bad request is dead-lettered with its reason.

        Undecodable values keep the reason ``bad_request``; bounds have their own
        (``bad_id``, ``reserved_user_id``, ``out_of_bounds``).
        """
        try:
            return self._checked_request(record)
        except BadInput as error:
            self.rejected_by_reason[error.reason] += 1
            result.rejected += 1
            result.outputs.append(dead_letter(record, error, self.topics.dlq,
                                              self.settings.max_message_bytes))
            return None

    def _checked_request(self, record: Record) -> RecommendationRequest:
        settings = self.settings
        if not record.value:
            raise BadInput("bad_request", "request has no value")
        if len(record.value) > settings.max_event_bytes:
            raise BadInput("oversized", f"{len(record.value)} bytes > limit "
                                        f"{settings.max_event_bytes}")
        try:
            request: RecommendationRequest = guarded_decode(_request_decoder, record.value)
        except BadInput as error:
            reason = error.reason if error.reason == "too_deep" else "bad_request"
            raise BadInput(reason, error.detail) from None
        check_id(request.request_id, "request_id", settings.max_id_bytes)
        check_user_id(request.user_id, "user_id", settings.max_id_bytes)
        if len(request.exclude_items) > settings.max_exclude_items:
            raise BadInput("out_of_bounds", f"{len(request.exclude_items)} exclude_items > "
                                            f"limit {settings.max_exclude_items}")
        for item_id in request.exclude_items:
            check_id(item_id, "exclude_items", settings.max_id_bytes)
        return request

    def _k_of(self, request: RecommendationRequest | None) -> int:
        """How many items a trigger gets: the request's ``k`` clamped to ``max_k``.

        Clamped, not refused: a caller asking for too many still gets an answer, and the
        message stays under the topic's limit (``Settings.validate`` checks ``max_k`` fits).
        """
        if request is None or not request.k or request.k <= 0:
            return self.settings.top_k
        return min(request.k, self.settings.max_k)

    def _publish(self, user_id: str, trigger_id: str, kind: str,
                 ranked: list[tuple[str, float, dict[str, float]]], event_ts: float,
                 started: float, produced_ms: int, version: str) -> Output:
        now = self._clock()
        if produced_ms > 0 and kind == "event" and self._freshness is not None:
            self._freshness.observe(max(now - produced_ms / 1000.0, 0.0))  # type: ignore[attr-defined]
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

    def dead_letter(self, record: Record, reason: str, detail: str) -> Output | None:
        """The dead letter for a record the runtime gave up on (its processing kept raising).

        A request goes to the dead-letter topic like a malformed one; a ``user-state``
        record has no dead-letter topic (it is ingest's output, not an app's input): it is
        skipped and counted under ``skipped_by_reason[(topic, reason)]``.
        """
        if record.topic == self.topics.requests:
            self.rejected_by_reason[reason] += 1
            return dead_letter(record, BadEvent(reason, detail), self.topics.dlq)
        self.skipped_by_reason[(record.topic, reason)] += 1
        return None


def _new_clicks(state: UserState, previous: UserState | None) -> list[str]:
    """The items a state delta adds that the user had not seen (a repeat cannot be a hit:
    seen items are never recommended), each once, in order."""
    seen = previous.seen_items if previous is not None else []
    clicks: list[str] = []
    for item_id, _ts in state.new_events:  # mostly one: a scan beats building a set
        if item_id not in seen and item_id not in clicks:
            clicks.append(item_id)
    return clicks
