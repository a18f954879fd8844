"""The scorer's learned fusion of one partition: its learner, each user's pending pool, and
their records on the scorer's own state topic.

At each trigger the scorer remembers the user's candidate pool (each source's list, best
first). When the user's next state arrives, every new item it carries is a click judged
against that pool: the clicked item's rank per source and every other candidate's, from
which ``CounterfactualFusion`` scores each weight vector it considers. The pool then gives
way to the new trigger's. Weights are per partition, like ingest's online models: which member owns a
partition changes nothing, and a restart restores the partition's learner and pools from
the records the batches committed (``take_outputs``; key ``FUSION_KEY`` for the weights,
the user id for a pool, a tombstone when a pool is dropped).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable, Sequence

import msgspec
from streamrec.consumers.ranking import RRF_K
from streamrec.input_bounds import BadInput, check_id, count_skip, decode_user_key, guarded_decode
from streamrec.online_models.fusion_learner import CounterfactualFusion, pool_ranks
from streamrec.records import Output, Record

log = logging.getLogger(__name__)

# The partition's weights; in the reserved namespace, so no user id can take the key.
FUSION_KEY = b"__streamrec_fusion__"
FUSION_STATE_VERSION = 1
# Sources in fusion order: online, deep, co-visitation, transitions.
SOURCE_COUNT = 4


class PendingPool(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A trigger's candidate pool: each source's item ids, best first (empty: no list)."""

    lists: tuple[tuple[str, ...], ...]


class FusionSnapshot(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    version: int
    # The grid the gains belong to: the shipped weights and factors it was built from.
    initial: tuple[float, ...]
    factors: tuple[float, ...]
    gains: tuple[float, ...]  # one per candidate weight vector
    best: int
    updates: int


_encoder = msgspec.msgpack.Encoder()
_pool_decoder = msgspec.msgpack.Decoder(PendingPool)
_snapshot_decoder = msgspec.msgpack.Decoder(FusionSnapshot)


class PartitionFusion:
    """One partition's fusion learner and pending pools, and the records that persist them."""

    def __init__(self, initial: Sequence[float], half_life: float, *, k: int,
                 max_users: int, max_depth: int, max_id_bytes: int) -> None:
        self.learner = CounterfactualFusion(initial, half_life=half_life, k=k, rrf_k=RRF_K)
        self.max_users = max_users
        self.max_depth = max_depth
        self.max_id_bytes = max_id_bytes
        # Least recently triggered first: the bound drops the oldest pool.
        self.pending: dict[str, PendingPool] = {}
        # What the batch changed, to be written with it: a pool, or None (tombstone).
        self._changed: dict[str, PendingPool | None] = {}
        self._weights_changed = False
        self._served: tuple[int, tuple[float, ...]] | None = None

    def weights(self) -> tuple[float, ...]:
        """The served weight vector, as Python floats (kept until the learner switches)."""
        best = self.learner.best
        if self._served is None or self._served[0] != best:
            self._served = (best, tuple(float(w) for w in self.learner.weights))
        return self._served[1]

    # -- learning ----------------------------------------------------------------------------
    def learn(self, user_id: str, clicked: Iterable[str]) -> None:
        """The user's new clicks, judged against the pool of their last trigger."""
        pool = self.pending.get(user_id)
        if pool is None:
            return
        for item_id in clicked:
            if self._learn_one(pool, item_id):
                self._weights_changed = True

    def _learn_one(self, pool: PendingPool, item_id: str) -> bool:
        judged = pool_ranks(pool.lists, item_id)
        if judged is None:
            return False  # no source listed it: no weighting would have shown it
        return self.learner.learn_one(*judged)

    def remember(self, user_id: str, lists: Sequence[Sequence[str]]) -> None:
        """The user's new trigger's pool, judged by their next clicks."""
        pool = PendingPool(tuple(tuple(listed) for listed in lists))
        self.pending.pop(user_id, None)  # to the end: most recently triggered
        self.pending[user_id] = pool
        self._changed[user_id] = pool
        while len(self.pending) > self.max_users:
            oldest = next(iter(self.pending))
            del self.pending[oldest]
            self._changed[oldest] = None

    def forget(self, user_id: str) -> None:
        """The user was erased (tombstone): nothing of theirs is kept."""
        if self.pending.pop(user_id, None) is not None or user_id in self._changed:
            self._changed[user_id] = None

    # -- persistence -------------------------------------------------------------------------
    def take_outputs(self, topic: str, partition: int) -> list[Output]:
        """The records of what changed since the last call, for the batch's transaction."""
        outputs = [Output(topic, user_id.encode(),
                          None if pool is None else _encoder.encode(pool), partition=partition)
                   for user_id, pool in self._changed.items()]
        self._changed.clear()
        if self._weights_changed:
            learner = self.learner
            snapshot = FusionSnapshot(FUSION_STATE_VERSION, learner.initial, learner.factors,
                                      tuple(learner.gains.tolist()), learner.best,
                                      learner.updates)
            outputs.append(Output(topic, FUSION_KEY, _encoder.encode(snapshot),
                                  partition=partition))
            self._weights_changed = False
        return outputs

    def restore(self, records: Iterable[Record], skipped: Counter[tuple[str, str]]) -> int:
        """Rebuild from the state topic's committed records, oldest first; bad ones are
        counted in ``skipped`` by (topic, reason) and leave what was there."""
        self.pending.clear()
        self._changed.clear()
        self._weights_changed = False
        for record in records:
            try:
                self._apply(record)
            except BadInput as error:
                count_skip(skipped, record.topic, error, log)
        return len(self.pending)

    def _apply(self, record: Record) -> None:
        if record.key == FUSION_KEY:
            if record.value is None:
                return
            snapshot = guarded_decode(_snapshot_decoder, record.value)
            if snapshot.version != FUSION_STATE_VERSION:
                raise BadInput("version", f"fusion state version {snapshot.version}")
            if (snapshot.initial, snapshot.factors) != (self.learner.initial,
                                                        self.learner.factors):
                # The fusion weights were reconfigured: the gains score other vectors.
                raise BadInput("settings_changed", "fusion state of other weights; "
                                                   "learning starts afresh")
            try:
                self.learner.set_state(snapshot.gains, snapshot.best, max(snapshot.updates, 0))
            except (ValueError, OverflowError) as error:
                raise BadInput("out_of_bounds", str(error)) from None
            return
        user_id = decode_user_key(record.key, self.max_id_bytes)
        if record.value is None:
            self.pending.pop(user_id, None)
            return
        pool = guarded_decode(_pool_decoder, record.value)
        if len(pool.lists) != SOURCE_COUNT or any(len(listed) > self.max_depth
                                                  for listed in pool.lists):
            raise BadInput("out_of_bounds", "pending pool's lists exceed their bounds")
        for listed in pool.lists:
            for item_id in listed:
                check_id(item_id, "item_id", self.max_id_bytes)
        self.pending.pop(user_id, None)
        self.pending[user_id] = pool
        while len(self.pending) > self.max_users:
            del self.pending[next(iter(self.pending))]
