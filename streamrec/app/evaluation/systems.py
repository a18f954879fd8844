"""The one registry of recommenders that replay can run, by the names the CLI accepts.

``streamrec`` is the system under test, built by ``streamrec.app.pipeline.build_online_system``
from the same processor objects the Kafka consumers use; it is imported lazily so that the
baselines still run when the pipeline (or one of its dependencies) is unavailable. The
others are the baselines of ``streamrec.online_models.baselines``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from streamrec.online_models.base import Recommender
from streamrec.config import Settings


class SystemUnavailable(RuntimeError):
    """A named system cannot be built here; the message says why."""


@dataclass(frozen=True)
class SystemOptions:
    """What factories may use: the frozen settings and the replay seed."""

    settings: Settings = field(default_factory=Settings)
    seed: int = 0


SystemFactory = Callable[[SystemOptions], Recommender]


def _streamrec(options: SystemOptions) -> Recommender:
    try:
        from streamrec.app.pipeline import build_online_system
    except ImportError as exc:
        raise SystemUnavailable(
            f"the streamrec system needs streamrec.app.pipeline.build_online_system ({exc})"
        ) from None
    return build_online_system(options.settings)


def _most_popular(options: SystemOptions) -> Recommender:
    from streamrec.online_models.baselines import MostPopular
    return MostPopular()


def _recent_popular(options: SystemOptions) -> Recommender:
    from streamrec.online_models.baselines import RecentPopular
    return RecentPopular(half_life_s=options.settings.popularity_half_life_s)


def _item_knn(options: SystemOptions) -> Recommender:
    from streamrec.online_models.baselines import ItemKNN
    return ItemKNN(recent=20)


def _markov(options: SystemOptions) -> Recommender:
    from streamrec.online_models.baselines import MarkovChain
    return MarkovChain()


def _river_mf(options: SystemOptions) -> Recommender:
    from streamrec.online_models.baselines import RiverMF
    return RiverMF(seed=options.seed)


# How the replay's deep trainer (``deep``, ``streamrec-full``) runs, beside what
# DeepSequentialRecommender defaults to. First model at 1,000 events, then a warm retrain
# every ``retrain_every`` events, on the past only; served via ONNX Runtime.
# - retrain_every / warm_epochs: chosen on the first half of ML-100K only (replay of events
#   < 50,000, NDCG@10 on events 25,000-50,000; benchmarks/replay.py --full-variants):
#   5,000x5 0.1019, 10,000x5 0.1001, 5,000x2 0.0995, 10,000x2 0.0948, 20,000x5 0.0936.
#   The cheapest within 0.002 (about 2%) of the best: 10,000x5, which trains on half the
#   event-epochs of 5,000x5 (5 warm retrains by event 50,000 instead of 10).
# - exporter: TorchScript exports in ~0.5 s against dynamo's ~6 s and passes the same
#   parity gate; on the pinned log and the ML-100K 8k prefix every outcome is the same.
# - threads: one torch thread. Under load on 2 cores, 2 threads cost 2.1 CPU s per epoch
#   against 0.21 s with 1 (6,000 events), and a --jobs 2 replay has a worker per core.
# - max_len: the newest 20 items are the model's context (the user state keeps
#   Settings.recent_items = 50 for the online fusion; the scorer's deep input is cut to the
#   model's max_len). Chosen on the first half of ML-100K only (deep alone, replay of events
#   < 50,000, NDCG@10 on events 25,000-50,000; benchmarks/replay.py --deep-variants), one
#   axis at a time against the previous trainer (max_len 50: 0.0757, seeds 1/2: 0.0739 /
#   0.0773, so a seed spread of 0.0034): max_len 10 / 15 / 20 / 25 / 35 / 100: 0.0838 /
#   0.0842 / 0.0876 / 0.0822 / 0.0794 / 0.0684; 20 over seeds 0/1/2: 0.0876 / 0.0861 /
#   0.0852 (mean 0.0863 against 0.0756). Nothing else beat the seed spread: lr 0.006 0.0781
#   (0.001: 0.0536), dropout 0.1 / 0.5 0.0747 / 0.0672, warm epochs 3 / 10 0.0668 / 0.0766,
#   first-model epochs 40 0.0769, label smoothing 0.1 0.0765, weight decay 0.1 0.0764,
#   dim 128 0.0764, 1 block 0.0730, 2 heads 0.0757, batch 256 0.0649, retraining from
#   scratch (20 epochs, 5x the training time) 0.0748.
DEEP_TRAINER: dict[str, Any] = {"retrain_every": 10_000, "warm_epochs": 5, "max_len": 20,
                                "exporter": "torchscript", "threads": 1}


def build_deep_trainer(options: SystemOptions, **overrides: Any) -> Recommender:
    """The replay's deep trainer with ``DEEP_TRAINER`` (``overrides`` win: benchmarks)."""
    from streamrec.export.recommender import DeepSequentialRecommender

    settings = {**DEEP_TRAINER, **overrides}
    # The scorer feeds the model the user state's recent items: a longer context than those
    # would never be filled in production, so the state's length caps the model's.
    settings["max_len"] = min(int(settings.get("max_len", options.settings.recent_items)),
                              options.settings.recent_items)
    return DeepSequentialRecommender(seed=options.seed, **settings)


