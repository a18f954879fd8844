"""Recommenders built on the online learners: the FM as a ranker, and their blend.

``FMRecommender`` learns a :class:`streamrec.online_models.fm.NumpyFM` on (user, recent items, item,
item metadata) rows, one positive and sampled negatives per event, and ranks every known
item for a user in one vectorised pass. The recent-items field lets the FM learn
item-to-item affinities (what follows what), which a user vector alone learns slowly.

``OnlineBlend`` runs the online user embedding, the FM and popularity/recency side by side
and fuses their rankings (weighted reciprocal-rank fusion: no score calibration needed).
"""

from __future__ import annotations

import math
from typing import Callable, Collection, Iterable, Mapping, Sequence

import msgspec
import numpy as np

from streamrec.online_models.base import Ranking
from streamrec.online_models.baselines import ItemIndex, top_k
from streamrec.online_models.embeddings import EmbeddingsState, OnlineUserEmbeddings
from streamrec.online_models.fm import NumpyFM, NumpyFMState, pack_rows
from streamrec.online_models.learner_state import (ArrayState, RngState, count, distinct, finite,
                                                   require, slots, step_size, weight)
from streamrec.online_models.popularity import PopularityRecency, PopularityState
from streamrec.events import ClickEvent

ItemFeatures = Mapping[str, Mapping[str, "str | float"]]


class FMRecommenderState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``FMRecommender`` as plain data: hyper-parameters, then learned state."""

    n_factors: int
    lr: float
    l2: float
    n_negatives: int
    history: int
    init_scale: float
    item_features: dict[str, dict[str, str | bool | int | float]] | None
    seed: int
    fm: NumpyFMState
    rng: RngState
    items: list[str]  # first-seen order: the item index
    item_rows: ArrayState
    item_values: ArrayState
    recent_users: list[str]
    recent_items: list[list[str]]
    hist_items: list[str]
    hist_rows: ArrayState  # int64, one per ``hist_items``


class BlendState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``OnlineBlend`` as plain data: its weights and each component's state."""

    embedding_weight: float
    fm_weight: float
    recency_weight: float
    candidates: int
    rrf_k: float
    half_life_s: float
    seed: int
    embeddings: EmbeddingsState
    fm: FMRecommenderState
    recency: PopularityState


