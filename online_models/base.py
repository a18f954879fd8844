"""The interface every recommender in streamrec implements, systems and baselines alike."""

from __future__ import annotations

from typing import Collection, Protocol, runtime_checkable

from streamrec.events import ClickEvent

# A ranked recommendation list: (item_id, score), best first.
Ranking = list[tuple[str, float]]


@runtime_checkable
class Recommender(Protocol):
    """An online recommender: learns one event at a time, ranks without side effects.

    ``recommend`` must never mutate state (river's reco models insert a random vector for an
    unseen user on ``predict_one``; implementations guard against that), and must never
    return an item in ``exclude``. It may return fewer than ``k`` items.
    """

    def learn_one(self, event: ClickEvent) -> None: ...

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Ranking: ...
