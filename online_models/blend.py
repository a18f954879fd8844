"""Recommenders built on the online learners: the FM as a ranker, and their blend.

``FMRecommender`` learns a :class:`online_models.fm.NumpyFM` on (user, recent items, item,
item metadata) rows, one positive and sampled negatives per event, and ranks every known
item for a user in one vectorised pass. The recent-items field lets the FM learn
item-to-item affinities (what follows what), which a user vector alone learns slowly.

``OnlineBlend`` runs the online user embedding, the FM and popularity/recency side by side
and fuses their rankings (weighted reciprocal-rank fusion: no score calibration needed).
"""

from __future__ import annotations

from typing import Collection, Mapping

import numpy as np

from online_models.base import Ranking, Recommender
from online_models.baselines import ItemIndex, top_k
from online_models.embeddings import OnlineUserEmbeddings
from online_models.fm import NumpyFM
from online_models.popularity import PopularityRecency
from streamrec.events import ClickEvent

ItemFeatures = Mapping[str, Mapping[str, "str | float"]]


class FMRecommender:
    """An online FM over user, recent items, item and item metadata, as a ``Recommender``.

    Parameters
    ----------
    n_factors, lr, l2, init_scale
        Passed to :class:`~online_models.fm.NumpyFM`.
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
        self._recent: dict[str, list[str]] = {}

    def _user_side(self, user_id: str) -> dict[str, str | float]:
        recent = self._recent.get(user_id, [])
        side: dict[str, str | float] = {"user": user_id}
        side.update({f"hist_{item}": 1.0 / len(recent) for item in recent})
        return side

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
        self._add_item(event.item_id)
        user_side = self._user_side(event.user_id)
        picks = self._rng.integers(len(self._items), size=self.n_negatives)
        negatives = [self._items.ids[p] for p in picks.tolist()
                     if self._items.ids[p] != event.item_id]
        X = [{**user_side, **self._item_side(item)} for item in [event.item_id, *negatives]]
        self.fm.learn_many(X, [True] + [False] * len(negatives))
        recent = self._recent.setdefault(event.user_id, [])
        if event.item_id in recent:
            recent.remove(event.item_id)
        recent.append(event.item_id)
        del recent[: -self.history]

    def score_all(self, user_id: str) -> np.ndarray:
        """FM score of every known item for the user, minus the item-independent terms."""
        n = len(self._items)
        user_rows, user_values = self.fm.encode([self._user_side(user_id)], grow=False)
        user_sum = (self.fm.latents[user_rows[0]] * user_values[0][:, None]).sum(axis=0)
        rows, values = self._item_rows[:n], self._item_values[:n]
        vx = self.fm.latents[rows] * values[:, :, None]
        item_sum = vx.sum(axis=1)
        within = 0.5 * ((item_sum * item_sum).sum(axis=1) - (vx * vx).sum(axis=(1, 2)))
        linear = (self.fm.weights[rows] * values).sum(axis=1)
        return (linear + within + item_sum @ user_sum).astype(np.float64)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return self._items.rank(self.score_all(user_id), k, exclude)


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

    def learn_one(self, event: ClickEvent) -> None:
        self.embeddings.learn_one(event)
        self.fm.learn_one(event)
        self.recency.learn_one(event)

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return [(item, score) for item, score, _ in self.recommend_explained(user_id, k, exclude)]

    def recommend_explained(self, user_id: str, k: int, exclude: Collection[str] = ()
                            ) -> list[tuple[str, float, dict[str, float]]]:
        """Top-``k`` as (item, fused score, each component's 1-based rank or 0)."""
        depth = max(self.candidates, k)
        components: list[tuple[str, float, Recommender]] = [
            ("embedding", self.embedding_weight, self.embeddings),
            ("fm", self.fm_weight, self.fm), ("recency", self.recency_weight, self.recency)]
        fused: dict[str, float] = {}
        ranks: dict[str, dict[str, float]] = {}
        for name, weight, model in components:
            if weight <= 0:
                continue
            for rank, (item, _) in enumerate(model.recommend(user_id, depth, exclude), 1):
                fused[item] = fused.get(item, 0.0) + weight / (self.rrf_k + rank)
                ranks.setdefault(item, {})[name] = float(rank)
        if not fused:
            return []
        items = list(fused)
        best = top_k(np.fromiter(fused.values(), dtype=np.float64, count=len(items)), k)
        return [(items[i], fused[items[i]], ranks[items[i]]) for i in best.tolist()]