class FMRecommender:
    """An online FM over user, recent items, item and item metadata, as a ``Recommender``.

    Parameters
    ----------
    n_factors, lr, l2, init_scale
        Passed to :class:`~streamrec.online_models.fm.NumpyFM`.
    n_negatives
        Items drawn uniformly from the known catalogue per event, each learned as a 0.
    history
        How many of the user's latest items form the ``hist_*`` field (weights 1/n).
    item_features
        Optional metadata per item id, river-style (``{"genre_Drama": 1.0}``).
    seed
        The only source of randomness.

    Examples
    --------
    >>> from streamrec.events import ClickEvent
    >>> model = FMRecommender(n_factors=4, seed=1)
    >>> for n in range(300):
    ...     user, item = f"u{n % 2}", f"i{(n % 2) * 3 + (n // 2) % 3}"
    ...     model.learn_one(ClickEvent(event_id=str(n), user_id=user, item_id=item,
    ...                                type="click", ts=float(n)))
    >>> sorted(item for item, _ in model.recommend("u1", k=3))
    ['i3', 'i4', 'i5']
    """

    def __init__(self, n_factors: int = 16, lr: float = 0.2, l2: float = 0.0,
                 n_negatives: int = 4, history: int = 10, init_scale: float = 0.1,
                 item_features: ItemFeatures | None = None, seed: int = 0) -> None:
        self.n_factors, self.lr, self.l2, self.init_scale = n_factors, lr, l2, init_scale
        self.n_negatives, self.history, self.seed = n_negatives, history, seed
        self.item_features = item_features
        self.fm = NumpyFM(n_factors=n_factors, lr=lr, l2=l2, init_scale=init_scale, seed=seed)
        self._rng = np.random.default_rng(seed)
        self._items = ItemIndex()
        self._item_rows = np.zeros((64, 1), dtype=np.int64)    # FM rows of each item's side
        self._item_values = np.zeros((64, 1), dtype=np.float32)
        self._recent: dict[str, list[str]] = {}  # user -> latest distinct items, oldest first
        self._hist_rows: dict[str, int] = {}     # item -> FM row of its ``hist_<item>`` feature

    def _user_encoded(self, user_id: str, grow: bool, recent: Sequence[str] | None = None
                      ) -> tuple[list[int], list[float]]:
        """FM rows and values of the user side: the user, then ``hist_<item>`` at 1/n each.

        Built from ids, not dicts: this runs once per learned event. ``recent`` replaces the
        user's own history (ranking with a fresher one). Without ``grow`` an unknown user or
        history item maps to the inert row 0 (ranking never adds state).
        """
        if recent is None:
            recent = self._recent.get(user_id, ())
        rows = [self.fm.feature_index(("user", user_id), grow)]
        hist = self._hist_rows
        for item in recent:
            row = hist.get(item)
            if row is None:
                if not grow:
                    row = 0
                else:  # first time this item is anyone's history: give it a feature
                    row = hist[item] = self.fm.feature_index(f"hist_{item}")
            rows.append(row)
        return rows, ([1.0] + [1.0 / len(recent)] * len(recent)) if recent else [1.0]

    def _item_side(self, item_id: str) -> dict[str, str | float]:
        return {"item": item_id, **(self.item_features or {}).get(item_id, {})}

    def _add_item(self, item_id: str) -> int:
        known = len(self._items)
        slot = self._items.add(item_id)
        if slot == known:  # new: encode its side once, keep the rows for ranking
            rows, values = self.fm.encode([self._item_side(item_id)])
            width = max(rows.shape[1], self._item_rows.shape[1])
            if slot >= self._item_rows.shape[0] or width > self._item_rows.shape[1]:
                size = max(2 * self._item_rows.shape[0], slot + 1)
                grown_rows = np.zeros((size, width), dtype=np.int64)
                grown_values = np.zeros((size, width), dtype=np.float32)
                old = self._item_rows.shape
                grown_rows[: old[0], : old[1]] = self._item_rows
                grown_values[: old[0], : old[1]] = self._item_values
                self._item_rows, self._item_values = grown_rows, grown_values
            self._item_rows[slot, : rows.shape[1]] = rows[0]
            self._item_values[slot, : rows.shape[1]] = values[0]
        return slot

    def learn_one(self, event: ClickEvent) -> None:
        """Learn the event's positive row and ``n_negatives`` sampled negatives."""
        self.learn_many([event])

    def learn_many(self, events: Iterable[ClickEvent]) -> None:
        """Learn a micro-batch: every event's positive and negatives in one FM step.

        Rows are built in event order, each with the user's history as of its event (the
        history is updated event by event within the chunk). Negatives come from one RNG
        draw per chunk, each event sampling among the items known at that event, so the
        result depends only on the seed and the chunking. A negative that is the event's
        own item is dropped.
        """
        flat_rows: list[int] = []
        flat_values: list[float] = []
        widths: list[int] = []
        positives: list[int] = []
        known: list[int] = []
        index, history = self._items.index, self.history
        for event in events:
            slot = index.get(event.item_id)
            positives.append(self._add_item(event.item_id) if slot is None else slot)
            known.append(len(self._items))
            rows, values = self._user_encoded(event.user_id, grow=True)
            flat_rows += rows
            flat_values += values
            widths.append(len(rows))
            recent = self._recent.setdefault(event.user_id, [])
            if event.item_id in recent:
                recent.remove(event.item_id)
            recent.append(event.item_id)
            del recent[:-history]
        if not positives:
            return
        user_rows, user_values = pack_rows(flat_rows, flat_values, widths)
        pos = np.asarray(positives, dtype=np.int64)
        uniforms = self._rng.random((pos.shape[0], self.n_negatives))
        negatives = (uniforms * np.asarray(known)[:, None]).astype(np.int64)
        candidates = np.concatenate([pos[:, None], negatives], axis=1)    # (B, 1 + n)
        keep = np.ones(candidates.shape, dtype=bool)
        keep[:, 1:] = negatives != pos[:, None]
        event_of = np.broadcast_to(np.arange(pos.shape[0])[:, None], keep.shape)[keep]
        items = candidates[keep]                                         # event-major order
        labels = np.zeros(keep.shape, dtype=np.float32)
        labels[:, 0] = 1.0
        self.fm.learn_encoded(
            np.concatenate([user_rows[event_of], self._item_rows[items]], axis=1),
            np.concatenate([user_values[event_of], self._item_values[items]], axis=1),
            labels[keep])

    def forget_user(self, user_id: str) -> None:
        """Erase the user's feature parameters and history."""
        self.fm.forget_feature(("user", user_id))
        self._recent.pop(user_id, None)

    def knows_user(self, user_id: str) -> bool:
        return self.fm.knows_feature(("user", user_id)) or user_id in self._recent

    def history_of(self, recent_items: Sequence[str]) -> list[str]:
        """The FM history ``recent_items`` stands for: its last ``history`` distinct items.

        ``recent_items`` is oldest first and may repeat (the ``user-state`` sequence); the
        result (oldest first) is what learning those items in order would have left.
        """
        distinct: list[str] = []
        for item in reversed(recent_items):
            if len(distinct) == self.history:
                break
            if item not in distinct:
                distinct.append(item)
        return distinct[::-1]

    def to_state(self) -> FMRecommenderState:
        features = self.item_features
        return FMRecommenderState(
            n_factors=self.n_factors, lr=self.lr, l2=self.l2, n_negatives=self.n_negatives,
            history=self.history, init_scale=self.init_scale,
            item_features=None if features is None else {
                item: dict(values) for item, values in features.items()},
            seed=self.seed, fm=self.fm.to_state(), rng=RngState.of(self._rng),
            items=list(self._items.ids), item_rows=ArrayState.of(self._item_rows),
            item_values=ArrayState.of(self._item_values), recent_users=list(self._recent),
            recent_items=[list(items) for items in self._recent.values()],
            hist_items=list(self._hist_rows),
            hist_rows=ArrayState.of(np.fromiter(self._hist_rows.values(), np.int64,
                                                len(self._hist_rows))))

    @classmethod
    def from_state(cls, state: FMRecommenderState) -> "FMRecommender":
        """The ranker ``to_state`` exported; ``StateError`` (a ``ValueError``) if inconsistent."""
        for name in ("lr", "l2", "init_scale"):
            step_size(getattr(state, name), name)
        for features in (state.item_features or {}).values():
            require(all(isinstance(v, str) or math.isfinite(v) for v in features.values()),
                    "item feature that is not finite")
        fm = NumpyFM.from_state(state.fm)
        rows = state.item_rows.to_array("<i8", ndim=2)
        values = state.item_values.to_array("<f4", ndim=2, finite=True)
        require(rows.shape == values.shape and rows.shape[0] >= max(len(state.items), 1)
                and rows.shape[1] >= 1, "item rows and values of inconsistent shapes")
        # Rows index the FM's table, which only ever grows: valid now, valid later.
        slots(rows, fm.weights.shape[0], "item rows")
        hist_rows = slots(state.hist_rows.to_array("<i8", ndim=1), fm.weights.shape[0],
                          "history rows")
        require(hist_rows.shape[0] == len(state.hist_items), "history rows of different lengths")
        history = count(state.history, "history", 1, 1 << 16)
        require(len(state.recent_users) == len(state.recent_items)
                and all(len(items) <= history for items in state.recent_items),
                "recent items of the wrong lengths")
        model = cls(n_factors=count(state.n_factors, "n_factors", 1, 1024), lr=state.lr,
                    l2=state.l2, n_negatives=count(state.n_negatives, "n_negatives", 0, 1024),
                    history=history, init_scale=state.init_scale,
                    item_features=state.item_features, seed=state.seed)
        model.fm, model._rng = fm, state.rng.to_rng()
        model._items.ids, model._items.index = list(state.items), distinct(state.items, "items")
        model._item_rows, model._item_values = rows, values
        model._recent = dict(zip(state.recent_users, (list(i) for i in state.recent_items)))
        require(len(model._recent) == len(state.recent_users), "recent items repeat a user")
        model._hist_rows = dict(zip(state.hist_items, hist_rows.tolist()))
        require(len(model._hist_rows) == len(state.hist_items), "history rows repeat an item")
        return model

    def score_all(self, user_id: str, recent_items: Sequence[str] | None = None) -> np.ndarray:
        """FM score of every known item for the user, minus the item-independent terms.

        ``recent_items`` (oldest first, as on ``user-state``) replaces the user's own history.
        """
        n = len(self._items)
        recent = None if recent_items is None else self.history_of(recent_items)
        rows_u, values_u = self._user_encoded(user_id, grow=False, recent=recent)
        user_sum = self.fm.latents[rows_u].T @ np.asarray(values_u, dtype=np.float32)
        rows, values = self._item_rows[:n], self._item_values[:n]
        vx = self.fm.latents[rows] * values[:, :, None]
        item_sum = vx.sum(axis=1)
        within = 0.5 * ((item_sum * item_sum).sum(axis=1) - (vx * vx).sum(axis=(1, 2)))
        linear = (self.fm.weights[rows] * values).sum(axis=1)
        return (linear + within + item_sum @ user_sum).astype(np.float64)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = (), *,
                  recent_items: Sequence[str] | None = None) -> Ranking:
        """Top-``k`` items; ``recent_items`` replaces the user's history (see ``score_all``)."""
        return self._items.rank(self.score_all(user_id, recent_items), k, exclude)


