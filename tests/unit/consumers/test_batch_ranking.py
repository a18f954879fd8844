"""fuse_many fuses a batch of triggers exactly as fuse fuses each one."""

from __future__ import annotations

import random

import numpy as np
import pytest

from streamrec.consumers import batch_ranking
from streamrec.consumers.batch_ranking import (
    CovisitRow,
    FusionWeights,
    ItemSlots,
    TriggerLists,
    fuse_many,
)
from streamrec.consumers.ranking import fuse
from streamrec.export.candidates import NO_CANDIDATES, DeepCandidate, DeepRow


class FakeVocab:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids


class FakeModel:
    def __init__(self, ids: list[str]) -> None:
        self.vocab = FakeVocab(ids)


def random_trigger(rng: random.Random, model: FakeModel
                   ) -> tuple[TriggerLists, list, list[tuple[str, float]],
                              list[tuple[str, float]]]:
    items = [f"i{n}" for n in range(60)]
    k = rng.choice([1, 3, 10, 40])
    online = [(item, rng.random(), {"popularity": rng.random(), "recency": 0.5})
              for item in rng.sample(items, rng.randrange(0, 30))]
    deep_rows = np.array(rng.sample(range(len(model.vocab.ids)), rng.choice([0, 5, 25])),
                         dtype=np.int64)
    log_probs = np.array([-rng.random() * 5 for _ in deep_rows], dtype=np.float32)
    deep = (DeepRow(model, deep_rows, log_probs, log_probs) if len(deep_rows) else NO_CANDIDATES)
    covisit = [(item, rng.random()) for item in rng.sample(items, rng.choice([0, 4, 20]))]
    table = [f"i{n}" for n in range(59, -1, -1)]  # the item side's own row order
    rows = np.array([table.index(item) for item, _ in covisit], dtype=np.int64)
    row = CovisitRow(table, rows, np.array([score for _, score in covisit]))
    transitions = [(item, rng.random()) for item in rng.sample(items, rng.choice([0, 3, 15]))]
    transition_row = CovisitRow(table, np.array([table.index(i) for i, _ in transitions],
                                                dtype=np.int64),
                                np.array([score for _, score in transitions]))
    candidates = [DeepCandidate(model.vocab.ids[r], float(lp), float(lp))
                  for r, lp in zip(deep_rows.tolist(), log_probs.tolist())]
    return (TriggerLists(k=k, online_list=online, deep=deep, covisit=row,
                         transition=transition_row), candidates, covisit, transitions)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dict_fusion_max", [0, 10_000])  # the array path, the dict path
def test_fuse_many_is_fuse_of_every_trigger(seed: int, dict_fusion_max: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_ranking, "DICT_FUSION_MAX_TRIGGERS", dict_fusion_max)
    rng = random.Random(seed)
    model = FakeModel([f"i{n}" for n in range(30, 90)])  # overlaps the online items
    weights = FusionWeights(online=1.0, deep=rng.choice([0.5, 1.0]), covisit=1.0,
                            transition=rng.choice([0.5, 2.0]))
    triggers, expected = [], []
    for _ in range(50):
        trigger, candidates, covisit, transitions = random_trigger(rng, model)
        triggers.append(trigger)
        if candidates or covisit or transitions:
            expected.append(fuse(trigger.online_list, candidates, trigger.k,
                                 online_weight=weights.online, deep_weight=weights.deep,
                                 covisit=covisit, covisit_weight=weights.covisit,
                                 transitions=transitions,
                                 transition_weight=weights.transition))
        else:
            expected.append(trigger.online_list[:trigger.k])
    got = fuse_many(triggers, ItemSlots(), weights)
    assert any(len(candidates) for candidates in expected)
    assert any("transition_rank" in parts for ranked in expected for _, _, parts in ranked)
    assert got == expected  # items, order, scores and every explanation, bit for bit


@pytest.mark.parametrize("dict_fusion_max", [0, 10_000])
def test_ties_break_by_item_id_as_fuse_does(dict_fusion_max: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_ranking, "DICT_FUSION_MAX_TRIGGERS", dict_fusion_max)
    # Two items each ranked first by one source with equal weights: the same score.
    covisit = CovisitRow(["a"], np.array([0]), np.array([0.3]))
    trigger = TriggerLists(k=2, online_list=[("b", 1.0, {})], covisit=covisit)
    expected = fuse([("b", 1.0, {})], [], 2, covisit=[("a", 0.3)])
    assert [item for item, _, _ in expected] == ["a", "b"]
    assert fuse_many([trigger], ItemSlots(), FusionWeights(1.0, 1.0, 1.0)) == [expected]
