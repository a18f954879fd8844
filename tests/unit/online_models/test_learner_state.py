"""Learners exported as plain data and imported back: bit-identical now and after learning."""

from __future__ import annotations

from typing import Callable

import msgspec
import numpy as np
import pytest
from unit.learner_checks import learned_state, toy_stream

from streamrec.online_models.blend import BlendState, FMRecommender, FMRecommenderState, OnlineBlend
from streamrec.online_models.embedding_table import EmbeddingTable
from streamrec.online_models.embeddings import EmbeddingsState, OnlineUserEmbeddings
from streamrec.online_models.fm import NumpyFM, NumpyFMState
from streamrec.online_models.learner_state import ArrayState, RngState, StateError
from streamrec.online_models.popularity import PopularityRecency, PopularityState
from streamrec.events import ClickEvent

Learner = OnlineBlend | OnlineUserEmbeddings | FMRecommender | PopularityRecency

CASES: dict[str, tuple[Callable[[], Learner], type]] = {
    "blend": (lambda: OnlineBlend(seed=3), BlendState),
    "embeddings-ttl-admission-popularity": (lambda: OnlineUserEmbeddings(
        dim=8, ttl_s=4000.0, admission_threshold=2, negative_sampling="popularity",
        popularity_window=50, pool_size=64, loss="logistic", seed=5), EmbeddingsState),
    "fm-ranker": (lambda: FMRecommender(n_factors=6, history=3, seed=2), FMRecommenderState),
    "popularity": (lambda: PopularityRecency(half_life_s=600.0), PopularityState),
}


def round_trip(model: Learner, state_type: type) -> Learner:
    """Through bytes, as a snapshot travels: encode the state, decode it typed, import it."""
    encoded = msgspec.msgpack.encode(model.to_state())
    return type(model).from_state(msgspec.msgpack.Decoder(state_type).decode(encoded))


def learn(model: Learner, events: list[ClickEvent], chunk: int = 32) -> None:
    for start in range(0, len(events), chunk):
        batch = events[start:start + chunk]
        if isinstance(model, PopularityRecency):
            for event in batch:
                model.learn_one(event)
        else:
            model.learn_many(batch)


def probe(model: Learner) -> list:
    users = ["u0", "u1", "u7", "nobody"]
    return [model.recommend(u, 8) for u in users] + [model.recommend("u1", 5, exclude={"i0"})]


@pytest.mark.parametrize("name", list(CASES))
def test_a_restored_learner_is_bit_identical_and_learns_on_identically(name: str) -> None:
    factory, state_type = CASES[name]
    events = toy_stream(1200)
    original = factory()
    learn(original, events[:700])
    restored = round_trip(original, state_type)
    assert learned_state(restored) == learned_state(original)
    assert probe(restored) == probe(original)
    # The same further events: same random draws, same steps, same rankings and bytes.
    learn(original, events[700:])
    learn(restored, events[700:])
    assert learned_state(restored) == learned_state(original)
    assert probe(restored) == probe(original)
    assert msgspec.msgpack.encode(restored.to_state()) == msgspec.msgpack.encode(
        original.to_state())


def test_a_fresh_learner_round_trips_too() -> None:
    for factory, state_type in CASES.values():
        fresh = factory()
        assert learned_state(round_trip(fresh, state_type)) == learned_state(fresh)


def test_the_blend_keeps_user_vectors_forgets_and_adoptions() -> None:
    blend = OnlineBlend(seed=1)
    learn(blend, toy_stream(600), chunk=128)
    blend.forget_user("u3")
    items = [f"i{n}" for n in range(40)]
    blend.embeddings.adopt_item_table(items, np.random.default_rng(2).normal(size=(40, 5)))
    blend.embeddings.set_user_vector("u9", [0.5] * 5)  # a user only user-state knew
    restored = round_trip(blend, BlendState)
    assert restored.embeddings.current_dim == 5 and not restored.knows_user("u3")
    assert restored.user_vector("u9") == blend.user_vector("u9") == [0.5] * 5
    assert restored.recommend_explained("u1", 10) == blend.recommend_explained("u1", 10)
    more = toy_stream(900)[600:]
    learn(blend, more, chunk=128)
    learn(restored, more, chunk=128)
    assert learned_state(restored) == learned_state(blend)


def test_a_hashed_fm_round_trips() -> None:
    fm = NumpyFM(n_factors=4, n_buckets=97, seed=4)
    X = [{"user": f"u{n % 7}", "item": f"i{n % 11}"} for n in range(200)]
    fm.learn_many(X, [n % 3 == 0 for n in range(200)])
    restored = NumpyFM.from_state(msgspec.msgpack.Decoder(NumpyFMState).decode(
        msgspec.msgpack.encode(fm.to_state())))
    assert learned_state(restored) == learned_state(fm)
    np.testing.assert_array_equal(restored.predict_many(X), fm.predict_many(X))


def test_rng_state_is_exact_data() -> None:
    rng = np.random.default_rng(11)
    rng.random(3)
    rng.integers(2 ** 31, size=1, dtype=np.uint32)  # leaves a buffered 32-bit word
    copy = RngState.of(rng).to_rng()
    assert copy.bit_generator.state == rng.bit_generator.state
    assert copy.random(5).tolist() == rng.random(5).tolist()


# -- hostile state: one StateError, never an IndexError later --------------------------------
def _learned_embeddings() -> OnlineUserEmbeddings:
    model = OnlineUserEmbeddings(dim=4, seed=0)
    for event in toy_stream(200):
        model.learn_one(event)
    return model