class OnlineBlend:
    """User embedding + FM + popularity/recency, fused by weighted reciprocal rank.

    ``score(i) = sum_c weight_c / (rrf_k + rank_c(i))`` over each component's top
    ``candidates`` items (a component that does not rank ``i`` adds nothing).

    Examples
    --------
    >>> from streamrec.events import ClickEvent
    >>> blend = OnlineBlend(seed=1)
    >>> for n in range(300):
    ...     user, item = f"u{n % 2}", f"i{(n % 2) * 3 + (n // 2) % 3}"
    ...     blend.learn_one(ClickEvent(event_id=str(n), user_id=user, item_id=item,
    ...                                type="click", ts=float(n)))
    >>> sorted(item for item, _ in blend.recommend("u0", k=3))
    ['i0', 'i1', 'i2']
    """

    def __init__(self, embedding_weight: float = 1.0, fm_weight: float = 1.0,
                 recency_weight: float = 0.3, candidates: int = 100, rrf_k: float = 10.0,
                 half_life_s: float = 7 * 24 * 3600.0, seed: int = 0) -> None:
        self.embedding_weight, self.fm_weight = embedding_weight, fm_weight
        self.recency_weight, self.candidates, self.rrf_k = recency_weight, candidates, rrf_k
        self.half_life_s, self.seed = half_life_s, seed
        self.embeddings = OnlineUserEmbeddings(seed=seed)
        self.fm = FMRecommender(seed=seed + 1)
        self.recency = PopularityRecency(half_life_s=half_life_s)

    def to_state(self) -> BlendState:
        """Hyper-parameters and learned state as plain data (``from_state`` restores it)."""
        return BlendState(
            embedding_weight=self.embedding_weight, fm_weight=self.fm_weight,
            recency_weight=self.recency_weight, candidates=self.candidates, rrf_k=self.rrf_k,
            half_life_s=self.half_life_s, seed=self.seed, embeddings=self.embeddings.to_state(),
            fm=self.fm.to_state(), recency=self.recency.to_state())

    @classmethod
    def from_state(cls, state: BlendState) -> "OnlineBlend":
        """The blend ``to_state`` exported, bit-identical in what it ranks and learns next.

        Raises ``StateError`` (a ``ValueError``) for anything inconsistent.
        """
        for name in ("embedding_weight", "fm_weight", "recency_weight"):
            weight(getattr(state, name), name)
        finite(state.half_life_s, "half_life_s")
        require(finite(state.rrf_k, "rrf_k") >= 0, "rrf_k must not be negative")
        blend = cls(embedding_weight=state.embedding_weight, fm_weight=state.fm_weight,
                    recency_weight=state.recency_weight,
                    candidates=count(state.candidates, "candidates", 1, 1 << 20),
                    rrf_k=state.rrf_k, half_life_s=state.half_life_s, seed=state.seed)
        blend.embeddings = OnlineUserEmbeddings.from_state(state.embeddings)
        blend.fm = FMRecommender.from_state(state.fm)
        blend.recency = PopularityRecency.from_state(state.recency)
        return blend

    def learn_one(self, event: ClickEvent) -> None:
        self.learn_many([event])

    def learn_many(self, events: Iterable[ClickEvent]) -> None:
        """Learn a micro-batch in every component (the ingest consumer's fixed-size chunks).

        The result depends on the event sequence and the chunking, never on Kafka's polls.
        """
        chunk = list(events)  # read three times: once per component
        self.embeddings.learn_many(chunk)
        self.fm.learn_many(chunk)
        for event in chunk:
            self.recency.learn_item(event.item_id, event.ts)

    def forget_user(self, user_id: str) -> None:
        """Erase the user from every component (``streamrec forget``)."""
        self.embeddings.forget_user(user_id)
        self.fm.forget_user(user_id)

    def knows_user(self, user_id: str) -> bool:
        """True while any component still holds something learned about the user."""
        return self.embeddings.knows_user(user_id) or self.fm.knows_user(user_id)

    def user_vector(self, user_id: str) -> list[float] | None:
        """The user's embedding vector (for the ``user-state`` message), or None."""
        return self.embeddings.user_vector(user_id)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return [(item, score) for item, score, _ in self.recommend_explained(user_id, k, exclude)]

    def recommend_explained(self, user_id: str, k: int, exclude: Collection[str] = ()
                            ) -> list[tuple[str, float, dict[str, float]]]:
        """Top-``k`` as (item, fused score, each component's 1-based rank or 0)."""
        return self.recommend_explained_for(user_id, None, None, k, exclude)

    def recommend_explained_for(self, user_id: str, vector: Sequence[float] | None,
                                recent_items: Sequence[str] | None, k: int,
                                exclude: Collection[str] = ()
                                ) -> list[tuple[str, float, dict[str, float]]]:
        """``recommend_explained`` for a user as a fresher source has them; writes nothing.

        The scorer holds a periodic snapshot of a partition's blend; each ``user-state``
        message carries the user's vector and recent items (oldest first, may repeat) as of
        ingest, fresher than the snapshot. The ranking is the one the snapshot would give
        with that vector and that FM history (None: the snapshot's own), computed without
        writing either into the models, so ranking never changes what is ranked next.
        Raises ``ValueError`` if the vector's size is not the embeddings' ``current_dim``.
        """
        depth = max(self.candidates, k)
        return self._fused([
            ("embedding", self.embedding_weight,
             lambda: self.embeddings.recommend(user_id, depth, exclude, vector=vector)),
            ("fm", self.fm_weight,
             lambda: self.fm.recommend(user_id, depth, exclude, recent_items=recent_items)),
            ("recency", self.recency_weight,
             lambda: self.recency.recommend(user_id, depth, exclude))], k)

    def _fused(self, components: list[tuple[str, float, Callable[[], Ranking]]], k: int
               ) -> list[tuple[str, float, dict[str, float]]]:
        """Weighted reciprocal-rank fusion of the components' rankings (of weight > 0)."""
        fused: dict[str, float] = {}
        ranks: dict[str, dict[str, float]] = {}
        for name, weight, ranking in components:
            if weight <= 0:
                continue
            for rank, (item, _) in enumerate(ranking(), 1):
                fused[item] = fused.get(item, 0.0) + weight / (self.rrf_k + rank)
                ranks.setdefault(item, {})[name] = float(rank)
        if not fused:
            return []
        items = list(fused)
        best = top_k(np.fromiter(fused.values(), dtype=np.float64, count=len(items)), k)
        return [(items[i], fused[items[i]], ranks[items[i]]) for i in best.tolist()]
