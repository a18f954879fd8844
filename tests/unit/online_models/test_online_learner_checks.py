"""The shared learner check-suite, run on every online learner of issue 4."""

from __future__ import annotations

import pytest
from unit.learner_checks import learner_check_params

from streamrec.online_models.blend import FMRecommender, OnlineBlend
from streamrec.online_models.embeddings import OnlineUserEmbeddings

FACTORIES = {
    "online-embedding": lambda: OnlineUserEmbeddings(dim=16, seed=3),
    "online-embedding-popneg": lambda: OnlineUserEmbeddings(
        dim=16, negative_sampling="popularity", loss="logistic", seed=3),
    "online-embedding-bounded": lambda: OnlineUserEmbeddings(
        dim=16, admission_threshold=2, ttl_s=6 * 3600.0, seed=3),
    "online-fm": lambda: FMRecommender(n_factors=8, seed=3),
    "online-blend": lambda: OnlineBlend(seed=3),
}


@pytest.mark.parametrize("check,factory", learner_check_params(FACTORIES))
def test_learner_checks(check, factory):
    check(factory)
