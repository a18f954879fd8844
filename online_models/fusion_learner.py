"""Learned fusion: the weights of the scorer's sources, learned from the clicks that follow.

The scorer fuses its sources (online blend, deep model, co-visitation, transitions) by
weighted reciprocal rank: an item listed at rank ``r`` by a source gets
``w_source / (rrf_k + r)``. ``PairwiseFusion`` learns the weights online. After each
recommendation the user's next click is compared with the items the recommendation showed:
every shown item that was not clicked is a pair (clicked over shown), and a pairwise logistic
step moves weight towards the sources that ranked the clicked item better. The weights stay
non-negative with a fixed sum (the shipped weights' sum): the fused order depends only on
their ratios, and a fixed sum keeps the step size meaningful. A click on an item that no
source listed teaches nothing (no weighting of these sources would have shown it).

``FusedRecommender`` runs the same learner over any ``Recommender`` sources, so the shared
check-suite exercises it the way the scorer does: rank, then learn from the next click.
"""

from __future__ import annotations

from typing import Collection, Mapping, Sequence

import numpy as np

from streamrec.online_models.base import Ranking, Recommender
from streamrec.events import ClickEvent

# The reciprocal-rank constant the scorer's fusion uses (consumers/ranking.py RRF_K).
DEFAULT_RRF_K = 10.0