def _table_with(**changes: ArrayState | list[str]) -> EmbeddingTable:
    state = _learned_embeddings()._items.to_state()
    return EmbeddingTable.from_state(msgspec.structs.replace(state, **changes))


def test_arrays_are_checked_before_use() -> None:
    good = ArrayState.of(np.ones((2, 3), dtype=np.float32))
    assert good.to_array("<f4", ndim=2).shape == (2, 3)
    with pytest.raises(StateError, match="dtype"):
        good.to_array("<f8", ndim=2)
    with pytest.raises(StateError, match="dimensions"):
        good.to_array("<f4", ndim=1)
    with pytest.raises(StateError, match="needs"):
        ArrayState("<f4", [1000, 1000], good.data).to_array("<f4", ndim=2)
    with pytest.raises(StateError, match="range"):
        ArrayState("<f4", [-2, -3], good.data).to_array("<f4", ndim=2)
    with pytest.raises(StateError, match="NaN"):
        ArrayState.of(np.array([1.0, np.nan])).to_array("<f8", ndim=1, finite=True)
    with pytest.raises(StateError, match="bool"):
        ArrayState("|b1", [2], memoryview(b"\x01\x07")).to_array("|b1", ndim=1)
    with pytest.raises(StateError, match="rng"):
        RngState("-1", "3", 0, 0).to_rng()
    with pytest.raises(StateError, match="rng"):
        RngState(str(1 << 130), "3", 0, 0).to_rng()


@pytest.mark.parametrize("change", [
    {"vectors": ArrayState.of(np.full((64, 4), np.inf, dtype=np.float32))},
    {"bias": ArrayState.of(np.zeros(3, dtype=np.float32))},
    {"index_slots": ArrayState.of(np.array([0, 0], dtype=np.int64))},
    {"index_slots": ArrayState.of(np.array([10_000], dtype=np.int64))},
    {"free": ArrayState.of(np.array([1], dtype=np.int64))},
    {"ids": ["x"] * 40},
    {"alive": ArrayState.of(np.ones(64, dtype=bool))},
])
def test_an_inconsistent_table_is_refused(change: dict) -> None:
    with pytest.raises(StateError):
        _table_with(**change)


def test_indices_into_other_arrays_are_refused() -> None:
    state = _learned_embeddings().to_state()
    for change in ({"recent": ArrayState.of(np.full(20_000, 10 ** 6, dtype=np.int64))},
                   {"pool": ArrayState.of(np.array([2.0]))}, {"pool_pos": 10 ** 6},
                   {"n_negatives": 10 ** 9}, {"pool_size": 1 << 40}, {"loss": "hinge"},
                   {"init_scale": -1.0}, {"lr": float("nan")}):
        with pytest.raises(ValueError):  # StateError, or the constructor's own ValueError
            OnlineUserEmbeddings.from_state(msgspec.structs.replace(state, **change))
    fm = FMRecommender(n_factors=4, seed=1)
    learn(fm, toy_stream(100))
    fm_state = fm.to_state()
    rows = np.full((64, 2), 10 ** 7, dtype=np.int64)
    with pytest.raises(StateError, match="item rows"):
        FMRecommender.from_state(msgspec.structs.replace(fm_state, item_rows=ArrayState.of(rows)))
    with pytest.raises(StateError, match="FM"):
        FMRecommender.from_state(msgspec.structs.replace(fm_state, fm=msgspec.structs.replace(
            fm_state.fm, size=10 ** 9)))


# -- hostile magnitudes: finite but huge values would overflow scores into inf and NaN -------
def test_learned_weights_above_the_magnitude_bound_are_refused() -> None:
    huge = np.full((64, 4), 1e30, dtype=np.float32)  # finite, yet any dot product overflows
    with pytest.raises(StateError, match="magnitude"):
        _table_with(vectors=ArrayState.of(huge))
    with pytest.raises(StateError, match="magnitude"):
        _table_with(bias=ArrayState.of(np.full(64, -5e4, dtype=np.float32)))
    fm = FMRecommender(n_factors=4, seed=1)
    learn(fm, toy_stream(100))
    fm_state = fm.to_state().fm
    rows = fm_state.weights.shape[0]
    for change in ({"latents": ArrayState.of(np.full((rows, 4), 1e20, np.float32))},
                   {"weights": ArrayState.of(np.full(rows, 1e20, np.float32))},
                   {"intercept": 1e300}):
        with pytest.raises(StateError, match="magnitude"):
            NumpyFM.from_state(msgspec.structs.replace(fm_state, **change))


def test_learning_rates_and_fusion_weights_are_bounded_on_import() -> None:
    state = _learned_embeddings().to_state()
    for name in ("lr", "l2", "init_scale"):
        with pytest.raises(StateError, match=name):
            OnlineUserEmbeddings.from_state(msgspec.structs.replace(state, **{name: 1e30}))
    blend = OnlineBlend(seed=3)
    learn(blend, toy_stream(100))
    blend_state = blend.to_state()
    for name in ("embedding_weight", "fm_weight", "recency_weight"):
        with pytest.raises(StateError, match=name):
            OnlineBlend.from_state(msgspec.structs.replace(blend_state, **{name: 1e200}))
    # The bounds leave every default and learned value through.
    assert OnlineBlend.from_state(blend_state).recommend("u1", 3) == blend.recommend("u1", 3)