def _deep_trainer(options: SystemOptions, name: str) -> Recommender:
    try:
        import torch  # noqa: F401  - training needs the `train` extra
        import streamrec.export.recommender  # noqa: F401
    except ImportError as exc:
        raise SystemUnavailable(f"the {name} system needs torch and onnx ({exc})") from None
    return build_deep_trainer(options)


def _deep(options: SystemOptions) -> Recommender:
    return _deep_trainer(options, "deep")


def _streamrec_full(options: SystemOptions) -> Recommender:
    from streamrec.app.pipeline import build_online_system
    return build_online_system(options.settings, deep=_deep_trainer(options, "streamrec-full"))


def _online_embedding(options: SystemOptions) -> Recommender:
    from streamrec.online_models.embeddings import OnlineUserEmbeddings
    return OnlineUserEmbeddings(seed=options.seed)


def _online_fm(options: SystemOptions) -> Recommender:
    from streamrec.online_models.blend import FMRecommender
    return FMRecommender(seed=options.seed)


def _online_blend(options: SystemOptions) -> Recommender:
    from streamrec.online_models.blend import OnlineBlend
    return OnlineBlend(half_life_s=options.settings.popularity_half_life_s, seed=options.seed)


SYSTEMS: dict[str, SystemFactory] = {
    "streamrec": _streamrec,
    "streamrec-full": _streamrec_full,
    "most-popular": _most_popular,
    "recent-popular": _recent_popular,
    "item-knn": _item_knn,
    "markov": _markov,
    "river-mf": _river_mf,
    "deep": _deep,
    "online-embedding": _online_embedding,
    "online-fm": _online_fm,
    "online-blend": _online_blend,
}
# What a plain `streamrec replay` runs: the system under test and every baseline, a pass
# over ML-100K in well under two minutes. The components (deep, online-*) are opt-in
# with --systems, since retraining the deep model inside replay takes minutes.
BASELINES: tuple[str, ...] = ("most-popular", "recent-popular", "item-knn", "markov", "river-mf")
DEFAULT_SYSTEMS: tuple[str, ...] = ("streamrec", *BASELINES)


def build_systems(names: Sequence[str], options: SystemOptions
                  ) -> tuple[dict[str, Recommender], dict[str, str]]:
    """Build the named systems; return (built, unavailable name → reason).

    Unknown names raise ``KeyError`` naming the choices: that is a usage error, whereas
    an unavailable system is an environment fact the report records.
    """
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown:
        raise KeyError(f"unknown system(s) {', '.join(unknown)}; "
                       f"choose from {', '.join(SYSTEMS)}")
    built: dict[str, Recommender] = {}
    unavailable: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            built[name] = SYSTEMS[name](options)
        except SystemUnavailable as exc:
            unavailable[name] = str(exc)
    return built, unavailable