def rank_features(ranks: np.ndarray, rrf_k: float = DEFAULT_RRF_K) -> np.ndarray:
    """Each source's fusion term per unit weight, scaled so rank 1 gives 1.0; 0 = unlisted."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks > 0, (rrf_k + 1.0) / (rrf_k + np.maximum(ranks, 1.0)), 0.0)


def project_to_simplex(values: np.ndarray, total: float) -> np.ndarray:
    """The closest vector to ``values`` with non-negative entries summing to ``total``."""
    if total <= 0:
        return np.zeros_like(values)
    ordered = np.sort(values)[::-1]
    cumulative = np.cumsum(ordered) - total
    index = np.arange(1, values.shape[0] + 1)
    feasible = ordered - cumulative / index > 0
    last = int(np.flatnonzero(feasible)[-1])
    threshold = cumulative[last] / (last + 1)
    return np.maximum(values - threshold, 0.0)


class PairwiseFusion:
    """Online pairwise ranker over per-source reciprocal ranks; weights ≥ 0, fixed sum.

    Parameters
    ----------
    initial
        The starting weights, one per source (the scorer's fixed weights): their sum is kept.
    learning_rate
        Step size of one click's update (0: the weights never move, fixed fusion).
    rrf_k
        The fusion's reciprocal-rank constant.

    Examples
    --------
    A source that keeps ranking the clicked item first gains weight:

    >>> fusion = PairwiseFusion([1.0, 1.0], learning_rate=0.1)
    >>> for _ in range(20):
    ...     _ = fusion.learn_one(clicked=[1, 0], shown=[[0, 1], [0, 2]])
    >>> bool(fusion.weights[0] > 1.5 > fusion.weights[1])
    True
    >>> round(float(fusion.weights.sum()), 9)
    2.0
    """

    def __init__(self, initial: Sequence[float], learning_rate: float = 0.01,
                 rrf_k: float = DEFAULT_RRF_K) -> None:
        start = np.array([float(w) for w in initial], dtype=np.float64)
        if start.ndim != 1 or start.shape[0] == 0 or not np.all(np.isfinite(start)):
            raise ValueError("initial weights must be a non-empty list of finite numbers")
        if np.any(start < 0) or start.sum() <= 0:
            raise ValueError("initial weights must be >= 0 with a positive sum")
        if not np.isfinite(learning_rate) or learning_rate < 0:
            raise ValueError("learning_rate must be a finite number >= 0")
        self.initial = tuple(float(w) for w in start)
        self.learning_rate = float(learning_rate)
        self.rrf_k = float(rrf_k)
        self.total = float(start.sum())
        # Learned state.
        self.weights = start
        self.updates = 0

    def set_weights(self, weights: Sequence[float], updates: int) -> None:
        """Adopt learned weights (a restored snapshot), projected onto this learner's sum."""
        values = np.array([float(w) for w in weights], dtype=np.float64)
        if values.shape != self.weights.shape or not np.all(np.isfinite(values)):
            raise ValueError(f"expected {self.weights.shape[0]} finite weights")
        self.weights = project_to_simplex(values, self.total)
        self.updates = int(updates)

    def scores(self, ranks: np.ndarray) -> np.ndarray:
        """The fused score of rows of per-source ranks, in units of ``(rrf_k + 1)``."""
        return rank_features(ranks, self.rrf_k) @ self.weights

    def learn_one(self, clicked: Sequence[int], shown: Sequence[Sequence[int]]) -> bool:
        """One click: the clicked item's rank per source against each shown, unclicked item's.

        Ranks are 1-based, 0 where the source did not list the item. Returns whether the
        weights were updated (nothing is learned from a click no source listed, or with
        nothing shown beside it).
        """
        clicked_features = rank_features(np.asarray(clicked).reshape(1, -1), self.rrf_k)[0]
        shown_ranks = np.asarray(shown, dtype=np.float64).reshape(-1, clicked_features.shape[0])
        if shown_ranks.shape[0] == 0 or not clicked_features.any() or self.learning_rate == 0:
            return False
        differences = clicked_features - rank_features(shown_ranks, self.rrf_k)
        margins = differences @ self.weights
        # d/dw log(sigmoid(margin)) = sigmoid(-margin) * difference, averaged over the pairs.
        pull = 1.0 / (1.0 + np.exp(np.clip(margins, -50.0, 50.0)))
        gradient = (pull[:, None] * differences).mean(axis=0)
        self.weights = project_to_simplex(self.weights + self.learning_rate * gradient,
                                          self.total)
        self.updates += 1
        return True


def _ranks_in(lists: Sequence[Sequence[str]], item_id: str) -> list[int]:
    """``item_id``'s 1-based rank in each list; 0 where it is not listed."""
    ranks = []
    for listed in lists:
        try:
            ranks.append(listed.index(item_id) + 1)  # type: ignore[attr-defined]
        except ValueError:
            ranks.append(0)
    return ranks


class FusedRecommender:
    """Any ``Recommender`` sources, fused by weighted reciprocal rank with learned weights.

    ``learn_one`` first ranks the event's user as ``recommend`` would (sources asked
    ``depth`` deep, the user's seen items excluded), lets the fusion learn from the event's
    item against the top ``shown``, then lets every source learn the event: prequential,
    as the scorer learns between a recommendation and the click that follows it.

    >>> from streamrec.online_models.baselines import MarkovChain, MostPopular
    >>> model = FusedRecommender({"popular": MostPopular(), "markov": MarkovChain()},
    ...                          PairwiseFusion([1.0, 1.0], learning_rate=0.05))
    >>> clicks = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u0", "a")]
    >>> for n, (user, item) in enumerate(clicks):
    ...     model.learn_one(ClickEvent(event_id=str(n), user_id=user, item_id=item,
    ...                                type="click", ts=float(n)))
    >>> [item for item, _ in model.recommend("u0", 2)]
    ['b', 'c']
    """

    def __init__(self, sources: Mapping[str, Recommender], fusion: PairwiseFusion,
                 depth: int = 50, shown: int = 10) -> None:
        if len(sources) != fusion.weights.shape[0]:
            raise ValueError("one initial fusion weight per source")
        self.sources = dict(sources)
        self.fusion = fusion
        self.depth = depth
        self.shown = shown
        self.seen: dict[str, set[str]] = {}

    def _lists(self, user_id: str, exclude: Collection[str]) -> list[list[str]]:
        excluded = set(exclude) | self.seen.get(user_id, set())
        return [[item for item, _ in source.recommend(user_id, self.depth, excluded)]
                for source in self.sources.values()]

    def _fused(self, lists: list[list[str]], k: int) -> list[tuple[str, float, list[int]]]:
        candidates = sorted({item for listed in lists for item in listed})
        if not candidates or k <= 0:
            return []
        ranks = np.array([_ranks_in(lists, item) for item in candidates])
        scores = self.fusion.scores(ranks)
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i]))[:k]
        return [(candidates[i], float(scores[i]), ranks[i].tolist()) for i in order]

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking:
        return [(item, score) for item, score, _ in self._fused(self._lists(user_id, exclude), k)]

    def learn_one(self, event: ClickEvent) -> None:
        user_seen = self.seen.setdefault(event.user_id, set())
        if user_seen and event.item_id not in user_seen:
            lists = self._lists(event.user_id, ())
            shown = [ranks for item, _, ranks in self._fused(lists, self.shown)
                     if item != event.item_id]
            self.fusion.learn_one(_ranks_in(lists, event.item_id), shown)
        for source in self.sources.values():
            source.learn_one(event)
        user_seen.add(event.item_id)
