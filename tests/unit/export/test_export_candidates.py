"""Deep candidate generation: batched, exact against per-user serving, swap by replacement."""

from __future__ import annotations

import math

import numpy as np

from streamrec.export.candidates import NO_MODEL, DeepCandidateGenerator
from streamrec.export.serving import OnnxSequenceModel


def test_no_model_means_no_candidates_and_says_so() -> None:
    generator = DeepCandidateGenerator(None, candidates=5)
    assert generator.model_version == NO_MODEL
    assert generator.generate([["i1"], []]) == [[], []]


def test_batch_matches_single_user_ranking(published) -> None:
    store, _ = published
    model = OnnxSequenceModel(store.path("v000001"), threads=1)
    generator = DeepCandidateGenerator(None, candidates=6).with_model(model)
    assert generator.model_version == "v000001"
    sequences = [["i1", "i2"], ["unknown"], [], ["i5"]]
    excludes = [{"i1", "i2"}, set(), set(), {"i5"}]
    out = generator.generate(sequences, excludes)
    assert out[1] == [] and out[2] == []  # nothing the model can read
    for user in (0, 3):
        single = model.recommend([sequences[user]], 6, [excludes[user]])[0]
        assert [c.item_id for c in out[user]] == [item for item, _ in single]
        assert not excludes[user] & {c.item_id for c in out[user]}
    # log-probabilities are a proper softmax over the whole catalogue
    vector = model.user_vectors([sequences[0]])[0]
    all_scores = model.item_table[1:] @ vector
    log_norm = math.log(np.exp(all_scores.astype(np.float64)).sum())
    first = out[0][0]
    assert abs(first.log_prob - (first.score - log_norm)) < 1e-4
    assert all(c.log_prob < 0 for c in out[0])
