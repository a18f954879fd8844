"""The deep replay system under the shared learner check-suite, plus retraining behaviour."""

from __future__ import annotations

import pytest

from streamrec.export.recommender import DeepSequentialRecommender
from unit.learner_checks import learner_check_params, toy_stream


def _deep() -> DeepSequentialRecommender:
    # Tiny and single-threaded; TorchScript export because it is 10x faster to run often.
    return DeepSequentialRecommender(retrain_every=500, min_train_events=200, epochs=8,
                                     warm_epochs=3, dim=16, max_len=10, n_blocks=1,
                                     exporter="torchscript", threads=1, seed=0)


@pytest.mark.parametrize("check,factory", learner_check_params({"deep": _deep}))
def test_learner_checks(check, factory) -> None:
    check(factory)


def test_retrains_on_event_count_and_serves_through_onnx() -> None:
    model = _deep()
    for event in toy_stream(1100):
        model.learn_one(event)
    # The first model as soon as min_train_events are there (as the trainer service does),
    # then one every retrain_every events.
    assert [r["events"] for r in model.retrains] == [200.0, 700.0]
    assert model.serving is not None and model.trained.warm_started
    assert all(r["export_and_parity_s"] > 0 for r in model.retrains)
    ranking = model.recommend("u1", 5)
    assert len(ranking) == 5


def test_torch_serving_ranks_like_onnx() -> None:
    events = toy_stream(600)
    onnx_model, torch_model = _deep(), _deep()
    torch_model.serve_with = "torch"
    for event in events:
        onnx_model.learn_one(event)
        torch_model.learn_one(event)
    for user in ("u0", "u1", "u7"):
        a = onnx_model.recommend(user, 5)
        b = torch_model.recommend(user, 5)
        assert [i for i, _ in a] == [i for i, _ in b]
        assert all(abs(x - y) < 1e-5 for (_, x), (_, y) in zip(a, b))


def test_serving_session_threads_are_set_apart_from_training_threads() -> None:
    # Replay serves one user per ONNX Runtime call: one intra-op thread unless asked.
    events = toy_stream(250)
    single, double = _deep(), _deep()
    double.serving_threads = 2
    for event in events:
        single.learn_one(event)
        double.learn_one(event)
    assert single.threads == double.threads == 1
    assert single.serving._session.get_session_options().intra_op_num_threads == 1
    assert double.serving._session.get_session_options().intra_op_num_threads == 2


def test_without_warm_start_every_retrain_starts_fresh_for_the_full_epochs() -> None:
    model = _deep()
    model.warm_start = False
    for event in toy_stream(1100):
        model.learn_one(event)
    assert [r["epochs"] for r in model.retrains] == [8.0, 8.0]
    assert not model.trained.warm_started


def test_the_replay_trainer_context_is_capped_by_the_user_state_length() -> None:
    # The scorer feeds the deep model the state's recent items: a context longer than those
    # could never be filled in production.
    from streamrec.app.evaluation.systems import (DEEP_TRAINER, SystemOptions,
                                                  build_deep_trainer)
    from streamrec.config import Settings

    default = build_deep_trainer(SystemOptions())
    assert default.max_len == DEEP_TRAINER["max_len"] < Settings().recent_items
    short_state = build_deep_trainer(SystemOptions(Settings(recent_items=8)))
    assert short_state.max_len == 8
    assert build_deep_trainer(SystemOptions(), max_len=12).max_len == 12


def test_production_trains_the_context_replay_trains():
    # One path: the trainer service, the `streamrec train` default and the demo's trainer
    # read the context the replay's deep trainer was chosen with.
    import argparse

    from streamrec.app.commands.train import register
    from streamrec.app.demo import demo_trainer_config
    from streamrec.app.evaluation.systems import DEEP_TRAINER
    from streamrec.config import Settings
    from streamrec.consumers.train import TrainerConfig

    assert TrainerConfig().max_len == DEEP_TRAINER["max_len"]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--once"])
    assert args.max_len == DEEP_TRAINER["max_len"]
    assert demo_trainer_config(Settings(), seed=7, background=True).max_len == DEEP_TRAINER["max_len"]
    assert demo_trainer_config(Settings(recent_items=8), seed=7, background=True).max_len == 8
